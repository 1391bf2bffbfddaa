"""SPELA(O) and SPELA: hand-derived local updates, no gradient across layers, the layer-wise schedule, ablations."""

from __future__ import annotations

import pytest
import torch

from bench.errors import ConfigError
from methods.registry import get_rule
from methods.shared.layer_schedule import phase, split_epochs
from tests.conftest import tiny_batch

C = 3


def _rule(name="spela_o", arch="mlp:5-4", overrides=None, epochs=4):
    torch.manual_seed(0)
    return get_rule(name).create(overrides or {}, arch, (1, 2, 3), C, epochs=epochs)


def _cos_layer_grads(W, b, x, v_y, log=False, input_norm=True, slope=0.0):
    """By hand: x̂ = x/||x|| (x̂ = x without input_norm), a = W x̂ + b, h = leaky_relu(a, slope) (slope 0: relu),
    L = -mean_n cos(h_n, v_{y_n}) with ||v|| = 1 (log: L = mean_n log(2 - cos_n), so each sample's -cos gradient is
    scaled by 1/(2 - cos_n)). dL/dh = -(w_n/B) (v/||h|| - (h·v) h/||h||^3) with w_n = 1 or 1/(2 - cos_n);
    dL/da = dL/dh * σ'(a) (1 for a > 0, else slope); dW = dL/da^T x̂; db = sum_n dL/da."""
    B = x.shape[0]
    xh = x / x.norm(dim=1, keepdim=True) if input_norm else x
    a = xh @ W.T + b
    h = torch.where(a > 0, a, slope * a)
    hn = h.norm(dim=1, keepdim=True)
    cos = (h * v_y).sum(1, keepdim=True) / hn
    w = 1.0 / (2.0 - cos) if log else torch.ones_like(cos)
    dh = -w * (v_y / hn - (h * v_y).sum(1, keepdim=True) * h / hn**3) / B
    da = dh * torch.where(a > 0, 1.0, slope).double()
    return da.T @ xh, da.sum(0), h


def test_spela_o_update_is_each_layers_own_cosine_gradient():
    rule = _rule()
    rule.double()
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=C)
    x = x.double()
    rule.compute_updates(x, y)
    l1, l2 = rule.net.blocks[0].op, rule.net.blocks[1].op
    w1, b1, h1 = _cos_layer_grads(l1.weight.detach(), l1.bias.detach(), x.flatten(1), rule.class_vectors0[y])
    w2, b2, _ = _cos_layer_grads(l2.weight.detach(), l2.bias.detach(), h1, rule.class_vectors1[y])
    assert torch.allclose(l1.weight.grad, w1, atol=1e-10) and torch.allclose(l1.bias.grad, b1, atol=1e-10)
    assert torch.allclose(l2.weight.grad, w2, atol=1e-10) and torch.allclose(l2.bias.grad, b2, atol=1e-10)


def test_authors_code_options_log_cosine_loss_raw_inputs_small_leaky_slope():
    """loss=log_cosine, input_norm=false, act=leaky_relu_1e-3 (the SPELA authors' MLP code) against the hand formula."""
    rule = _rule(
        arch="mlp:5-4,act=leaky_relu_1e-3,out_act=leaky_relu_1e-3",
        overrides={"loss": "log_cosine", "input_norm": "false"},
    )
    rule.double()
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=C)
    x = x.double()
    out = rule.compute_updates(x, y)
    l1, l2 = rule.net.blocks[0].op, rule.net.blocks[1].op
    opts = {"log": True, "input_norm": False, "slope": 1e-3}
    w1, b1, h1 = _cos_layer_grads(l1.weight.detach(), l1.bias.detach(), x.flatten(1), rule.class_vectors0[y], **opts)
    w2, b2, h2 = _cos_layer_grads(l2.weight.detach(), l2.bias.detach(), h1, rule.class_vectors1[y], **opts)
    assert torch.allclose(l1.weight.grad, w1, atol=1e-10) and torch.allclose(l1.bias.grad, b1, atol=1e-10)
    assert torch.allclose(l2.weight.grad, w2, atol=1e-10) and torch.allclose(l2.bias.grad, b2, atol=1e-10)
    cos = [
        torch.nn.functional.cosine_similarity(h, v[y], dim=1)
        for h, v in ((h1, rule.class_vectors0), (h2, rule.class_vectors1))
    ]
    assert out["loss"].item() == pytest.approx(sum(torch.log(2 - c).mean().item() for c in cos), rel=1e-9)
    # prediction is still the nearest class vector by cosine, now of the raw-input network
    assert torch.equal(rule(x).argmax(1), (torch.nn.functional.normalize(h2, dim=1) @ rule.class_vectors1.T).argmax(1))


def _autograd_updates(rule, x, y, layers):
    """The previous implementation: each layer's ``layer_loss`` backpropagated by autograd into that layer alone
    (its input detached; the layers before it only carry the data). Returns the grads and the summed loss."""
    for p in rule.parameters():
        p.grad = None
    h, total = x, 0.0
    for k in range(max(layers) + 1):
        h = rule.layer(k, h.detach())
        if k in layers:
            loss = rule.layer_loss(k, h, y)
            loss.backward()
            total += loss.item()
    grads = [None if p.grad is None else p.grad.clone() for p in rule.parameters()]
    for p in rule.parameters():
        p.grad = None
    return grads, total


@pytest.mark.parametrize("loss", ["cosine", "log_cosine", "euclidean", "euclidean_ref"])
@pytest.mark.parametrize(
    "arch, norm",
    [("mlp:5-4", "true"), ("mlp:5-4,act=tanh,out_act=leaky_relu_1e-3", "false"), ("mlp:5-4,binary=1", "true")],
)
def test_explicit_updates_match_autograd_of_the_layer_loss(loss, arch, norm):
    """The written-out updates (``local_update``) equal backpropagating ``layer_loss`` into each layer alone, for every
    loss, activation, input normalisation and ±1 weights: SPELA(O) all layers at once, SPELA one layer per phase."""
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=C)
    x = x.double()
    rule = _rule(arch=arch, overrides={"loss": loss, "input_norm": norm})
    rule.double()
    for k in range(2):  # unit norm in double precision too (the float vectors are unit to ~1e-8)
        v = getattr(rule, f"class_vectors{k}")
        v.copy_(torch.nn.functional.normalize(v, dim=1))
    want, want_loss = _autograd_updates(rule, x, y, layers=[0, 1])
    out = rule.compute_updates(x, y)
    got = [p.grad for p in rule.parameters()]
    assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(got, want)), loss
    assert out["loss"].item() == pytest.approx(want_loss, rel=1e-9)
    layerwise = _rule("spela", arch=arch, overrides={"loss": loss, "input_norm": norm}, epochs=2)
    layerwise.double()
    layerwise.load_state_dict(rule.state_dict())
    for epoch in (0, 1):
        layerwise.trainer_epoch = epoch
        type(layerwise).current_epoch = property(lambda self: self.trainer_epoch)
        try:
            for p in layerwise.parameters():
                p.grad = None
            out = layerwise.compute_updates(x, y)
            got = [p.grad for p in layerwise.parameters()]
        finally:
            del type(layerwise).current_epoch
        want, want_loss = _autograd_updates(layerwise, x, y, layers=[epoch])
        assert all((a is None) == (b is None) for a, b in zip(got, want))
        assert all(torch.allclose(a, b, rtol=1e-9, atol=1e-12) for a, b in zip(got, want) if a is not None)
        assert out["loss"].item() == pytest.approx(want_loss, rel=1e-9)


def test_spela_o_no_gradient_crosses_layers():
    """Changing layer 2's class vectors (its loss) leaves layer 1's update untouched, and vice versa."""
    rule = _rule()
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=C)
    rule.compute_updates(x, y)
    g1 = [p.grad.clone() for p in rule.net.blocks[0].parameters()]
    g2 = [p.grad.clone() for p in rule.net.blocks[1].parameters()]
    rule.zero_grad()
    rule.class_vectors1.copy_(torch.nn.functional.normalize(torch.randn_like(rule.class_vectors1), dim=1))
    rule.compute_updates(x, y)
    assert all(torch.equal(a, p.grad) for a, p in zip(g1, rule.net.blocks[0].parameters()))
    assert not all(torch.equal(a, p.grad) for a, p in zip(g2, rule.net.blocks[1].parameters()))
    rule.zero_grad()
    rule.class_vectors0.copy_(torch.nn.functional.normalize(torch.randn_like(rule.class_vectors0), dim=1))
    rule.compute_updates(x, y)
    assert not all(torch.equal(a, p.grad) for a, p in zip(g1, rule.net.blocks[0].parameters()))


def test_spela_vectors_are_simplex_per_layer_and_scores_read_every_layer():
    rule = _rule(arch="mlp:5-4")
    for k, width in enumerate((5, 4)):
        v = getattr(rule, f"class_vectors{k}")
        assert v.shape == (C, width)
        assert torch.allclose(v @ v.T, torch.full((C, C), -0.5) + 1.5 * torch.eye(C), atol=1e-6)
    x, _ = tiny_batch((1, 2, 3), n=4, num_classes=C)
    scores = rule.exit_scores(x)
    assert set(scores) == {"layer1", "layer2", "out"} and torch.equal(scores["out"], scores["layer2"])
    h1 = rule.net.blocks[0](x.flatten(1) / x.flatten(1).norm(dim=1, keepdim=True))
    cos = torch.nn.functional.cosine_similarity(h1[:, None, :], rule.class_vectors0[None], dim=2)
    assert torch.allclose(scores["layer1"], cos, atol=1e-6)
    rand = _rule(overrides={"vectors": "random"})
    v = rand.class_vectors0
    assert torch.allclose(v.norm(dim=1), torch.ones(C), atol=1e-6)
    assert not torch.allclose(v @ v.T, torch.full((C, C), -0.5) + 1.5 * torch.eye(C), atol=1e-2)


def _raw_distance_loss(h, v_y):
    return (h - v_y).norm(dim=1).mean()


def _authors_code_distance_loss(h, v_y):
    hu = h / h.norm(dim=1, keepdim=True).clamp_min(1e-12)  # a dead ReLU row stays 0, as in the rule
    return torch.log(1 + (hu - v_y).norm(dim=1)).mean()


@pytest.mark.parametrize(
    "loss, by_hand", [("euclidean", _raw_distance_loss), ("euclidean_ref", _authors_code_distance_loss)]
)
def test_euclidean_ablations_loss_and_prediction_by_raw_distance(loss, by_hand):
    """Table 6's Euclidean row: ||h - v_y|| (euclidean) or the authors' code's log(1 + ||h/||h|| - v_y||)
    (euclidean_ref) in training; both predict the class vector nearest to the raw h."""
    rule = _rule(overrides={"loss": loss}, arch="mlp:4")
    x, y = tiny_batch((1, 2, 3), n=6, num_classes=C)
    out = rule.compute_updates(x, y)
    h = rule.net.blocks[0](x.flatten(1) / x.flatten(1).norm(dim=1, keepdim=True))
    v = rule.class_vectors0
    assert out["loss"].item() == pytest.approx(by_hand(h, v[y]).item(), rel=1e-5)
    dist = ((h[:, None, :] - v[None]) ** 2).sum(-1).sqrt()
    assert torch.equal(rule(x).argmax(1), dist.argmin(1))


def test_layerwise_spela_trains_one_layer_per_phase(monkeypatch):
    rule = _rule("spela", epochs=5, overrides={"layer_epochs": "3,2"})
    assert rule.layer_epoch_counts == [3, 2]
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=C)
    for epoch, active in [(0, 0), (2, 0), (3, 1), (4, 1)]:
        monkeypatch.setattr(type(rule), "current_epoch", property(lambda self, e=epoch: e))
        rule.zero_grad(set_to_none=True)
        rule.compute_updates(x, y)
        for k, block in enumerate(rule.net.blocks):
            assert all((p.grad is not None) == (k == active) for p in block.parameters()), (epoch, k)
    with pytest.raises(ConfigError, match="2 layers"):
        _rule("spela", overrides={"layer_epochs": "1,1,1"})


def test_split_epochs_and_phases():
    assert split_epochs(10, [1, 1]) == [5, 5]
    assert split_epochs(25, [15, 10]) == [15, 10]
    assert split_epochs(7, [1, 1]) == [4, 3]
    assert split_epochs(10, [15, 10]) == [6, 4]
    assert split_epochs(3, [1, 1, 1]) == [1, 1, 1]
    assert sum(split_epochs(17, [3, 1, 2])) == 17
    with pytest.raises(ConfigError, match="at least 3 epochs"):
        split_epochs(2, [1, 1, 1])
    assert [phase(e, [3, 2]) for e in range(5)] == [(0, 0, 3), (0, 1, 3), (0, 2, 3), (1, 0, 2), (1, 1, 2)]


def test_layerwise_lr_schedule_restarts_per_layer():
    rule = _rule("spela", epochs=4, overrides={"schedule": "cosine", "lr": 1.0, "optimizer": "sgd"})
    conf = rule.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.5, 1.0, 0.5])  # cosine over 2 epochs, twice
