"""Checks every registered rule gets, the moment it is registered (parametrised over the registry)."""

from __future__ import annotations

import pytest
import torch

import methods
from methods.registry import get_rule, list_rules
from tests.conftest import tiny_batch

RULES = list_rules()


def _make(name: str):
    cls = get_rule(name)
    in_shape = (3, 32, 32) if cls.parse_arch(None, 10).kind != "mlp" else (1, 28, 28)
    torch.manual_seed(0)
    rule = cls.create({}, None, in_shape, 10, epochs=2)
    return rule, in_shape


@pytest.mark.parametrize("name", RULES)
def test_rule_updates_every_parameter_finitely(name, monkeypatch):
    """A few manual steps of the shared loop: every trainable parameter gets a finite, non-zero update
    (a layer-wise rule: over the epochs of its run, every step updating the layer in training)."""
    rule, in_shape = _make(name)
    opt = torch.optim.SGD(rule.param_groups(), lr=1e-2)
    rule._opt = opt
    before = {n: p.detach().clone() for n, p in rule.named_parameters() if p.requires_grad}
    assert before, f"{name} has no trainable parameters"
    updated = set()
    for epoch in range(rule.epochs) if rule.layerwise else [None]:
        if epoch is not None:  # no Trainer here: tell the rule which epoch it is in
            monkeypatch.setattr(type(rule), "current_epoch", property(lambda self, e=epoch: e))
        for step in range(3):
            x, y = tiny_batch(in_shape, n=16, seed=step)
            opt.zero_grad(set_to_none=True)
            out = rule.compute_updates(x, y)
            assert torch.isfinite(out["loss"]).all()
            for n, p in rule.named_parameters():
                if p.requires_grad:
                    assert rule.layerwise or p.grad is not None, f"{name}: {n} got no update"
                    if p.grad is not None:
                        assert torch.isfinite(p.grad).all(), f"{name}: {n} has a non-finite update"
                        updated.add(n)
            opt.step()
    assert updated == set(before), f"{name}: {sorted(set(before) - updated)} never got an update"
    for n, p in rule.named_parameters():
        if p.requires_grad:
            assert not torch.equal(before[n], p.detach()), f"{name}: {n} never changed"
    with torch.no_grad():
        x, _ = tiny_batch(in_shape, n=4)
        scores = rule.exit_scores(x)
    assert "out" in scores and scores["out"].shape == (4, 10)


@pytest.mark.parametrize("name", RULES)
def test_rule_config_rejects_unknown_option(name):
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown option"):
        get_rule(name).create({"no_such_option": 1}, None, (1, 28, 28), 10, epochs=1)


def test_unknown_rule_lists_valid_names():
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="registered rules: .*bp"):
        get_rule("backprop")


def test_registry_rejects_duplicate_names():
    from methods.base import LearningRule
    from methods.registry import register

    class Dup(LearningRule):
        name = "bp"

    with pytest.raises(ValueError, match="already registered"):
        register(Dup)
    assert methods.get_rule("bp") is not Dup
