"""DTP and DDTP-linear (methods/target_prop.py): updates against hand-derived math on a 3-4-4-2 tanh net, the
difference correction, the feedback weights learning on their own, options and architectures."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import methods  # noqa: F401 - registers the rules
from methods.errors import ArchError, ConfigError
from methods.registry import get_rule

ARCH = "mlp:4-4-C"  # 3-4-4-2 with in_shape (3,) and 2 classes (tanh hidden units by the rules' defaults)
ETA, SIGMA = 0.7, 0.2


def _make(name: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    opts = {"target_step": ETA, "sigma": SIGMA, **overrides}
    rule = get_rule(name).create(opts, ARCH, (3,), 2, epochs=1).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    # fixed noise, one tensor per reconstruction loss in the order the rule draws them
    noise = [torch.randn(5, 4, generator=g, dtype=torch.float64) for _ in range(2)]
    return rule, x, y, noise


def _fix_noise(rule, noise):
    it = iter(noise)
    rule.draw_noise = lambda h: next(it)


def _weights(rule):
    return [(b.op.weight.detach().clone(), b.op.bias.detach().clone()) for b in rule.net.blocks]


def _local_grads(inp, W, b, target, act):
    """Autograd of (1/B) sum_n ||act(W u + b) - target||^2 w.r.t. a fresh copy of (W, b)."""
    W, b = W.clone().requires_grad_(True), b.clone().requires_grad_(True)
    h = act(inp @ W.t() + b)
    loss = (h - target).square().sum(1).mean()
    return torch.autograd.grad(loss, (W, b))


def _output_target(h3, y):
    return h3 - ETA * (torch.softmax(h3, 1) - F.one_hot(y, 2).double())


def _assert_close(a, b):
    assert a is not None
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_dtp_updates_match_hand_derived_math():
    rule, x, y, noise = _make("dtp")
    (W1, b1), (W2, b2), (W3, b3) = _weights(rule)
    V2, c2 = rule.feedback[0].weight.detach().clone(), rule.feedback[0].bias.detach().clone()  # g_2: h2 -> h1
    V3, c3 = rule.feedback[1].weight.detach().clone(), rule.feedback[1].bias.detach().clone()  # g_3: h3 -> h2
    _fix_noise(rule, noise)
    out = rule.compute_updates(x, y)

    h1 = torch.tanh(x @ W1.t() + b1)
    h2 = torch.tanh(h1 @ W2.t() + b2)
    h3 = h2 @ W3.t() + b3
    t3 = _output_target(h3, y)
    t2 = h2 + torch.tanh(t3 @ V3.t() + c3) - torch.tanh(h3 @ V3.t() + c3)
    t1 = h1 + torch.tanh(t2 @ V2.t() + c2) - torch.tanh(h2 @ V2.t() + c2)
    for block, (inp, W, b, t, act) in zip(
        rule.net.blocks,
        [(x, W1, b1, t1, torch.tanh), (h1, W2, b2, t2, torch.tanh), (h2, W3, b3, t3, lambda a: a)],
    ):
        gW, gb = _local_grads(inp, W, b, t, act)
        _assert_close(block.op.weight.grad, gW)
        _assert_close(block.op.bias.grad, gb)

    # Lee et al. Alg. 1: g_l learns to invert f_l at the corrupted layer below; (1/sigma^2) mean over batch and units
    total = 0.0
    for fb, below, eps, f in [
        (0, h1, noise[0], lambda h: torch.tanh(h @ W2.t() + b2)),
        (1, h2, noise[1], lambda h: h @ W3.t() + b3),
    ]:
        V = rule.feedback[fb].weight.detach().clone().requires_grad_(True)
        c = rule.feedback[fb].bias.detach().clone().requires_grad_(True)
        noisy = below + SIGMA * eps
        rec = (torch.tanh(f(noisy) @ V.t() + c) - noisy).square().mean() / SIGMA**2
        gV, gc = torch.autograd.grad(rec, (V, c))
        _assert_close(rule.feedback[fb].weight.grad, gV)
        _assert_close(rule.feedback[fb].bias.grad, gc)
        total += rec.item()
    assert out["rec_loss"].item() == pytest.approx(total, rel=1e-9)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(h3, y).item(), rel=1e-9)


def test_ddtp_updates_match_hand_derived_math():
    rule, x, y, noise = _make("ddtp")
    (W1, b1), (W2, b2), (W3, b3) = _weights(rule)
    Q1, Q2 = (rule.feedback[k].weight.detach().clone() for k in range(2))  # 4 x 2 each
    _fix_noise(rule, noise)
    rule.compute_updates(x, y)

    h1 = torch.tanh(x @ W1.t() + b1)
    h2 = torch.tanh(h1 @ W2.t() + b2)
    h3 = h2 @ W3.t() + b3
    t3 = _output_target(h3, y)
    t1 = h1 + (t3 - h3) @ Q1.t()
    t2 = h2 + (t3 - h3) @ Q2.t()
    for block, (inp, W, b, t, act) in zip(
        rule.net.blocks,
        [(x, W1, b1, t1, torch.tanh), (h1, W2, b2, t2, torch.tanh), (h2, W3, b3, t3, lambda a: a)],
    ):
        gW, gb = _local_grads(inp, W, b, t, act)
        _assert_close(block.op.weight.grad, gW)
        _assert_close(block.op.bias.grad, gb)

    # difference reconstruction loss: h_l + Q_l (f_{l->L}(h_l + sigma eps) - h_L) should reconstruct h_l + sigma eps
    for k, (below, eps, up) in enumerate(
        [
            (h1, noise[0], lambda h: torch.tanh(h @ W2.t() + b2) @ W3.t() + b3),
            (h2, noise[1], lambda h: h @ W3.t() + b3),
        ]
    ):
        Q = rule.feedback[k].weight.detach().clone().requires_grad_(True)
        noisy = below + SIGMA * eps
        rec = (below + (up(noisy) - h3) @ Q.t() - noisy).square().mean() / SIGMA**2
        (gQ,) = torch.autograd.grad(rec, (Q,))
        _assert_close(rule.feedback[k].weight.grad, gQ)


def test_difference_correction_returns_the_activity_when_the_target_is_the_activity():
    rule, *_ = _make("dtp")
    g = torch.Generator().manual_seed(3)
    h_k, h_below = torch.randn(5, 2, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g).double()
    # g_3(h3) - g_3(h3) = 0 exactly: the target of the layer below is its activity, even though g is no inverse
    assert torch.equal(rule.propagate(2, h_k, h_k, h_below), h_below)
    # and a different target moves it (the test above is not vacuous)
    moved = rule.propagate(2, h_k + 0.5, h_k, h_below)
    assert not torch.allclose(moved, h_below)
    expected = h_below + rule.inverse(2, h_k + 0.5)[0] - rule.inverse(2, h_k)[0]
    torch.testing.assert_close(moved, expected)


@pytest.mark.parametrize("name", ["dtp", "ddtp"])
def test_feedback_weights_alone_lower_the_reconstruction_loss(name):
    rule, x, y, _ = _make(name, fb_warmup_steps=10**6, fb_lr=0.02)
    rule.standalone()
    before = _weights(rule)
    fb_before = [p.detach().clone() for p in rule.feedback.parameters()]
    losses = []
    torch.manual_seed(5)
    for _ in range(300):
        rule._opt.zero_grad(set_to_none=True)
        out = rule.compute_updates(x, y)
        rule._opt.step()
        losses.append(out["rec_loss"].item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.7 * first, (first, last)
    # the forward weights did not move (no grad during the warm-up), the feedback weights did
    for (W, b), block in zip(before, rule.net.blocks):
        assert torch.equal(W, block.op.weight) and torch.equal(b, block.op.bias)
        assert block.op.weight.grad is None
    assert any(not torch.equal(a, p) for a, p in zip(fb_before, rule.feedback.parameters()))


def test_warmup_ends_and_the_forward_weights_train():
    rule, x, y, _ = _make("ddtp", fb_warmup_steps=2)
    rule.standalone()
    for step in range(3):
        rule._opt.zero_grad(set_to_none=True)
        rule.compute_updates(x, y)
        assert (rule.net.blocks[0].op.weight.grad is None) == (step < 2)
        rule._opt.step()


def test_feedback_weights_have_their_own_optimiser_group():
    rule, *_ = _make("dtp", lr=0.003, fb_lr=0.02, fb_weight_decay=1e-4)
    opt = rule.configure_optimizers()["optimizer"]
    fwd, fb = opt.param_groups
    assert isinstance(opt, torch.optim.Adam)
    assert (fwd["lr"], fwd["weight_decay"], fb["lr"], fb["weight_decay"]) == (0.003, 0.0, 0.02, 1e-4)
    assert {id(p) for p in fb["params"]} == {id(p) for p in rule.feedback.parameters()}
    assert {id(p) for p in fwd["params"]} == {id(p) for p in rule.net.parameters()}


def test_dtp_linear_inverses_option():
    rule, x, y, noise = _make("dtp", fb_act="none")
    V3, c3 = rule.feedback[1].weight.detach(), rule.feedback[1].bias.detach()
    h3 = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(rule.inverse(2, h3)[0], h3 @ V3.t() + c3)


@pytest.mark.parametrize("name", ["dtp", "ddtp"])
def test_bad_options_and_archs_are_refused(name):
    rule = get_rule(name)
    for bad in ({"sigma": 0}, {"target_step": -1.0}, {"fb_lr": 0}, {"fb_warmup_steps": -1}, {"fb_weight_decay": -1}):
        with pytest.raises(ConfigError):
            rule.create(bad, ARCH, (3,), 2, epochs=1)
    for arch in ("cnn:4", "mlp:4-C,out_act=sigmoid", "mlp:C"):
        with pytest.raises(ArchError):
            rule.create({}, arch, (1, 4, 4), 2, epochs=1)
    if name == "dtp":
        with pytest.raises(ConfigError):
            rule.create({"fb_act": "bogus"}, ARCH, (3,), 2, epochs=1)


@pytest.mark.parametrize("name", ["dtp", "ddtp"])
def test_cost_model(name):
    rule = get_rule(name)
    dims = [784, 256, 256, 10]
    m = rule.cost_model(dims, 10, rule.Config())
    assert len(m.matvecs) == 3 and m.draws == 512
    assert m.macs(dims) > 2 * sum(a * b for a, b in zip(dims[:-1], dims[1:]))
