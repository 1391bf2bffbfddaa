"""SPELA CNN: class partitions per kernel, group targets, votes, and kernel updates that stay in their layer."""

from __future__ import annotations

import pytest
import torch

from bench.errors import ArchError, ConfigError
from methods.registry import get_rule
from methods.shared.kernel_heads import KernelHeads, random_partitions


def test_partitions_are_disjoint_nonempty_and_cover_every_class():
    g = torch.Generator().manual_seed(0)
    parts = random_partitions(200, 10, 2, 10, generator=g)
    assert parts.shape == (200, 10)
    sizes = set()
    for row in parts:
        m = int(row.max()) + 1
        assert 2 <= m <= 10 and set(row.tolist()) == set(range(m))  # every group non-empty, each class in one
        sizes.add(m)
    assert sizes == set(range(2, 11))  # the number of groups varies between kernels
    assert torch.equal(
        random_partitions(5, 10, 3, 3, generator=torch.Generator().manual_seed(1)).max(1).values, torch.full((5,), 2)
    )


def test_targets_and_votes_by_hand():
    # kernel 0: groups {0,1} {2}; kernel 1: groups {0} {1,2}
    parts = torch.tensor([[0, 0, 1], [0, 1, 1]])
    heads = KernelHeads(parts, in_features=4, dim=3, act="none", seed=0)
    u = heads.group_vectors
    assert torch.allclose(u[0, 0] @ u[0, 1], torch.tensor(-1.0), atol=1e-6)  # 2 groups: antipodal unit vectors
    y = torch.tensor([2, 0])
    t = heads.targets(y)
    assert torch.equal(t[0, 0], u[0, 1]) and torch.equal(t[0, 1], u[1, 1])
    assert torch.equal(t[1, 0], u[0, 0]) and torch.equal(t[1, 1], u[1, 0])
    # sample 0: kernel 0 points at its group {2}, kernel 1 at its group {1, 2} -> votes (0, 1, 2)
    # sample 1: kernel 0 at {0, 1}, kernel 1 at {1, 2} -> votes (1, 2, 1)
    out = torch.stack([torch.stack([u[0, 1], 2 * u[1, 1]]), torch.stack([u[0, 0] + 0.1 * u[0, 1], u[1, 1]])])
    assert torch.equal(heads.votes(out), torch.tensor([[0.0, 1.0, 2.0], [1.0, 2.0, 1.0]]))
    loss = heads.loss(out, torch.tensor([2, 1]))
    cos = torch.nn.functional.cosine_similarity
    by_hand = (
        -(cos(out[0, 0], u[0, 1], 0) + cos(out[1, 0], u[0, 0], 0)) / 2
        - (cos(out[0, 1], u[1, 1], 0) + cos(out[1, 1], u[1, 1], 0)) / 2
    )
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


def _rule(mode="joint", arch="cnn:3-2,kernel=3", epochs=2, **over):
    torch.manual_seed(0)
    return get_rule("spela_cnn").create({"mode": mode, "mlp_dim": 4, **over}, arch, (1, 8, 8), 4, epochs=epochs)


def test_each_kernel_and_head_learns_from_its_own_loss_only():
    rule = _rule()
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    rule.compute_updates(x, y)
    conv0 = rule.net.blocks[0].op.weight.grad.clone()
    assert conv0.abs().sum() > 0 and rule.net.blocks[1].op.weight.grad.abs().sum() > 0
    # kernel 0 of layer 1 learns only from head 0: its grad equals the gradient of that head's loss alone
    rule.zero_grad()
    h = rule.net.blocks[0](x / x.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    heads = rule.heads[0]
    out0 = heads.act(
        torch.einsum("bi,id->bd", torch.nn.functional.normalize(h[:, 0].flatten(1), dim=1), heads.weight[0])
        + heads.bias[0]
    )
    loss0 = -torch.nn.functional.cosine_similarity(out0, heads.targets(y)[:, 0], dim=1).mean()
    loss0.backward()
    assert torch.allclose(rule.net.blocks[0].op.weight.grad[0], conv0[0], atol=1e-6)
    # layer 2's heads do not reach layer 1
    rule.zero_grad()
    with torch.no_grad():
        rule.heads[1].weight.normal_()
    rule.compute_updates(x, y)
    assert torch.allclose(rule.net.blocks[0].op.weight.grad, conv0, atol=1e-6)


def test_layerwise_mode_trains_layers_in_turn_and_reports_every_exit(monkeypatch):
    rule = _rule(mode="layerwise", epochs=5)
    assert rule.layer_epoch_counts == [3, 2] and rule.layerwise
    x, y = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    for epoch, active in [(0, 0), (3, 1)]:
        monkeypatch.setattr(type(rule), "current_epoch", property(lambda self, e=epoch: e))
        rule.zero_grad(set_to_none=True)
        rule.compute_updates(x, y)
        for i in range(2):
            trained = [p.grad is not None for p in (*rule.net.blocks[i].parameters(), *rule.heads[i].parameters())]
            assert all(trained) if i == active else not any(trained)
    scores = rule.exit_scores(x)
    assert set(scores) == {"layer1", "layer2", "out"} and scores["out"].shape == (6, 4)
    votes = scores["layer1"]  # 3 kernels, each votes once for every class of its chosen group
    assert torch.equal(votes, votes.round()) and votes.min() >= 0 and votes.max() <= 3 and (votes.sum(1) >= 3).all()
    with pytest.raises(ArchError, match="head"):
        get_rule("spela_cnn").create({}, "cnn:3,head=1", (1, 8, 8), 4, epochs=1)
    with pytest.raises(ConfigError, match="one per layer"):
        _rule(mode="layerwise", arch="cnn:3-2-2,kernel=3,pool=none")
