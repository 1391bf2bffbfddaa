"""Predictive coding (methods/pc.py): the update by hand for T=1, the inference as gradient descent on the energy,
and the equivalence with backprop for a small output nudge."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.errors import ArchError, ConfigError
from methods.registry import get_rule


def _make(arch: str, in_dim: int = 3, classes: int = 2, n: int = 5, **opts):
    torch.manual_seed(0)
    rule = get_rule("pc").create(opts, arch, (1, 1, in_dim), classes, epochs=1).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 1, in_dim, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    with torch.no_grad():  # larger weights than the default init, so that every term of the update matters
        for p in rule.parameters():
            p.mul_(3.0)
    return rule, x, y


def _wb(rule):
    return [(layer.op.weight.detach().clone(), layer.op.bias.detach().clone()) for layer in rule.layers]


def test_update_by_hand_3_4_2_one_step():
    """T=1 on 3-4-2 (tanh, CE, β=0.5, γ=0.3): the hidden error starts at 0, so one step moves x_1 by -γ W_2^T g_2,
    and the updates are the errors at the moved state."""
    beta, gamma = 0.5, 0.3
    rule, x, y = _make("mlp:4-C,act=tanh", inference_steps=1, inference_lr=gamma, beta=beta)
    (W1, b1), (W2, b2) = _wb(rule)
    t = F.one_hot(y, 2).double()
    x0 = x.reshape(len(x), -1)
    a1 = x0 @ W1.T + b1
    x1 = torch.tanh(a1)
    a2 = x1 @ W2.T + b2
    g2 = beta * (torch.softmax(a2, 1) - t)  # ∂(β CE)/∂a_2 per sample
    x1n = x1 - gamma * (g2 @ W2)  # ε_1 = 0 at the forward state
    eps1 = x1n - torch.tanh(a1)
    a2n = x1n @ W2.T + b2
    g1n = -eps1 * (1 - torch.tanh(a1) ** 2)
    g2n = beta * (torch.softmax(a2n, 1) - t)
    B = len(x)
    out = rule.compute_updates(x, y)
    assert torch.allclose(out["loss"], F.cross_entropy(a2, y))
    assert torch.allclose(rule.layers[1].op.weight.grad, g2n.T @ x1n / (beta * B))
    assert torch.allclose(rule.layers[1].op.bias.grad, g2n.sum(0) / (beta * B))
    assert torch.allclose(rule.layers[0].op.weight.grad, g1n.T @ x0 / (beta * B))
    assert torch.allclose(rule.layers[0].op.bias.grad, g1n.sum(0) / (beta * B))
    # the hidden update is γ times backprop's δ_1 x^T of the moved state's parent error g_2 (a check of the sign)
    assert torch.allclose(g1n, gamma * (g2 @ W2) * (1 - torch.tanh(a1) ** 2))
    # and the energy went down: F = ½||ε_1||² + β CE
    F0 = beta * F.cross_entropy(a2, y, reduction="sum")
    F1 = 0.5 * eps1.pow(2).sum() + beta * F.cross_entropy(a2n, y, reduction="sum")
    assert F1 < F0


@pytest.mark.parametrize("output", ["ce", "se"])
def test_inference_descends_the_energy_and_updates_are_its_weight_gradient(output):
    """3-4-4-2 (tanh), T=3: the rule's updates equal ∂F/∂W / (βB) at the state reached by T steps of x <- x - γ ∂F/∂x,
    with F written out here and differentiated by autograd."""
    beta, gamma, T = 0.7, 0.4, 3
    rule, x, y = _make("mlp:4-4-C,act=tanh", inference_steps=T, inference_lr=gamma, beta=beta, output=output)
    params = [(W.requires_grad_(), b.requires_grad_()) for W, b in _wb(rule)]
    t = F.one_hot(y, 2).double()
    x0 = x.reshape(len(x), -1)

    def energy(xs):
        total = 0.0
        for k, (W, b) in enumerate(params):
            a = xs[k] @ W.T + b
            if k < len(params) - 1:
                total = total + 0.5 * (xs[k + 1] - torch.tanh(a)).pow(2).sum()
            elif output == "ce":
                total = total + beta * F.cross_entropy(a, y, reduction="sum")
            else:
                total = total + beta * 0.5 * (t - a).pow(2).sum()
        return total

    with torch.no_grad():
        xs = [x0]
        for W, b in params[:-1]:
            xs.append(torch.tanh(xs[-1] @ W.T + b))
    energies = []
    for _ in range(T):
        hidden = [h.detach().requires_grad_() for h in xs[1:]]
        e = energy([x0, *hidden])
        energies.append(e.item())
        grads = torch.autograd.grad(e, hidden)
        xs = [x0, *[(h - gamma * g).detach() for h, g in zip(hidden, grads)]]
    e = energy(xs)
    assert e.item() < energies[0]  # inference lowers the energy
    wgrads = torch.autograd.grad(e, [p for wb in params for p in wb])
    rule.compute_updates(x, y)
    B = len(x)
    for k, layer in enumerate(rule.layers):
        assert torch.allclose(layer.op.weight.grad, wgrads[2 * k] / (beta * B), atol=1e-10), f"W{k + 1}"
        assert torch.allclose(layer.op.bias.grad, wgrads[2 * k + 1] / (beta * B), atol=1e-10), f"b{k + 1}"


def _bp_grads(rule, x, y, output):
    rule.zero_grad(set_to_none=True)
    out = rule.net(x)
    if output == "ce":
        loss = F.cross_entropy(out, y)
    else:
        loss = 0.5 * (out - F.one_hot(y, out.shape[1]).double()).pow(2).sum(1).mean()
    return torch.autograd.grad(loss, [p for layer in rule.layers for p in (layer.op.weight, layer.op.bias)])


def _pc_grads(rule, x, y):
    rule.zero_grad(set_to_none=True)
    rule.compute_updates(x, y)
    return [p.grad.clone() for layer in rule.layers for p in (layer.op.weight, layer.op.bias)]


def _compare(a, b):
    cos = [F.cosine_similarity(p.flatten(), q.flatten(), dim=0).item() for p, q in zip(a, b)]
    rel = [((p - q).norm() / q.norm()).item() for p, q in zip(a, b)]
    return cos, rel


@pytest.mark.parametrize("output", ["ce", "se"])
def test_small_nudge_at_equilibrium_gives_backprops_gradient(output):
    """Whittington & Bogacz 2017 / Millidge et al.: with the output nudged by β -> 0 and inference run to
    equilibrium, ∂F/∂W / β -> dℓ/dW. On 3-5-4-2 (tanh), γ = 0.2, T = 300 (converged: T = 1000 gives the same), β = 1e-4:
    every parameter's update has cosine > 0.99999 with backprop's gradient and relative error < 0.5%; the error is
    O(β) (at β = 1e-3 it is about ten times larger). At β = 1 (the clamped output) and T = 1 the same net is far from
    BP, so the tolerance says something."""
    rule, x, y = _make("mlp:5-4-C,act=tanh", n=8, inference_steps=300, inference_lr=0.2, beta=1e-4, output=output)
    bp = _bp_grads(rule, x, y, output)
    cos, rel = _compare(_pc_grads(rule, x, y), bp)
    assert min(cos) > 0.99999 and max(rel) < 5e-3, (cos, rel)
    coarse, _, _ = _make("mlp:5-4-C,act=tanh", n=8, inference_steps=300, inference_lr=0.2, beta=1e-3, output=output)
    _, rel_coarse = _compare(_pc_grads(coarse, x, y), bp)
    assert 5 < max(rel_coarse) / max(rel) < 20, (rel_coarse, rel)  # first order in β

    far, _, _ = _make("mlp:5-4-C,act=tanh", n=8, inference_steps=1, inference_lr=0.2, beta=1.0, output=output)
    _, rel_far = _compare(_pc_grads(far, x, y), bp)
    assert max(rel_far) > 0.5, rel_far


def test_error_reaches_layer_one_only_after_l_minus_one_steps():
    """One step on 3-4-4-2: only the top hidden layer has an error yet, so W_1 gets no update."""
    rule, x, y = _make("mlp:4-4-C,act=tanh", inference_steps=1)
    rule.compute_updates(x, y)
    assert torch.count_nonzero(rule.layers[0].op.weight.grad) == 0
    assert torch.count_nonzero(rule.layers[1].op.weight.grad) > 0
    rule, x, y = _make("mlp:4-4-C,act=tanh", inference_steps=2)
    rule.compute_updates(x, y)
    assert torch.count_nonzero(rule.layers[0].op.weight.grad) > 0


def test_options_and_archs_are_checked():
    pc = get_rule("pc")
    for bad in ({"inference_steps": 0}, {"inference_lr": 0.0}, {"inference_lr": 1.5}, {"beta": 0.0}):
        with pytest.raises(ConfigError):
            pc.create(bad, None, (1, 28, 28), 10, epochs=1)
    with pytest.raises(ArchError, match="out_act"):
        pc.create({}, "mlp:8-C,out_act=sigmoid", (1, 28, 28), 10, epochs=1)
    with pytest.raises(ArchError, match="hidden layer"):
        pc.create({}, "mlp:C", (1, 28, 28), 10, epochs=1)
    with pytest.raises(ArchError):
        pc.create({}, "cnn:8", (3, 32, 32), 10, epochs=1)


def test_cost_model_counts_t_plus_one_forward_passes():
    pc = get_rule("pc")
    cfg = pc.Config(inference_steps=5)
    cost = pc.cost_model([784, 1024, 10], 10, cfg)
    assert cost.forward_passes == 6 and cost.backward_passes == 5
    assert cost.matvecs == [2, 12]
    assert cost.stored == 784 + 1024 + 1024 + 10
