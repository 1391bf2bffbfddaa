"""The shared architecture builder: arch strings, shapes, options and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.errors import ArchError
from methods.arch import ACTIVATIONS, Activation, ArchSpec, Layer, build_network


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_mlp_layers_after_the_input():
    net = build_network(ArchSpec.parse("mlp:1024-C"), (1, 28, 28), 10)
    assert [b.op.weight.shape for b in net.blocks] == [(1024, 784), (10, 1024)]
    assert n_params(net) == 784 * 1024 + 1024 + 1024 * 10 + 10
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    spela = build_network(ArchSpec.parse("mlp:1000-34", {"out_act": "relu"}), (1, 28, 28), 10)
    assert spela.widths == [1000, 34] and spela.blocks[-1].act.name == "relu"
    ff = build_network(ArchSpec.parse("mlp:1000-1000-1000"), (1, 28, 28), 10)
    assert ff.widths == [1000, 1000, 1000]


def test_options_and_defaults():
    spec = ArchSpec.parse("mlp:64-C,act=tanh,bias=0,init=he_uniform", {"act": "relu", "out_act": "sigmoid"})
    assert (spec.act, spec.out_act, spec.bias, spec.init) == ("tanh", "sigmoid", False, "he_uniform")
    net = build_network(spec, (1, 28, 28), 10)
    w = net.blocks[0].op.weight
    assert net.blocks[0].op.bias is None and float(w.abs().max()) <= math.sqrt(6 / 784)
    assert ArchSpec.parse(spec.text) == spec  # the canonical text round-trips


def test_small_cnn():
    net = build_network(ArchSpec.parse("cnn:32"), (3, 32, 32), 10)
    conv = net.blocks[0].op
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (5, 5) and conv.padding == (2, 2)
    assert conv.stride == (1, 1) and net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    two = build_network(ArchSpec.parse("cnn:32-32,fc=100"), (1, 28, 28), 10)
    assert len(two.blocks) == 4 and two(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert all(isinstance(b, Layer) for b in two.blocks)


@pytest.mark.parametrize("arch,blocks", [("resnet18", 8), ("resnet18,skip=0", 8), ("resnet18,blocks=16,skip=0", 16)])
def test_resnet18_blocks(arch, blocks):
    net = build_network(ArchSpec.parse(arch), (3, 32, 32), 10)
    assert len(net.blocks) == blocks
    convs = sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in net.modules())
    assert convs == 17  # stem + 16 convs in the BasicBlocks
    x = torch.randn(2, 3, 32, 32)
    outs = net.block_outputs(x)
    assert len(outs) == blocks and outs[-1].shape == (2, 10)


@pytest.mark.parametrize(
    "text,match",
    [
        ("transformer:12", "unknown architecture kind"),
        ("mlp:", "needs a layer list"),
        ("mlp:1024-x", "bad layer width"),
        ("mlp:C-100", "only be the last layer"),
        ("mlp:0-C", ">= 1"),
        ("mlp:100-C,act=swish", "act='swish'"),
        ("mlp:100-C,pool=max2", "applies to cnn only"),
        ("mlp:100-C,depth=3", "bad option"),
        ("resnet18,blocks=12", "8 or 16 blocks"),
        ("resnet18,blocks=16", "skip=0"),
        ("cnn:32,kernel=4", "odd size"),
    ],
)
def test_bad_arch_strings(text, match):
    with pytest.raises(ArchError, match=match):
        ArchSpec.parse(text)


def test_rule_rejects_unsupported_pairing():
    from methods.registry import get_rule

    with pytest.raises(ArchError, match="C-way output"):
        get_rule("bp").parse_arch("mlp:1000-34", 10)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_knows_its_own_derivative(name):
    """The explicit f'(a) that FA/DFA/DRTP use matches autograd, away from the kink at 0."""
    a = torch.linspace(-3, 3, 61, dtype=torch.float64)
    a = a[a.abs() > 1e-3].requires_grad_()
    act = Activation(name)
    (auto,) = torch.autograd.grad(act(a).sum(), a)
    assert torch.allclose(act.derivative(a.detach()), auto, atol=1e-10), name


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_is_signal_times_derivative(name):
    """g ⊙ f'(a) of ``Activation.backward`` (ReLU: autograd's threshold backward) equals g times the explicit f'(a),
    at the kink a = 0 too."""
    g = torch.randn(4, 33, generator=torch.Generator().manual_seed(0))
    a = torch.linspace(-3, 3, 33).expand(4, 33).contiguous()
    assert (a == 0).any()
    act = Activation(name)
    assert torch.equal(act.backward(g, a), g * act.derivative(a)), name
