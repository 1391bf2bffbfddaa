"""Forward-Forward: negatives never carry the true label, label embedding, the layer loss and update by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bench.errors import ConfigError
from methods.registry import get_rule
from methods.shared.label_embedding import (
    embed_all_labels,
    embed_labels,
    embed_neutral,
    hard_wrong_labels,
    wrong_labels,
)


@pytest.mark.parametrize("num_classes", [2, 3, 10, 100])
def test_negative_labels_are_never_the_true_one_and_cover_the_others(num_classes):
    g = torch.Generator().manual_seed(num_classes)
    for _ in range(50):
        y = torch.randint(0, num_classes, (257,), generator=g)
        neg = wrong_labels(y, num_classes, generator=g)
        assert (neg != y).all() and neg.min() >= 0 and neg.max() < num_classes
    y = torch.zeros(20000, dtype=torch.long)
    counts = torch.bincount(wrong_labels(y, num_classes, generator=g), minlength=num_classes)
    assert counts[0] == 0
    expected = 20000 / (num_classes - 1)
    assert ((counts[1:] - expected).abs() < 6 * math.sqrt(expected) + 1).all()  # uniform over the C-1 others


def test_hard_negatives_are_never_the_true_one_even_when_it_is_the_likeliest():
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        y = torch.randint(0, 10, (64,), generator=g)
        logits = torch.randn(64, 10, generator=g) * 5
        logits[torch.arange(64), y] = 100.0  # the predictor is sure of the true label
        neg = hard_wrong_labels(logits, y, generator=g)
        assert (neg != y).all()
    logits = torch.tensor([[50.0, 0.0, 40.0, -10.0]])
    picks = torch.stack([hard_wrong_labels(logits, torch.tensor([0]), generator=g) for _ in range(200)])
    assert (picks == 2).float().mean() > 0.95  # the hardest wrong label


def test_label_embedding_for_one_and_three_channels():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    z = embed_labels(x, torch.tensor([3, 9]), 10, value=2.0)
    assert z.shape == (2, 48)
    assert torch.equal(z[0, :10], 2.0 * torch.eye(10)[3]) and torch.equal(z[1, :10], 2.0 * torch.eye(10)[9])
    assert torch.equal(z[:, 10:], x.flatten(1)[:, 10:])  # the rest of the image is untouched
    assert torch.equal(embed_neutral(x, 10)[:, :10], torch.full((2, 10), 0.1))
    allz = embed_all_labels(x[:, :1], 10)  # 1 channel: 16 values
    assert allz.shape == (20, 16) and torch.equal(allz[2 * 7 + 1, :10], torch.eye(10)[7])


def _one_layer_rule(**over):
    cfg = {"min_layer": 1, "peer_norm": 0.0, "label_value": 1.0, **over}
    torch.manual_seed(0)
    rule = get_rule("ff").create(cfg, "mlp:2", (1, 1, 4), 3, epochs=1).double()
    with torch.no_grad():
        rule.net.blocks[0].op.weight.copy_(torch.tensor([[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, 1.0, -2.0]]))
        rule.net.blocks[0].op.bias.copy_(torch.tensor([0.5, -0.25]))
    return rule


def test_layer_loss_and_update_on_a_hand_computed_example(monkeypatch):
    """One sample x = (0, 0, 0, 2), y = 1, negative label 0, 3 classes, width 2 (theta = 2).
    pos input (0, 1, 0, 2): rms = sqrt(5/4), ẑ = (0, 2, 0, 4)/sqrt(5); a = W ẑ + b.
    neg input (1, 0, 0, 2): rms = sqrt(5/4), ẑ = (2, 0, 0, 4)/sqrt(5)."""
    rule = _one_layer_rule()
    monkeypatch.setattr("methods.ff.wrong_labels", lambda y, c: torch.zeros_like(y))
    x, y = torch.tensor([[[[0.0, 0.0, 0.0, 2.0]]]], dtype=torch.float64), torch.tensor([1])
    s5 = math.sqrt(5.0)
    zp, zn = [0, 2 / s5, 0, 4 / s5], [2 / s5, 0, 0, 4 / s5]
    ap = [2 / s5 * -1.0 + 0.5, 2 / s5 + 4 / s5 * -2.0 - 0.25]  # (-0.394, -2.683)
    an = [2 / s5 + 0.5, 4 / s5 * -2.0 - 0.25]  # (1.394, -3.828)
    gp = sum(max(a, 0.0) ** 2 for a in ap)  # 0
    gn = sum(max(a, 0.0) ** 2 for a in an)  # 1.394^2
    sp = lambda t: math.log1p(math.exp(t))  # noqa: E731
    loss = 0.5 * (sp(2.0 - gp) + sp(gn - 2.0))
    out = rule.compute_updates(x, y)
    assert out["loss"].item() == pytest.approx(loss, rel=1e-7)  # the rule's eps = 1e-8 in the normalisation
    # straight-through ReLU: dL/da_j = dL/dG * 2 relu(a_j), dL/dG = (sigmoid(G - theta) - target) / 2 (mean of 2)
    sig = lambda t: 1 / (1 + math.exp(-t))  # noqa: E731
    dgp, dgn = (sig(gp - 2.0) - 1.0) / 2, sig(gn - 2.0) / 2
    dap = [dgp * 2 * max(a, 0.0) for a in ap]
    dan = [dgn * 2 * max(a, 0.0) for a in an]
    dW = torch.tensor([[dap[i] * zp[j] + dan[i] * zn[j] for j in range(4)] for i in range(2)], dtype=torch.float64)
    assert torch.allclose(rule.net.blocks[0].op.weight.grad, dW, atol=1e-7)
    assert torch.allclose(
        rule.net.blocks[0].op.bias.grad,
        torch.tensor(dap, dtype=torch.float64) + torch.tensor(dan, dtype=torch.float64),
        atol=1e-7,
    )
    assert abs(dW).max() > 0.1  # a real update, not a vacuous match


def test_layers_learn_from_their_own_loss_only():
    torch.manual_seed(0)
    rule = get_rule("ff").create({"peer_norm": 0.0}, "mlp:6-5-4", (1, 4, 4), 3, epochs=1)
    x, y = torch.randn(8, 1, 4, 4), torch.randint(0, 3, (8,))
    torch.manual_seed(1)
    rule.compute_updates(x, y)
    g0 = rule.net.blocks[0].op.weight.grad.clone()
    rule.zero_grad()
    with torch.no_grad():  # change the upper layers: the first layer's update must not move
        rule.net.blocks[1].op.weight.mul_(3.0)
        rule.net.blocks[2].op.weight.normal_()
    torch.manual_seed(1)
    rule.compute_updates(x, y)
    assert torch.equal(g0, rule.net.blocks[0].op.weight.grad)


def test_prediction_sums_goodness_over_labels_from_layer_two():
    torch.manual_seed(0)
    rule = get_rule("ff").create({"readout": True}, "mlp:6-5-4", (1, 4, 4), 3, epochs=1)
    x = torch.randn(5, 1, 4, 4)
    scores = rule.exit_scores(x)
    assert set(scores) == {"layer1", "layer2", "layer3", "goodness", "goodness_all", "softmax", "out"}
    assert torch.allclose(scores["out"], scores["layer2"] + scores["layer3"])
    assert torch.allclose(scores["goodness_all"], scores["layer1"] + scores["layer2"] + scores["layer3"])
    z = embed_labels(x, torch.full((5,), 2), 3, value=math.sqrt(16 / 3))  # the default label value sqrt(D / C)
    h1 = torch.relu(rule.net.blocks[0].op(z / z.pow(2).mean(1, keepdim=True).sqrt()))
    assert torch.allclose(scores["layer1"][:, 2], h1.pow(2).sum(1), rtol=1e-5)
    assert torch.equal(scores["softmax"], torch.zeros(5, 3))  # zero-initialised read-out
    with pytest.raises(ConfigError, match="readout"):
        get_rule("ff").create({"negatives": "hard"}, None, (1, 28, 28), 10, epochs=1)
    with pytest.raises(ConfigError, match="min_layer"):
        get_rule("ff").create({}, "mlp:10", (1, 28, 28), 10, epochs=1)


@pytest.mark.parametrize("in_shape,num_classes", [((1, 28, 28), 10), ((3, 32, 32), 10), ((3, 32, 32), 100)])
def test_default_label_value_is_sqrt_of_inputs_per_class_and_an_explicit_value_is_written_as_given(
    in_shape, num_classes, monkeypatch
):
    import methods.ff as ff

    seen = []
    real, real_all = ff.embed_labels, ff.embed_all_labels
    monkeypatch.setattr(ff, "embed_labels", lambda x, labels, c, v: seen.append(v) or real(x, labels, c, v))
    monkeypatch.setattr(ff, "embed_all_labels", lambda x, c, v: seen.append(v) or real_all(x, c, v))
    d = math.prod(in_shape)
    x, y = torch.randn(4, *in_shape), torch.randint(0, num_classes, (4,))
    for over, value in (({}, math.sqrt(d / num_classes)), ({"label_value": 1.0}, 1.0), ({"label_value": 2.5}, 2.5)):
        torch.manual_seed(0)
        rule = get_rule("ff").create(over, "mlp:8-8", in_shape, num_classes, epochs=1)
        seen.clear()
        rule.compute_updates(x, y)
        rule.exit_scores(x)
        assert seen == [pytest.approx(value)] * 3  # positives, negatives, and every label at prediction
    with pytest.raises(ConfigError, match="label_value"):
        get_rule("ff").create({"label_value": 0.0}, "mlp:8-8", in_shape, num_classes, epochs=1)


@pytest.mark.parametrize("negatives", ["uniform", "hard"])
def test_training_step_writes_the_true_label_on_positives_and_a_wrong_one_on_negatives(negatives, monkeypatch):
    import methods.ff as ff

    seen = []
    real = ff.embed_labels
    monkeypatch.setattr(
        ff, "embed_labels", lambda x, labels, c, v: seen.append(labels.clone()) or real(x, labels, c, v)
    )
    torch.manual_seed(0)
    rule = get_rule("ff").create({"negatives": negatives, "readout": True}, "mlp:6-5", (1, 4, 4), 4, epochs=1)
    with torch.no_grad():
        rule.readout_head.weight.normal_()
    for _ in range(20):
        x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 4, (32,))
        seen.clear()
        rule.compute_updates(x, y)
        pos, neg = seen
        assert torch.equal(pos, y) and (neg != y).all()
