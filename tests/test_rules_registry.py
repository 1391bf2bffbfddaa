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


@pytest.mark.parametrize("name", RULES)
def test_every_option_says_what_it_does(name):
    """Field docstrings are the options' help text (list --options, run --method M --help): every option of every
    rule has one, found through the config's bases."""
    options = get_rule(name).Config.options()
    undocumented = [k for k, v in options.items() if "  " not in v]
    assert not undocumented, f"{name}: options without a docstring: {undocumented}"


def test_options_help_shows_field_docstrings(capsys):
    from bench.cli import main

    assert main(["list", "--options"]) == 0
    listed = capsys.readouterr().out
    assert "feedback_scale: float = 1.0  Multiplier of sign(W_k) in the backward pass" in listed
    with pytest.raises(SystemExit):
        main(["run", "--method", "fa", "--help"])
    helped = capsys.readouterr().out
    assert "options of fa" in helped and "lr: float = 0.07  The equal-budget sweep's value" in helped


def test_display_names_and_cost_models_live_on_the_rule():
    from bench.efficiency import theory, theory_note
    from methods.base import LearningRule
    from reports.labels import method_name

    assert method_name("spela_o") == get_rule("spela_o").display_name == "SPELA(O)"
    assert method_name("fg_ntk_local_weight") == "FG ntk local weight"  # derived from the name when not given
    assert method_name("no_longer_registered") == "no_longer_registered"

    class Bare(LearningRule):  # not registered: a rule that states no cost model
        name = "bare"

    rule = Bare(get_rule("bp").Config(), get_rule("bp").parse_arch(None, 10), (1, 4, 4), 10, epochs=1)
    assert theory(rule) is None and "states no cost model" in theory_note(rule)
    bp = get_rule("bp").create({}, "mlp:8-C", (1, 4, 4), 10, epochs=1)
    assert theory(bp).matvecs == [2, 3] and theory_note(bp) == ""


def test_efficiency_table_lists_a_rule_without_cost_model():
    from reports.paper_tables import efficiency_tables

    rows = [
        {
            "dataset": "mnist",
            "arch": "mlp:8-C",
            "device": "cpu",
            "batch": 1,
            "method": m,
            "peak_bytes": 100,
            "grad_bytes": 10,
            "flops": 1000,
            "samples_per_s": 5.0,
            "theory": th,
            "theory_note": note,
            "theory_bytes": None,
            "theory_flops": None,
        }
        for m, th, note in (
            ("bp", {"forward_passes": 1, "backward_passes": 1, "matvecs": [2, 3]}, ""),
            ("spela_cnn", None, "the cost model covers MLPs, not cnn"),
        )
    ]
    ((_, md),) = efficiency_tables(rows).values()
    assert "SPELA CNN*" in md and "n/m" in md and "the cost model covers MLPs, not cnn" in md
