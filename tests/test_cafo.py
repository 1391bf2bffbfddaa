"""CaFo: predictor and DFA block updates against hand-derived math on a tiny net; no gradient from a predictor reaches
a block; the prediction is the sum of the predictors' distributions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.cafo import predictor_error, sparsemax
from methods.errors import ArchError
from methods.registry import get_rule


def _make(arch: str = "mlp:5-4-C", in_shape=(1, 2, 2), classes: int = 3, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    rule = get_rule("cafo").create(overrides, arch, in_shape, classes, epochs=1).double()
    with torch.no_grad():  # predictors start at 0 (every class equal): random values make the test sharper
        for p in [*rule.predictors.parameters(), *rule.net.blocks[-1].parameters()]:
            p.normal_(0.0, 0.5)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(6, *in_shape, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2]) % classes
    return rule, x, y


def _forward(rule, x):
    (W1, b1), (W2, b2), (W3, b3) = ((b.op.weight.detach(), b.op.bias.detach()) for b in rule.net.blocks)
    h0 = x.flatten(1)
    a1 = h0 @ W1.T + b1
    h1 = a1.clamp_min(0)
    a2 = h1 @ W2.T + b2
    h2 = a2.clamp_min(0)
    return h0, a1, h1, a2, h2, h2 @ W3.T + b3


def test_rand_ce_trains_each_predictor_by_its_own_cross_entropy_and_freezes_blocks():
    rule, x, y = _make()
    rule.compute_updates(x, y)
    t, B = F.one_hot(y, 3).double(), len(y)
    h0, a1, h1, a2, h2, out = _forward(rule, x)
    P1 = rule.predictors[0].weight.detach()
    g1 = (torch.softmax(h1 @ P1.T, 1) - t) / B
    g3 = (torch.softmax(out, 1) - t) / B
    torch.testing.assert_close(rule.predictors[0].weight.grad, g1.T @ h1)
    torch.testing.assert_close(rule.net.blocks[2].op.weight.grad, g3.T @ h2)
    torch.testing.assert_close(rule.net.blocks[2].op.bias.grad, g3.sum(0))
    for block in rule.net.blocks[:2]:  # random blocks: not trainable, no grad
        assert all(not p.requires_grad and p.grad is None for p in block.parameters())
    trainable = {n for n, p in rule.named_parameters() if p.requires_grad}
    assert trainable == {"net.blocks.2.op.weight", "net.blocks.2.op.bias", "predictors.0.weight"}


def test_dfa_blocks_learn_from_the_output_predictors_projected_error():
    """CaFo-DFA: δ_k = (e B_k) ⊙ f'(a_k), e = softmax(out) - y*, ΔW_k = δ_k^T h_{k-1} / B; predictors as in Rand."""
    rule, x, y = _make(blocks="dfa")
    rule.compute_updates(x, y)
    t, B = F.one_hot(y, 3).double(), len(y)
    h0, a1, h1, a2, h2, out = _forward(rule, x)
    e = torch.softmax(out, 1) - t
    d1 = (e @ rule.fixed["B0"]) * (a1 > 0)
    d2 = (e @ rule.fixed["B1"]) * (a2 > 0)
    assert rule.fixed["B0"].shape == (3, 5) and rule.fixed["B1"].shape == (3, 4)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, d1.T @ h0 / B)
    torch.testing.assert_close(rule.net.blocks[0].op.bias.grad, d1.sum(0) / B)
    torch.testing.assert_close(rule.net.blocks[1].op.weight.grad, d2.T @ h1 / B)
    P1 = rule.predictors[0].weight.detach()
    g1 = (torch.softmax(h1 @ P1.T, 1) - t) / B
    torch.testing.assert_close(rule.predictors[0].weight.grad, g1.T @ h1)


def test_no_predictor_gradient_reaches_a_block():
    """With DFA blocks, block 1's update depends on the output error only, not on predictor 1."""
    rule, x, y = _make(blocks="dfa")
    rule.compute_updates(x, y)
    before = rule.net.blocks[0].op.weight.grad.clone()
    with torch.no_grad():
        rule.predictors[0].weight.mul_(-4.0)
    rule.compute_updates(x, y)
    assert torch.equal(rule.net.blocks[0].op.weight.grad, before)


@pytest.mark.parametrize("loss", ["mse", "sl"])
def test_mse_and_sparsemax_predictor_gradients(loss):
    rule, x, y = _make(loss=loss)
    rule.compute_updates(x, y)
    t = F.one_hot(y, 3).double()
    _, _, h1, _, _, _ = _forward(rule, x)
    z = (h1 @ rule.predictors[0].weight.detach().T).requires_grad_(True)
    if loss == "mse":
        value = (z - t).pow(2).sum(1).mean()
    else:  # sparsemax loss, Martins & Astudillo 2016 Eq. 18, via autograd through the sort
        p, tau = sparsemax(z)
        value = (-(z * t).sum(1) + 0.5 * ((p > 0) * (z * z - tau * tau)).sum(1) + 0.5).mean()
    (gz,) = torch.autograd.grad(value, z)
    torch.testing.assert_close(rule.predictors[0].weight.grad, gz.T @ h1.detach())
    torch.testing.assert_close(predictor_error(z.detach(), t, loss)[1], value.detach())


def test_sparsemax_by_hand():
    p, tau = sparsemax(torch.tensor([[1.0, 0.5, -1.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(p, torch.tensor([[0.75, 0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]]))
    torch.testing.assert_close(tau.squeeze(1), torch.tensor([0.25, -1 / 3]))


def test_prediction_is_the_sum_of_the_predictors_distributions():
    rule, x, y = _make()
    _, _, h1, _, _, out = _forward(rule, x)
    want = torch.softmax(h1 @ rule.predictors[0].weight.detach().T, 1) + torch.softmax(out, 1)
    scores = rule.exit_scores(x)
    assert set(scores) == {"block1", "block2", "out"}
    torch.testing.assert_close(scores["out"], want)
    torch.testing.assert_close(rule(x), want)


def test_conv_dfa_feedback_is_conv_shaped():
    rule, x, y = _make("cnn:2-3", in_shape=(1, 8, 8), blocks="dfa")
    assert rule.fixed["B0"].shape == (3, 2, 8, 8) and rule.fixed["B1"].shape == (3, 3, 4, 4)
    assert rule.predictors[0].weight.shape == (3, 2 * 4 * 4)
    rule.compute_updates(x, y)
    W, b = rule.net.blocks[0].op.weight.detach(), rule.net.blocks[0].op.bias.detach()
    a = F.conv2d(x, W, b, padding=2)
    h1 = F.max_pool2d(a.clamp_min(0), 2)
    a2 = F.conv2d(h1, rule.net.blocks[1].op.weight.detach(), rule.net.blocks[1].op.bias.detach(), padding=2)
    h2 = F.max_pool2d(a2.clamp_min(0), 2).flatten(1)
    out = rule.net.blocks[2].op(h2).detach()
    e = torch.softmax(out, 1) - F.one_hot(y, 3).double()
    d = (e @ rule.fixed["B0"].reshape(3, -1)).reshape(a.shape) * (a > 0)
    patches = F.unfold(x, 5, padding=2)
    dW = torch.einsum("nop,nkp->ok", d.flatten(2), patches).reshape(W.shape) / len(y)
    torch.testing.assert_close(rule.net.blocks[0].op.weight.grad, dW)


@pytest.mark.parametrize("arch", ["mlp:C", "mlp:5-C,out_act=sigmoid", "mlp:5-4"])
def test_bad_archs_are_refused(arch):
    with pytest.raises(ArchError):
        get_rule("cafo").parse_arch(arch, 3)


def test_cost_model_by_hand_on_a_4_5_4_3_mlp():
    cls = get_rule("cafo")
    rand = cls.cost_model([4, 5, 4, 3], 3, cls.Config())
    assert rand.matvecs == [1, 1, 2] and rand.macs([4, 5, 4, 3]) == 20 + 20 + 2 * 12 + 2 * 3 * 5
    dfa = cls.cost_model([4, 5, 4, 3], 3, cls.Config(blocks="dfa"))
    # blocks: forward + ΔW, e B_k (3 x 5 and 3 x 4); predictor 1: forward + ΔP; output layer: forward + ΔW
    assert dfa.macs([4, 5, 4, 3]) == 2 * 20 + 2 * 20 + 2 * 12 + 2 * 3 * 5 + 3 * (5 + 4)
