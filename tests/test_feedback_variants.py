"""Kolen-Pollack, brSF and frSF: updates against hand-derived math on a tiny net, the optimiser keeping ΔB = ΔW,
and B -> W over training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.errors import ConfigError
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
    return op.weight.detach().clone(), op.bias.detach().clone()


def _bp_grads(rule, x, y):
    params = dict(rule.net.named_parameters())
    out = rule.net(x)
    loss = (
        F.cross_entropy(out, y)
        if rule.arch.out_act == "none"
        else F.binary_cross_entropy(out, F.one_hot(y, 3).double())
    )
    return dict(zip(params, torch.autograd.grad(loss, list(params.values()))))


def _by_hand(x, y, W1, b1, W2, b2, B):
    """x -> ReLU(W1 u + b1) -> W2 h + b2 -> softmax + CE, with B in place of W2 on the way down."""
    u = x.flatten(1)
    a1 = u @ W1.T + b1
    h = a1.clamp_min(0)
    d2 = (torch.softmax(h @ W2.T + b2, 1) - F.one_hot(y, 3).double()) / len(y)
    d1 = (d2 @ B) * (a1 > 0)
    return {"W2": d2.T @ h, "b2": d2.sum(0), "W1": d1.T @ u, "b1": d1.sum(0)}


def _check(rule, want):
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, want["W2"])
    torch.testing.assert_close(rule.net.blocks[1].op.bias.grad, want["b2"])
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, want["W1"])
    torch.testing.assert_close(rule.net.blocks[0].op.bias.grad, want["b1"])


# ------------------------------------------------------------------ Kolen-Pollack
def test_kolen_pollack_update_by_hand():
    """δ1 = (δ2 B1) ⊙ 1[a1 > 0] through the trained B1, ΔW = FA's, and ΔB1 = ΔW2 (B1 shaped like W2)."""
    rule, x, y = _make("kolen_pollack", "mlp:5-C")
    assert rule.arch.act == "relu" and rule.arch.out_act == "none" and rule.config.optimizer == "adamw"
    (W1, b1), (W2, b2) = _wb(rule, 0), _wb(rule, 1)
    B = rule.trained_feedback["B1"].detach().clone()
    assert B.shape == W2.shape and not torch.allclose(B, W2)
    rule.compute_updates(x, y)
    want = _by_hand(x, y, W1, b1, W2, b2, B)
    _check(rule, want)
    torch.testing.assert_close(rule.trained_feedback["B1"].grad, want["W2"])
    assert rule.trained_feedback["B1"].grad is not rule.net.blocks[1].op.weight.grad  # its own tensor
    # below the top the update is not BP's (B1 is not W2)
    assert not torch.allclose(_bp_grads(rule, x, y)["blocks.0.op.weight"], want["W1"])


def test_kolen_pollack_feedback_is_in_the_optimiser_and_the_state_dict():
    rule, _, _ = _make("kolen_pollack", "mlp:6-5-C")
    names = {n for n, p in rule.named_parameters() if p.requires_grad}
    assert {"trained_feedback.B1", "trained_feedback.B2"} <= names
    opt = rule.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in rule.trained_feedback.values())
    assert {"trained_feedback.B1", "trained_feedback.B2"} <= set(rule.state_dict())


@pytest.mark.parametrize(
    "optimizer,wd", [("adamw", 0.5), ("adamw", 0.0), ("adam", 0.0), ("sgd", 0.3)], ids=lambda v: str(v)
)
def test_kolen_pollack_steps_b_as_w_up_to_the_decay_of_their_difference(optimizer, wd):
    """Optimiser state is a function of the gradient history, so identical grads give identical steps: over several
    steps, D = W2 - B1 follows the decay alone: AdamW D <- (1 - ηλ) D; SGD heavy ball on λ/2 |D|² (coupled decay,
    momentum 0.9); no decay: D constant. The data change every step, so a data-dependent D would show."""
    lr = 0.05
    rule, x, y = _make("kolen_pollack", "mlp:5-C", optimizer=optimizer, weight_decay=wd, lr=lr)
    opt = rule.configure_optimizers()["optimizer"]
    W, B = rule.net.blocks[1].op.weight, rule.trained_feedback["B1"]
    D = D0 = (W - B).detach().clone()
    buf = torch.zeros_like(D)
    g = torch.Generator().manual_seed(7)
    for step in range(5):
        opt.zero_grad(set_to_none=True)
        rule.compute_updates(torch.randn(x.shape, generator=g, dtype=x.dtype), y)
        assert not torch.allclose(W.grad, torch.zeros_like(W.grad))
        opt.step()
        if optimizer == "adamw":
            D = D * (1 - lr * wd)
        elif optimizer == "sgd":
            buf = 0.9 * buf + wd * D if step else wd * D  # torch SGD: the first step's buffer is the grad itself
            D = D - lr * buf
        torch.testing.assert_close((W - B).detach(), D, rtol=1e-9, atol=1e-12)
    if wd > 0:
        assert (W - B).norm() < D0.norm()


def test_kolen_pollack_rejects_coupled_adam_decay():
    with pytest.raises(ConfigError, match="adamw"):
        get_rule("kolen_pollack").create({"optimizer": "adam", "weight_decay": 0.1}, "mlp:5-C", (1, 2, 2), 3, 1)
    get_rule("kolen_pollack").create({"optimizer": "adam", "weight_decay": 0.0}, "mlp:5-C", (1, 2, 2), 3, 1)


@pytest.mark.parametrize(
    "arch,in_shape",
    [
        ("mlp:6-5-C", (1, 2, 2)),
        ("mlp:6-5-C,act=tanh,out_act=sigmoid", (1, 2, 2)),
        ("cnn:3,fc=5", (1, 6, 6)),
    ],
)
def test_kolen_pollack_started_at_b_equal_w_is_backprop_and_stays_so(arch, in_shape):
    """With B_k := W_k at the start, the update is BP's gradient on every parameter, and since ΔB = ΔW and the decay
    is the same, B stays W: the update is still BP's after several optimiser steps."""
    rule, x, y = _make("kolen_pollack", arch, in_shape)
    with torch.no_grad():
        for name, b in rule.trained_feedback.items():
            b.copy_(rule.net.blocks[int(name[1:])].op.weight)
    opt = rule.configure_optimizers()["optimizer"]
    for _ in range(4):
        opt.zero_grad(set_to_none=True)
        rule.compute_updates(x, y)
        bp = _bp_grads(rule, x, y)
        for n, g in bp.items():
            torch.testing.assert_close(rule.get_parameter(f"net.{n}").grad, g, rtol=1e-9, atol=1e-12)
        opt.step()
    for name, b in rule.trained_feedback.items():
        torch.testing.assert_close(b.detach(), rule.net.blocks[int(name[1:])].op.weight.detach(), rtol=0, atol=1e-12)


def _train_cosines(name: str, steps: int, **overrides) -> list[float]:
    """cos(B1, W2) of a 64-32-C net every 50 steps of its rule on a learnable synthetic task."""
    torch.manual_seed(0)
    rule = get_rule(name).create(overrides, "mlp:32-C,act=relu,out_act=none", (1, 8, 8), 4, epochs=1)
    opt = rule.configure_optimizers()["optimizer"]
    g = torch.Generator().manual_seed(1)
    protos = torch.randn(4, 1, 8, 8, generator=g)

    def cos():
        b = rule.trained_feedback["B1"] if name == "kolen_pollack" else rule.fixed["B1"]
        return float(F.cosine_similarity(b.detach().flatten(), rule.net.blocks[1].op.weight.detach().flatten(), 0))

    out = [cos()]
    for step in range(steps):
        y = torch.randint(0, 4, (32,), generator=g)
        x = protos[y] + 0.8 * torch.randn(32, 1, 8, 8, generator=g)
        opt.zero_grad(set_to_none=True)
        rule.compute_updates(x, y)
        opt.step()
        if (step + 1) % 50 == 0:
            out.append(cos())
    return out


def test_kolen_pollack_feedback_aligns_with_the_weights_over_training():
    """A few hundred steps with weight decay: cos(B, W) rises from about 0 towards 1, far above FA's (fixed B) under
    the same optimiser, lr and decay."""
    kp = _train_cosines("kolen_pollack", 300, lr=1e-2, weight_decay=1.0)
    fa = _train_cosines("fa", 300, lr=1e-2, weight_decay=1.0, optimizer="adamw", nesterov=False)
    assert abs(kp[0]) < 0.3 and kp[0] == pytest.approx(fa[0])  # the same draws: B and W independent at the start
    assert all(b >= a - 0.02 for a, b in zip(kp, kp[1:])), kp  # rising
    assert kp[-1] > 0.95, kp
    # FA's W drifts towards its fixed B too (feedback alignment), but stays far from it
    assert kp[-1] > fa[-1] + 0.25 and 1 - kp[-1] < 0.1 * (1 - fa[-1]), (kp, fa)


def test_kolen_pollack_reports_its_alignment():
    rule, _, _ = _make("kolen_pollack", "mlp:6-5-C")
    with torch.no_grad():
        rule.trained_feedback["B2"].copy_(rule.net.blocks[2].op.weight * 3)
    al = rule.feedback_alignment()
    assert set(al) == {1, 2} and al[2] == pytest.approx(1.0) and abs(al[1]) < 0.99


# ------------------------------------------------------------------ brSF / frSF
def _bound(w: torch.Tensor) -> float:
    return (6 / w[0].numel()) ** 0.5  # kaiming_uniform_ on W's shape: fan_in = W's inputs


@pytest.mark.parametrize("name", ["brsf", "frsf"])
def test_sign_concordant_update_by_hand(name):
    """δ2 = (softmax - y*)/B, ΔW2 = δ2^T h, δ1 = (δ2 (sign(W2) ⊙ |R|)) ⊙ 1[a1 > 0], ΔW1 = δ1^T u."""
    rule, x, y = _make(name, "mlp:5-C")
    assert rule.arch.act == "relu" and rule.arch.out_act == "none" and rule.config.optimizer == "adam"
    (W1, b1), (W2, b2) = _wb(rule, 0), _wb(rule, 1)
    rule.compute_updates(x, y)
    R = rule.magnitude(1)
    assert R.shape == W2.shape and (R >= 0).all() and (R <= _bound(W2)).all() and R.dtype == W2.dtype
    fb = rule.feedback(1, rule.layers[1])
    assert torch.equal(torch.sign(fb), torch.sign(W2)) and torch.equal(fb.abs(), R)
    _check(rule, _by_hand(x, y, W1, b1, W2, b2, torch.sign(W2) * R))
    # not sign symmetry (|R| is not constant) and not BP
    assert not torch.allclose(rule.net.blocks[0].op.weight.grad, _by_hand(x, y, W1, b1, W2, b2, torch.sign(W2))["W1"])


@pytest.mark.parametrize("name", ["brsf", "frsf"])
def test_sign_concordant_signs_follow_the_weights_and_magnitudes_are_fixed_or_redrawn(name):
    """Every step the feedback's signs are the current sign(W_k) (after a step and after flipping W); |R_k| is the
    same at every step for frSF and new at every step for brSF."""
    rule, x, y = _make(name, "mlp:6-5-C")
    opt = rule.configure_optimizers()["optimizer"]
    seen = []
    for step in range(3):
        if step == 2:
            with torch.no_grad():
                for block in rule.net.blocks:
                    block.op.weight.neg_()
        opt.zero_grad(set_to_none=True)
        rule.compute_updates(x, y)
        for k in (1, 2):
            w = rule.layers[k].op.weight.detach()
            fb = rule.feedback(k, rule.layers[k])
            assert torch.equal(torch.sign(fb), torch.sign(w)), (name, step, k)
        seen.append({k: rule.magnitude(k).clone() for k in (1, 2)})
        opt.step()
    for k in (1, 2):
        same = [torch.equal(seen[0][k], s[k]) for s in seen[1:]]
        assert all(same) if name == "frsf" else not any(same), (name, k)


def test_frsf_magnitudes_are_saved_buffers_and_brsf_draws_uniformly():
    rule, _, _ = _make("frsf", "mlp:6-5-C")
    assert {"fixed.R1", "fixed.R2"} <= set(rule.state_dict())
    assert not any("fixed" in n for n, _ in rule.named_parameters())
    rule, x, y = _make("brsf", "mlp:300-200-C", in_shape=(1, 4, 4))
    rule.compute_updates(x, y)
    R, w = rule.magnitude(1), rule.layers[1].op.weight
    b = _bound(w)
    assert R.min() >= 0 and R.max() <= b
    assert R.mean() == pytest.approx(b / 2, rel=0.02) and R.std() == pytest.approx(b / 12**0.5, rel=0.02)  # U(0, b)
    big, _, _ = _make("brsf", "mlp:300-200-C", in_shape=(1, 4, 4), feedback_scale=2.0)
    big.compute_updates(x, y)
    assert big.magnitude(1).max() > b and big.magnitude(1).max() <= 2 * b


def test_sign_concordant_conv_feedback_is_backprop_through_sign_times_magnitude():
    """A conv net: the update equals BP's on a copy whose weights above the first layer are sign(W) ⊙ |R| (the
    feedback then is W itself), as the sign symmetry test does with ±1 weights."""
    rule, x, y = _make("frsf", "cnn:3,fc=5", in_shape=(1, 6, 6))
    with torch.no_grad():
        for k in range(1, len(rule.layers)):
            w = rule.layers[k].op.weight
            w.copy_(torch.sign(w) * rule.magnitude(k))
    rule.compute_updates(x, y)
    bp = _bp_grads(rule, x, y)
    for n, g in bp.items():
        torch.testing.assert_close(rule.get_parameter(f"net.{n}").grad, g, rtol=1e-10, atol=1e-12)
