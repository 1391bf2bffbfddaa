"""--compile: the compiled step gives the eager step's update, and the flag is not part of a run's identity."""

from __future__ import annotations

import pytest
import torch

from bench.run import RunConfig, resolve
from methods.registry import get_rule
from tests.conftest import tiny_batch


@pytest.mark.parametrize("method, arch", [("spela_o", "mlp:6-5"), ("pepita", "mlp:6-C"), ("pc", "mlp:6-5-C")])
def test_compiled_step_matches_the_eager_update(method, arch):
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=3)
    rules = []
    for compiled in (False, True):
        torch.manual_seed(0)
        rule = get_rule(method).create({}, arch, (1, 2, 3), 3, epochs=2)
        if compiled:
            rule.compile_step()
        torch.manual_seed(1)  # PEPITA's dropout masks: drawn eagerly, the same in both
        out = rule.compute_updates(x, y)
        rules.append((rule, out["loss"]))
    (eager, l0), (comp, l1) = rules
    assert torch.allclose(l0, l1, rtol=1e-5)
    for p, q in zip(eager.parameters(), comp.parameters()):
        assert p.grad is not None and torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-7)


def test_compile_is_not_part_of_the_run_identity():
    a, b = resolve(RunConfig(method="bp")), resolve(RunConfig(method="bp", compile=True))
    assert a.config_hash == b.config_hash and a.name == b.name


def test_a_later_rule_still_compiles_after_earlier_ones_filled_dynamos_cache(monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 1)  # the limit (8) reached after one graph
    x, y = tiny_batch((1, 2, 3), n=8, num_classes=3)
    new_graphs = []
    for _ in range(2):  # a grid's second run in the same process, same code
        torch.manual_seed(0)
        rule = get_rule("spela_o").create({}, "mlp:6-5", (1, 2, 3), 3, epochs=2)
        rule.compile_step()
        before = counters["stats"]["unique_graphs"]
        rule.compute_updates(x, y)
        new_graphs.append(counters["stats"]["unique_graphs"] - before)
    assert new_graphs[0] > 0 and new_graphs[1] > 0  # without the reset the second rule runs eagerly: 0 graphs
