"""Greedy layer-by-layer training inside the shared loop: which layer trains in which epoch, and its lr schedule.

A greedy layer-wise rule (SPELA Alg. 3, SPELA CNN Alg. 2) trains layer 1 for its epochs, then layer 2, and
so on. The harness runs one loop of ``epochs`` epochs, so the run's epochs are split across the layers in
proportion to ``weights`` (equal weights: an even split; earlier layers get the rounding remainder), every
layer getting at least one epoch. The rule reads ``phase(epoch)`` to know which layer to train, and the lr
schedule restarts at the start of each layer's phase, so every layer sees the whole schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from methods.config import RuleConfig
from methods.errors import ConfigError
from methods.optim import build_optimizer, lr_factor


def split_epochs(total: int, weights: Sequence[float]) -> list[int]:
    """Epochs per layer, proportional to ``weights``, each >= 1, summing to ``total``."""
    n = len(weights)
    if n < 1:
        raise ConfigError("layer-wise training needs at least one layer")
    if any(w <= 0 for w in weights):
        raise ConfigError(f"layer epoch weights must be > 0, got {tuple(weights)}")
    if total < n:
        raise ConfigError(f"layer-by-layer training of {n} layers needs at least {n} epochs, got {total}")
    spare = total - n  # one epoch each first, the rest in proportion (largest remainders first, ties to earlier)
    exact = [spare * w / sum(weights) for w in weights]
    counts = [1 + int(e) for e in exact]
    order = sorted(range(n), key=lambda i: (-(exact[i] - int(exact[i])), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def phase(epoch: int, counts: Sequence[int]) -> tuple[int, int, int]:
    """(layer index, epoch within that layer's phase, phase length) of 0-based run ``epoch``."""
    start = 0
    for layer, n in enumerate(counts):
        if epoch < start + n:
            return layer, epoch - start, n
        start += n
    return len(counts) - 1, counts[-1] - 1, counts[-1]  # past the end (should not happen): stay on the last layer


def phase_scheduler(
    opt: torch.optim.Optimizer, cfg: RuleConfig, counts: Sequence[int]
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-epoch scheduler applying ``cfg.schedule`` afresh within every layer's phase."""
    counts = list(counts)

    def factor(epoch: int) -> float:
        _, e, n = phase(epoch, counts)
        return lr_factor(cfg, e, n)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def layerwise_optimizers(param_groups: list, cfg: RuleConfig, counts: Sequence[int]) -> dict:
    """``configure_optimizers`` output of a layer-wise rule: the usual optimiser, the schedule restarted per layer."""
    opt = build_optimizer(param_groups, cfg)
    return {"optimizer": opt, "lr_scheduler": phase_scheduler(opt, cfg, counts)}
