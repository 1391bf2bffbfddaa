"""PEPITA: first, middle and last layer updates against the spec's formulas on tiny nets with fixed masks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bench.errors import ArchError
from methods.registry import get_rule


def _make(arch: str, in_shape=(1, 2, 2), classes: int = 3, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    rule = get_rule("pepita").create(overrides, arch, in_shape, classes, epochs=1).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(6, *in_shape, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]) % classes
    return rule, x, y, g


def _w(rule, k):
    return rule.net.blocks[k].op.weight.detach()


def _mask(shape, g, keep=0.9):
    return (torch.rand(*shape, generator=g) < keep).double() / keep


@pytest.mark.parametrize("overrides", [{}, {"last_error": "clean"}, {"normalize": True}, {"mask_twice": True}])
def test_pepita_updates_match_the_spec(overrides):
    rule, x, y, g = _make("mlp:5-4-C", **overrides)
    assert not any(b.op.bias is not None for b in rule.net.blocks)  # no biases
    m1, m2 = _mask((6, 5), g), _mask((6, 4), g)
    rule.updates_with_masks(x, y, [m1, m2, None])
    W1, W2, W3 = (_w(rule, k) for k in range(3))
    Fm = rule.fixed["F"]
    t = F.one_hot(y, 3).double()
    norm = (lambda h: h / h.norm()) if overrides.get("normalize") else (lambda h: h)

    def passes(inp):
        h1 = norm(torch.relu(inp @ W1.T) * m1)
        h2 = norm(torch.relu(h1 @ W2.T) * m2)
        return h1, h2, torch.softmax(h2 @ W3.T, dim=1) - t

    x0 = x.flatten(1)
    h1, h2, e = passes(x0)
    xt = x0 + e @ Fm.T  # x̃ = x + F e
    h1t, h2t, et = passes(xt)
    d1, d2 = h1 - h1t, h2 - h2t
    if overrides.get("mask_twice"):
        d1, d2 = d1 * m1, d2 * m2
    last = e if overrides.get("last_error") == "clean" else et
    B = len(y)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, d1.T @ xt / B)  # first: (h1 - h̃1) x̃^T
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, d2.T @ h1t / B)  # middle: (h_l - h̃_l) h̃_{l-1}^T
    torch.testing.assert_close(rule.net.blocks[2].op.weight.grad, last.T @ h2t / B)  # last: ẽ h̃_{L-1}^T


def test_pepita_conv_update_matches_the_conv_script():
    """cnn: x̃ = x + (F e) reshaped to the image; conv ΔW = Σ (z - z̃) ⊗ x̃-patch /(B²·P); head: clean e after a conv."""
    rule, x, y, _ = _make("cnn:2", in_shape=(1, 6, 6))
    rule.compute_updates(x, y)  # no dropout on conv layers, so no masks are drawn
    W1, W2 = _w(rule, 0), _w(rule, 1)
    Fm = rule.fixed["F"]
    assert Fm.shape == (36, 3) and Fm.abs().max() <= 0.05 * math.sqrt(6 / 36)
    t = F.one_hot(y, 3).double()

    def passes(inp):
        z = torch.relu(F.conv2d(inp, W1, padding=2))
        h = F.max_pool2d(z, 2).flatten(1)
        return z, h, torch.softmax(h @ W2.T, dim=1) - t

    z, h, e = passes(x)
    xt = x + (e @ Fm.T).reshape(x.shape)
    zt, ht, _ = passes(xt)
    B, P = len(y), 36
    patches = F.unfold(xt, 5, padding=2)
    dW = torch.einsum("nop,nkp->ok", (z - zt).flatten(2), patches).reshape(W1.shape)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, dW / (B * B * P))
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, e.T @ ht / B)
    same, _, _, _ = _make("cnn:2", in_shape=(1, 6, 6), conv_scale="sum")  # same seed: same weights and F
    same.compute_updates(x, y)
    torch.testing.assert_close(same.net.blocks[0].op.weight.grad, dW / B)


def test_pepita_masks_are_shared_by_both_passes_and_hidden_fc_only():
    rule, x, y, _ = _make("mlp:50-40-C", dropout=0.5)
    masks = rule.sample_masks(6, x.device)
    assert [None if m is None else tuple(m.shape) for m in masks] == [(6, 50), (6, 40), None]
    cnn, _, _, _ = _make("cnn:2,fc=7", in_shape=(1, 6, 6), dropout=0.5)
    assert [None if m is None else tuple(m.shape) for m in cnn.sample_masks(6, x.device)] == [None, (6, 7), None]
    # a unit dropped in pass 1 is dropped in pass 2 as well: its difference is zero, so its row of ΔW_1 is zero
    m1 = torch.ones(6, 50, dtype=torch.float64)
    m1[:, 3] = 0
    rule.updates_with_masks(x, y, [m1, torch.ones(6, 40, dtype=torch.float64), None])
    assert torch.all(rule.net.blocks[0].op.weight.grad[3] == 0)


def test_pepita_factorised_f_has_the_target_scale():
    torch.manual_seed(0)
    rule = get_rule("pepita").create({"f_init": "factorised"}, "mlp:256-C", (1, 28, 28), 10, epochs=1)
    Fm = rule.fixed["F"]
    assert Fm.shape == (784, 10)
    assert abs(Fm.std().item() / (0.05 * math.sqrt(2 / 784)) - 1) < 0.2


def test_pepita_rejects_what_it_cannot_train():
    with pytest.raises(ArchError, match="bias"):
        get_rule("pepita").create({}, "mlp:5-C,bias=1", (1, 2, 2), 3, epochs=1)
    with pytest.raises(ArchError, match="resnet18"):
        get_rule("pepita").create({}, "resnet18", (3, 32, 32), 10, epochs=1)
    with pytest.raises(ArchError, match="factorised"):
        get_rule("pepita").create({"f_init": "factorised"}, "cnn:2", (1, 6, 6), 3, epochs=1)


def test_pepita_learns_on_fashion_mnist(fmnist_root, tmp_path):
    from bench.run import RunConfig, run

    res = run(
        RunConfig(
            method="pepita",
            epochs=2,
            limit_train=3000,
            limit_eval=1000,
            data_dir=str(fmnist_root),
            runs_dir=str(tmp_path),
            wandb="disabled",
            progress=False,
        )
    )
    assert res.status == "completed" and res.test_acc > 0.6, res.test_acc
