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
        [1.0] * 6 + [0.1] * 3 + [0.01])
    assert factors(4, schedule="cosine") == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                            (1 + math.cos(3 * math.pi / 4)) / 2])
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


@pytest.mark.parametrize("kw", [{"optimizer": "sgd", "nesterov": True, "weight_decay": 1e-3},
                                {"optimizer": "adam", "weight_decay": 1e-3}, {"optimizer": "adamw"}])
def test_optimisers_take_the_per_tensor_loops_steps(kw):
    """build_optimizer picks torch's fused kernel for Adam/AdamW on CPU (SGD: torch's default); ten steps with two groups (one with its own lr, one
    parameter left without a grad) land where torch's per-tensor loop lands, to float rounding."""
    import torch

    from methods.optim import build_optimizer

    cfg = RuleConfig(lr=1e-2, **kw)
    g = torch.Generator().manual_seed(0)
    init = [torch.randn(5, 4, generator=g), torch.randn(4, generator=g), torch.randn(3, 5, generator=g)]
    grads = [[torch.randn(t.shape, generator=g) for t in init] for _ in range(10)]
    a = [torch.nn.Parameter(t.clone()) for t in init]
    b = [torch.nn.Parameter(t.clone()) for t in init]
    fused = build_optimizer([{"params": a[:2]}, {"params": iter(a[2:]), "lr": 3e-2}], cfg)
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[cfg.optimizer]
    extra = {"momentum": cfg.momentum, "nesterov": cfg.nesterov} if cfg.optimizer == "sgd" else {}
    loop = cls([{"params": b[:2]}, {"params": b[2:], "lr": 3e-2}], lr=cfg.lr, weight_decay=cfg.weight_decay,
               foreach=False, **extra)
    assert bool(fused.defaults.get("fused")) == (cfg.optimizer != "sgd")
    for step in grads:
        for ps in (a, b):
            for i, (p, gr) in enumerate(zip(ps, step)):
                p.grad = None if i == 1 and step is grads[0] else gr.clone()
        fused.step()
        loop.step()
    for p, q in zip(a, b):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)
    assert not torch.equal(a[0], init[0])
