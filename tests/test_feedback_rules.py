"""FA, DFA and DRTP: each update against hand-derived math on a tiny net, and a short real-data run that learns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.registry import get_rule


def _make(name: str, arch: str, in_shape=(1, 2, 2), classes: int = 3, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    rule = get_rule(name).create(overrides, arch, in_shape, classes, epochs=1).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(6, *in_shape, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]) % classes
    return rule, x, y


def _wb(rule, k):
    op = rule.net.blocks[k].op
    return op.weight.detach(), (op.bias.detach() if op.bias is not None else None)


def _grads(rule):
    return {n: p.grad.clone() for n, p in rule.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(
    "arch,in_shape",
    [
        ("mlp:6-5-C,act=tanh,out_act=sigmoid", (1, 2, 2)),  # the DRTP repo's setting: BCE
        ("mlp:6-5-C,act=relu,out_act=none", (1, 2, 2)),  # the comparison tables' setting: softmax + CE
        ("cnn:3,fc=5,act=tanh,out_act=sigmoid", (1, 6, 6)),  # conv-shaped B, max-pool, flatten
        ("cnn:2-3,act=relu,pool=avg2", (2, 8, 8)),
    ],
)
def test_fa_with_feedback_set_to_w_is_backprop(arch, in_shape):
    """With B_k := W_k (the backward signal through W_k^T), FA's update is BP's, on every parameter."""
    rule, x, y = _make("fa", arch, in_shape)
    for name in rule.fixed.names():
        rule.fixed[name].copy_(rule.net.blocks[int(name[1:])].op.weight.detach())
    rule.compute_updates(x, y)
    fa = _grads(rule)
    params = dict(rule.net.named_parameters())
    out = rule.net(x)
    loss = (
        F.cross_entropy(out, y)
        if rule.arch.out_act == "none"
        else F.binary_cross_entropy(out, F.one_hot(y, 3).double())
    )
    bp = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    assert set(fa) == {f"net.{n}" for n in params}
    for n, g in bp.items():
        torch.testing.assert_close(fa[f"net.{n}"], g, rtol=1e-10, atol=1e-12)


def test_fa_with_random_feedback_differs_from_backprop():
    rule, x, y = _make("fa", "mlp:6-5-C,act=relu,out_act=none")
    rule.compute_updates(x, y)
    W2, _ = _wb(rule, 1)
    assert rule.fixed["B1"].shape == W2.shape and not torch.equal(rule.fixed["B1"], W2)
    bound = (6 / 6) ** 0.5  # kaiming_uniform_ on W's shape: fan_in = 6 inputs of layer 2
    assert rule.fixed["B1"].abs().max() <= bound and rule.fixed["B2"].abs().max() <= (6 / 5) ** 0.5
    params = dict(rule.net.named_parameters())
    bp = torch.autograd.grad(F.cross_entropy(rule.net(x), y), [params["blocks.0.op.weight"]])[0]
    assert not torch.allclose(rule.net.blocks[0].op.weight.grad, bp)
    # the output layer gets its true gradient in FA too
    out_bp = torch.autograd.grad(F.cross_entropy(rule.net(x), y), [params["blocks.2.op.weight"]])[0]
    torch.testing.assert_close(rule.net.blocks[2].op.weight.grad, out_bp)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_drtp_hidden_update_is_projected_target(reduction):
    """DRTP hidden: δ = (y* B) ⊙ f'(a), ΔW = δ^T h_{k-1} (summed over the batch, as the DRTP repo); output: own BCE."""
    rule, x, y = _make("drtp", "mlp:5-C", hidden_reduction=reduction)  # default arch: tanh, sigmoid + BCE
    assert rule.arch.act == "tanh" and rule.arch.out_act == "sigmoid"
    rule.compute_updates(x, y)
    W1, b1 = _wb(rule, 0)
    W2, b2 = _wb(rule, 1)
    B = rule.fixed["B0"]
    assert B.shape == (3, 5) and B.abs().max() <= (6 / 5) ** 0.5  # kaiming_uniform_ on [C, N]: fan_in = N
    t = F.one_hot(y, 3).double()
    h0 = x.flatten(1)
    h1 = torch.tanh(h0 @ W1.T + b1)
    d1 = (t @ B) * (1 - h1**2)
    s = 1.0 if reduction == "sum" else 1.0 / len(y)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, s * d1.T @ h0)
    torch.testing.assert_close(rule.net.blocks[0].op.bias.grad, s * d1.sum(0))
    out = torch.sigmoid(h1 @ W2.T + b2)
    d2 = (out - t) / t.numel()  # BCE averaged over B·C elements
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, d2.T @ h1)
    torch.testing.assert_close(rule.net.blocks[1].op.bias.grad, d2.sum(0))


def test_drtp_hidden_update_ignores_the_output_layer():
    rule, x, y = _make("drtp", "mlp:5-4-C,act=relu,out_act=none")
    rule.compute_updates(x, y)
    before = rule.net.blocks[0].op.weight.grad.clone()
    with torch.no_grad():
        rule.net.blocks[2].op.weight.mul_(-3.0)
    rule.compute_updates(x, y)
    assert torch.equal(rule.net.blocks[0].op.weight.grad, before)


def test_drtp_conv_feedback_is_conv_shaped():
    """Conv layer: B ∈ R^{C×Ch×H×W} hooked after the activation, before pooling; ΔW = Σ_n,p δ ⊗ input patch."""
    rule, x, y = _make("drtp", "cnn:2", in_shape=(1, 6, 6))
    rule.compute_updates(x, y)
    W, b = _wb(rule, 0)
    B = rule.fixed["B0"]
    assert B.shape == (3, 2, 6, 6)
    z = torch.tanh(F.conv2d(x, W, b, padding=2))
    d = (F.one_hot(y, 3).double() @ B.reshape(3, -1)).reshape(z.shape) * (1 - z**2)
    patches = F.unfold(x, 5, padding=2)  # [N, Cin·5·5, positions]
    dW = torch.einsum("nop,nkp->ok", d.flatten(2), patches).reshape(W.shape)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, dW)
    torch.testing.assert_close(rule.net.blocks[0].op.bias.grad, d.sum((0, 2, 3)))


def test_dfa_hidden_update_is_projected_error():
    """DFA: δ_k = (e B_k) ⊙ f'(a_k) for both hidden layers, e = softmax(a_L) - y*, ΔW_k = δ_k^T h_{k-1} (summed)."""
    rule, x, y = _make("dfa", "mlp:5-4-C,act=relu,out_act=none")
    rule.compute_updates(x, y)
    (W1, b1), (W2, b2), (W3, b3) = (_wb(rule, k) for k in range(3))
    t = F.one_hot(y, 3).double()
    h0 = x.flatten(1)
    a1 = h0 @ W1.T + b1
    h1 = a1.clamp_min(0)
    a2 = h1 @ W2.T + b2
    h2 = a2.clamp_min(0)
    e = torch.softmax(h2 @ W3.T + b3, dim=1) - t
    d1 = (e @ rule.fixed["B0"]) * (a1 > 0)
    d2 = (e @ rule.fixed["B1"]) * (a2 > 0)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, d1.T @ h0)
    torch.testing.assert_close(rule.net.blocks[0].op.bias.grad, d1.sum(0))
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, d2.T @ h1)
    torch.testing.assert_close(rule.net.blocks[2].op.weight.grad, (e / len(y)).T @ h2)  # mean CE


def test_dropout_masks_fc_inputs_only_in_training():
    rule, x, y = _make("dfa", "mlp:50-C,act=relu,out_act=none", dropout=0.5)
    masks = rule.input_masks(6, x.device)
    assert [m.shape for m in masks] == [(6, 4), (6, 50)]
    assert set(masks[1].unique().tolist()) <= {0.0, 2.0}
    out1, out2 = rule(x), rule(x)
    assert torch.equal(out1, out2)  # evaluation: no dropout


def test_feedback_matrices_are_saved_buffers():
    rule, _, _ = _make("fa", "mlp:6-5-C")
    state = rule.state_dict()
    assert {"fixed.B1", "fixed.B2"} <= set(state) and not any("fixed" in n for n, _ in rule.named_parameters())
    torch.manual_seed(123)
    other = get_rule("fa").create({}, "mlp:6-5-C", (1, 2, 2), 3, epochs=1).double()
    other.load_state_dict(state)
    assert torch.equal(other.fixed["B1"], rule.fixed["B1"])


def test_rejects_outputs_without_a_loss():
    from bench.errors import ArchError

    with pytest.raises(ArchError, match="out_act"):
        get_rule("drtp").create({}, "mlp:5-C,out_act=tanh", (1, 2, 2), 3, epochs=1)
    with pytest.raises(ArchError, match="hidden layer"):
        get_rule("dfa").create({}, "mlp:C", (1, 2, 2), 3, epochs=1)


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("fa", {"lr": 1e-2}),
        ("dfa", {"lr": 1e-3}),
        ("drtp", {"lr": 1e-3}),
    ],
)
def test_rule_learns_on_fashion_mnist(name, overrides, fmnist_root, tmp_path):
    from bench.run import RunConfig, run

    res = run(
        RunConfig(
            method=name,
            epochs=2,
            limit_train=3000,
            limit_eval=1000,
            data_dir=str(fmnist_root),
            runs_dir=str(tmp_path),
            wandb="disabled",
            progress=False,
            rule=overrides,
        )
    )
    assert res.status == "completed" and res.test_acc > 0.6, res.test_acc


@pytest.mark.parametrize(
    "arch,in_shape",
    [
        ("mlp:6-5-C", (1, 2, 2)),  # its defaults: ReLU, softmax + CE
        ("mlp:6-5-C,act=tanh,out_act=sigmoid", (1, 2, 2)),
        ("cnn:3,fc=5", (1, 6, 6)),  # conv kernels as feedback, max-pool, flatten
    ],
)
def test_sign_symmetry_is_backprop_on_pm1_weights(arch, in_shape):
    """When every weight is ±1, sign(W) = W: sign symmetry's update is BP's, on every parameter."""
    rule, x, y = _make("sign_symmetry", arch, in_shape)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for block in rule.net.blocks:
            w = block.op.weight
            w.copy_(torch.randint(0, 2, w.shape, generator=g).double() * 2 - 1)
    rule.compute_updates(x, y)
    ss = _grads(rule)
    params = dict(rule.net.named_parameters())
    out = rule.net(x)
    loss = (
        F.cross_entropy(out, y)
        if rule.arch.out_act == "none"
        else F.binary_cross_entropy(out, F.one_hot(y, 3).double())
    )
    bp = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
    assert set(ss) == {f"net.{n}" for n in params}
    for n, grad in bp.items():
        torch.testing.assert_close(ss[f"net.{n}"], grad, rtol=1e-10, atol=1e-12)


def test_sign_symmetry_update_by_hand():
    """x -> ReLU(W1 x + b1) -> W2 h + b2 -> softmax + CE: δ2 = (softmax - y*)/B, ΔW2 = δ2^T h,
    δ1 = (δ2 sign(W2)) ⊙ 1[a1 > 0], ΔW1 = δ1^T x; real (not ±1) weights, so it differs from BP below the top."""
    rule, x, y = _make("sign_symmetry", "mlp:5-C")
    (W1, b1), (W2, b2) = _wb(rule, 0), _wb(rule, 1)
    assert rule.fixed.names() == []  # nothing drawn: the feedback is read from the weights
    rule.compute_updates(x, y)
    u = x.flatten(1)
    a1 = u @ W1.T + b1
    h = a1.clamp_min(0)
    d2 = (torch.softmax(h @ W2.T + b2, 1) - F.one_hot(y, 3).double()) / len(y)
    d1 = (d2 @ torch.sign(W2)) * (a1 > 0)
    got = _grads(rule)
    torch.testing.assert_close(got["net.blocks.1.op.weight"], d2.T @ h)
    torch.testing.assert_close(got["net.blocks.1.op.bias"], d2.sum(0))
    torch.testing.assert_close(got["net.blocks.0.op.weight"], d1.T @ u)
    torch.testing.assert_close(got["net.blocks.0.op.bias"], d1.sum(0))
    d1_bp = (d2 @ W2) * (a1 > 0)
    assert not torch.allclose(d1_bp.T @ u, d1.T @ u)
