"""BP's update equals the hand-derived gradient and autograd's."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from methods.registry import get_rule


def test_bp_update_matches_hand_derived_gradient():
    torch.manual_seed(0)
    rule = get_rule("bp").create({}, "mlp:5-C", (1, 2, 2), 3, epochs=1)
    x, y = torch.randn(6, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    rule.compute_updates(x, y)
    W1, b1 = rule.net.blocks[0].op.weight.detach(), rule.net.blocks[0].op.bias.detach()
    W2, b2 = rule.net.blocks[1].op.weight.detach(), rule.net.blocks[1].op.bias.detach()
    h0 = x.flatten(1)
    a1 = h0 @ W1.T + b1
    h1 = a1.clamp_min(0)
    p = torch.softmax(h1 @ W2.T + b2, dim=1)
    e = (p - F.one_hot(y, 3).float()) / len(y)  # dL/dlogits of the mean cross-entropy
    d1 = (e @ W2) * (a1 > 0).float()
    assert torch.allclose(rule.net.blocks[1].op.weight.grad, e.T @ h1, atol=1e-6)
    assert torch.allclose(rule.net.blocks[1].op.bias.grad, e.sum(0), atol=1e-6)
    assert torch.allclose(rule.net.blocks[0].op.weight.grad, d1.T @ h0, atol=1e-6)
    assert torch.allclose(rule.net.blocks[0].op.bias.grad, d1.sum(0), atol=1e-6)


def test_bp_update_equals_autograd_on_a_cnn():
    torch.manual_seed(1)
    rule = get_rule("bp").create({}, "cnn:4", (1, 8, 8), 10, epochs=1)
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))
    rule.compute_updates(x, y)
    params = list(rule.net.parameters())
    expected = torch.autograd.grad(F.cross_entropy(rule.net(x), y), params)
    for p, g in zip(params, expected):
        assert torch.allclose(p.grad, g, atol=1e-6)
