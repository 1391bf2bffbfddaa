"""Mono-Forward: the update against hand-derived local cross-entropy gradients on a tiny net; no gradient crosses
layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.errors import ArchError
from methods.registry import get_rule


def _make(arch: str, in_shape=(1, 2, 2), classes: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    rule = get_rule("mono_forward").create({}, arch, in_shape, classes, epochs=1).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(6, *in_shape, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]) % classes
    return rule, x, y


def _wb(rule, k):
    op = rule.net.blocks[k].op
    return op.weight.detach(), op.bias.detach()


def test_update_is_each_layers_own_projection_cross_entropy():
    """A 4-5-4-3 MLP: layer 1 learns from CE(h1 M1^T), layer 2 and the output layer (= M2) from CE(out);
    every gradient written out by hand."""
    rule, x, y = _make("mlp:5-4-C")
    rule.compute_updates(x, y)
    (W1, b1), (W2, b2), (W3, b3) = (_wb(rule, k) for k in range(3))
    M1 = rule.projections[0].weight.detach()
    assert M1.shape == (3, 5) and rule.projections[0].bias is None and len(rule.projections) == 1
    t, B = F.one_hot(y, 3).double(), len(y)
    h0 = x.flatten(1)
    a1 = h0 @ W1.T + b1
    h1 = a1.clamp_min(0)
    g1 = (torch.softmax(h1 @ M1.T, 1) - t) / B  # dCE/dG1, mean over the batch
    d1 = (g1 @ M1) * (a1 > 0)
    a2 = h1 @ W2.T + b2
    h2 = a2.clamp_min(0)
    g3 = (torch.softmax(h2 @ W3.T + b3, 1) - t) / B
    d2 = (g3 @ W3) * (a2 > 0)
    close = torch.testing.assert_close
    close(rule.projections[0].weight.grad, g1.T @ h1)
    close(rule.net.blocks[0].op.weight.grad, d1.T @ h0)
    close(rule.net.blocks[0].op.bias.grad, d1.sum(0))
    close(rule.net.blocks[1].op.weight.grad, d2.T @ h1)
    close(rule.net.blocks[1].op.bias.grad, d2.sum(0))
    close(rule.net.blocks[2].op.weight.grad, g3.T @ h2)
    close(rule.net.blocks[2].op.bias.grad, g3.sum(0))


def test_no_gradient_crosses_layers():
    """Layer 1's update ignores everything above it; layer 2's ignores M1 (its input is detached)."""
    rule, x, y = _make("mlp:5-4-C")
    rule.compute_updates(x, y)
    g1, g2 = rule.net.blocks[0].op.weight.grad.clone(), rule.net.blocks[1].op.weight.grad.clone()
    for p in rule.parameters():
        p.grad = None
    with torch.no_grad():
        rule.net.blocks[1].op.weight.mul_(-2.0)
        rule.net.blocks[2].op.weight.mul_(3.0)
    rule.compute_updates(x, y)
    assert torch.equal(rule.net.blocks[0].op.weight.grad, g1)
    for p in rule.parameters():
        p.grad = None
    with torch.no_grad():
        rule.net.blocks[1].op.weight.div_(-2.0)
        rule.net.blocks[2].op.weight.div_(3.0)
        rule.projections[0].weight.mul_(5.0)
    rule.compute_updates(x, y)
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, g2)
    assert not torch.allclose(rule.net.blocks[0].op.weight.grad, g1)


def test_one_hidden_layer_is_backprop():
    """mlp:H-C: the last hidden layer's projection is the output layer, so its one local loss is the network's."""
    rule, x, y = _make("mlp:5-C")
    assert len(rule.projections) == 0
    rule.compute_updates(x, y)
    params = dict(rule.net.named_parameters())
    bp = torch.autograd.grad(F.cross_entropy(rule.net(x), y), list(params.values()))
    for p, g in zip(params.values(), bp):
        torch.testing.assert_close(p.grad, g)


def test_conv_blocks_project_flattened_maps_and_exits():
    rule, x, y = _make("cnn:2-3,pool=avg2", in_shape=(1, 8, 8))
    assert rule.projections[0].weight.shape == (3, 2 * 4 * 4)
    rule.compute_updates(x, y)
    assert all(p.grad is not None for p in rule.parameters())
    scores = rule.exit_scores(x)
    assert set(scores) == {"layer1", "out"}  # conv 2's projection is the Linear head
    torch.testing.assert_close(scores["out"], rule.net(x))
    h1 = rule.net.blocks[0](x)
    torch.testing.assert_close(scores["layer1"], h1.flatten(1) @ rule.projections[0].weight.T)


@pytest.mark.parametrize("arch", ["mlp:C", "mlp:5-C,out_act=sigmoid"])
def test_bad_archs_are_refused(arch):
    with pytest.raises(ArchError):
        get_rule("mono_forward").parse_arch(arch, 3)


def test_cost_model_by_hand_on_a_4_5_4_3_mlp():
    """Hidden layers: forward + ΔW (2 products each); the output layer (M_2): forward, ΔW, δ to layer 2 (3);
    M_1: forward, ΔM, δ through M (3 x C x N_1 multiply-adds)."""
    cfg = get_rule("mono_forward").Config()
    m = get_rule("mono_forward").cost_model([4, 5, 4, 3], 3, cfg)
    assert (m.forward_passes, m.backward_passes, m.matvecs) == (1, 0, [2, 2, 3])
    assert m.macs([4, 5, 4, 3]) == 2 * 20 + 2 * 20 + 3 * 12 + 3 * 3 * 5
    assert m.stored == 5 + 4  # the last hidden layer's input and the output layer's, at once
    bp = get_rule("bp").cost_model([4, 5, 3], 3, get_rule("bp").Config())
    one = get_rule("mono_forward").cost_model([4, 5, 3], 3, cfg)
    assert one.macs([4, 5, 3]) == bp.macs([4, 5, 3]) and one.stored == bp.stored  # one hidden layer: BP
