"""Arch options added for the SPELA family: ±1 weights (binary=1), convs without a head (head=0), activations."""

from __future__ import annotations

import pytest
import torch

from bench.errors import ArchError
from methods.arch import ArchSpec, build_network
from methods.registry import get_rule


def test_binary_linear_uses_sign_forward_and_straight_through_backward():
    net = build_network(ArchSpec.parse("mlp:3-C,binary=1,act=none"), (1, 2, 2), 2)
    layer = net.blocks[0].op
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.3, -0.2, 0.0, 5.0], [-1e-3, 2.0, -4.0, 0.1], [0.5, 0.5, -0.5, -0.5]]))
        layer.bias.copy_(torch.tensor([0.25, -0.5, 1.5]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    out = layer(x)
    signs = torch.tensor([[1.0, -1.0, 1.0, 1.0], [-1.0, 1.0, -1.0, 1.0], [1.0, 1.0, -1.0, -1.0]])
    assert torch.equal(out, x @ signs.T + torch.tensor([0.25, -0.5, 1.5]))  # biases stay real
    g = torch.tensor([[1.0, -2.0, 0.5]])
    out.backward(g)
    assert torch.equal(layer.weight.grad, g.T @ x)  # d out / d sign(W), passed straight to the latent W
    assert torch.equal(layer.bias.grad, g[0])


def test_binary_conv_and_bp_bin():
    net = build_network(ArchSpec.parse("cnn:2,binary=1,kernel=3,pool=none,head=0"), (1, 4, 4), 10)
    conv = net.blocks[0].op
    x = torch.randn(1, 1, 4, 4)
    ref = torch.nn.functional.conv2d(x, torch.where(conv.weight >= 0, 1.0, -1.0), conv.bias, padding=1)
    assert torch.allclose(conv(x), ref)
    rule = get_rule("bp").create({}, "mlp:8-C,binary=1", (1, 4, 4), 10, epochs=1)
    assert rule.arch.short == "mlp:8-C/bin" and "binary=1" in rule.arch.text
    assert "binary" not in ArchSpec.parse("mlp:8-C").text  # the default leaves existing run names unchanged


def test_cnn_without_head():
    spec = ArchSpec.parse("cnn:4-6,head=0")
    net = build_network(spec, (1, 8, 8), 10)
    assert len(net.blocks) == 2 and net.widths == [4, 6] and not spec.ends_in_classes()
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 6, 2, 2)
    assert ArchSpec.parse("cnn:4").ends_in_classes() and "head" not in ArchSpec.parse("cnn:4").text
    with pytest.raises(ArchError, match="head=0"):
        ArchSpec.parse("cnn:4,head=0,fc=100")
    with pytest.raises(ArchError, match="applies to cnn only"):
        ArchSpec.parse("mlp:4-C,head=0")
    with pytest.raises(ArchError, match="C-way output"):
        get_rule("bp").parse_arch("cnn:4,head=0", 10)


@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "leaky_relu", "elu", "silu", "softplus", "none"])
def test_activation_derivative_matches_autograd(name):
    from methods.arch import Activation

    act = Activation(name)
    a = torch.linspace(-3, 3, 13, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(act(a).sum(), a)
    assert torch.allclose(act.derivative(a.detach()), g)
