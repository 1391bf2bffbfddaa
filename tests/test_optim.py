"""The shared lr schedules: each schedule's per-epoch factor against the values worked out by hand."""

from __future__ import annotations

import math

import pytest

from bench.errors import ConfigError
from methods.config import RuleConfig
from methods.optim import lr_factor


def factors(epochs: int, **kw) -> list[float]:
    cfg = RuleConfig(**kw)
    return [lr_factor(cfg, e, epochs) for e in range(epochs)]


def test_schedules_by_hand():
    assert factors(3, schedule="none") == [1.0, 1.0, 1.0]
    assert factors(5, schedule="step", step_size=2, gamma=0.5) == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert factors(10, schedule="multistep", milestones=(0.6, 0.9), gamma=0.1) == pytest.approx(
        [1.0] * 6 + [0.1] * 3 + [0.01]
    )
    assert factors(4, schedule="cosine") == pytest.approx(
        [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]
    )
    assert factors(4, schedule="linear", milestones=(0.5,)) == pytest.approx([1.0, 1.0, 1.0, 0.5])


def test_linear_step_is_the_spela_codes_decrement():
    """lr 2.5 lowered by 0.1 every 10 epochs: 2.5 for epochs 0-9, 2.4 for 10-19, ..., 1.6 for 90-99."""
    f = factors(100, schedule="linear_step", step_size=10, gamma=0.04, lr=2.5)
    lrs = [2.5 * x for x in f]
    assert lrs[0] == lrs[9] == 2.5 and lrs[10] == pytest.approx(2.4) and lrs[99] == pytest.approx(1.6)
    assert factors(30, schedule="linear_step", step_size=5, gamma=0.5)[-1] == 0.0  # never negative


def test_unknown_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="schedule"):
        RuleConfig(schedule="exponential")
