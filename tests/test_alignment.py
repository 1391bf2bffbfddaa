"""The alignment diagnostic of the base: cos(rule's update, BP gradient) per block for every rule with a BP
counterpart, computed from one place (the ``GradientAlignment`` callback, run by ``LearningRule.update_step``), free
when off, training unchanged when on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from methods.registry import get_rule, list_rules
from methods.shared.alignment import GradientAlignment
from tests.conftest import tiny_batch


def _make(name: str, arch: str | None = None, in_shape=(1, 4, 4), classes: int = 3, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return get_rule(name).create(overrides, arch, in_shape, classes, epochs=1)


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a @ b) / (a.norm() * b.norm()))


def test_bp_is_perfectly_aligned_with_itself():
    rule = _make("bp", "mlp:5-4-C", align_every=1)
    x, y = tiny_batch((1, 4, 4), n=6, num_classes=3)
    rule.update_step(x, y)
    row = rule.epoch_metrics()
    assert set(row) == {"align/b0", "align/b1", "align/b2"}
    assert all(v == pytest.approx(1.0, abs=1e-6) for v in row.values()), row
    assert rule.epoch_metrics() == {}  # reset for the next epoch


def test_fa_alignment_is_the_cosine_with_the_backprop_gradient_of_its_own_loss():
    """FA on tanh/sigmoid + BCE: block 0's cosine, by hand, against ∂BCE/∂θ_0 from autograd; the output block gets
    its true gradient (cosine 1)."""
    rule = _make("fa", "mlp:6-5-C,act=tanh,out_act=sigmoid", align_every=1)
    x, y = tiny_batch((1, 4, 4), n=6, num_classes=3)
    rule.update_step(x, y)
    row = rule.epoch_metrics()
    block0 = list(rule.net.blocks[0].parameters())
    est = torch.cat([p.grad.flatten() for p in block0])
    bce = F.binary_cross_entropy(rule.net(x), F.one_hot(y, 3).float())
    tru = torch.cat([g.flatten() for g in torch.autograd.grad(bce, block0)])
    assert row["align/b0"] == pytest.approx(_cos(est, tru), abs=1e-5)
    assert row["align/b2"] == pytest.approx(1.0, abs=1e-6)
    assert -1.0 <= row["align/b1"] < 0.999  # random feedback: not BP


def test_fa_with_feedback_equal_to_w_is_aligned_everywhere():
    rule = _make("fa", "mlp:6-5-C,act=relu,out_act=none", align_every=1)
    for name in rule.fixed.names():
        rule.fixed[name].copy_(rule.net.blocks[int(name[1:])].op.weight.detach())
    x, y = tiny_batch((1, 4, 4), n=6, num_classes=3)
    rule.update_step(x, y)
    assert all(v == pytest.approx(1.0, abs=1e-5) for v in rule.epoch_metrics().values())


def test_every_rule_with_a_bp_counterpart_gets_the_diagnostic_and_the_others_none():
    x, y = tiny_batch((1, 28, 28), n=8, num_classes=10)
    with_counterpart = []
    for name in list_rules():
        cls = get_rule(name)
        if cls.parse_arch(None, 10).kind != "mlp":
            continue  # conv-only rules (spela_cnn): no BP counterpart either way
        torch.manual_seed(0)
        rule = cls.create({"align_every": 1}, None, (1, 28, 28), 10, epochs=4)
        rule.update_step(x, y)
        row = rule.epoch_metrics()
        if rule.bp_loss(x, y) is None:
            assert row == {}, name
        else:
            with_counterpart.append(name)
            assert set(row) == {f"align/b{k}" for k in range(len(rule.net.blocks))}, name
            assert all(-1.0 - 1e-6 <= v <= 1.0 + 1e-6 for v in row.values()), (name, row)
    assert {"bp", "fa", "dfa", "drtp", "pepita", "fg_gaussian", "local_learning"} <= set(with_counterpart)
    assert not {"spela_o", "ff"} & set(with_counterpart)


def test_the_diagnostic_is_off_by_default_and_leaves_training_unchanged(monkeypatch):
    """PEPITA draws dropout masks from the global RNG every step: with the diagnostic on every step, the weights after
    a few steps are bit-identical to a run without it (RNG forked, nothing else touched)."""
    x, y = tiny_batch((1, 4, 4), n=6, num_classes=3)
    finals = []
    for every in (0, 1):
        rule = _make("pepita", "mlp:8-6-C", align_every=every)
        if not every:
            monkeypatch.setattr(GradientAlignment, "record", lambda *a: pytest.fail("diagnostic ran while off"))
        opt = torch.optim.SGD(rule.parameters(), lr=0.1)
        torch.manual_seed(5)
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            rule.update_step(x, y)
            opt.step()
        finals.append([p.detach().clone() for p in rule.parameters()])
        assert bool(rule.epoch_metrics()) == bool(every)
        monkeypatch.undo()  # the diagnostic may run when on
    for a, b in zip(*finals):
        assert torch.equal(a, b)


def test_align_every_is_validated_and_left_out_of_run_hashes_when_off():
    from bench.errors import ConfigError
    from bench.run import RunConfig, resolve

    with pytest.raises(ConfigError, match="align_every"):
        _make("bp", "mlp:5-C", align_every=-1)
    off = resolve(RunConfig(method="bp", arch="mlp:5-C"))
    on = resolve(RunConfig(method="bp", arch="mlp:5-C", rule={"align_every": 10}))
    assert "align_every" not in off.canonical["rule"] and on.canonical["rule"]["align_every"] == 10
    assert off.config_hash != on.config_hash
