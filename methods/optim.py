"""Optimiser and learning-rate schedule builders shared by every rule (one place, same semantics)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from methods.config import RuleConfig


def build_optimizer(param_groups: Iterable, cfg: RuleConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov), Adam or AdamW over ``param_groups`` with ``cfg``'s settings."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            param_groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: RuleConfig, epoch: int, epochs: int) -> float:
    """Multiplier of the base lr during ``epoch`` (0-based) of a run of ``epochs`` epochs."""
    if cfg.schedule == "none":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** (epoch // cfg.step_size)
    if cfg.schedule == "multistep":
        # milestones are fractions of the run: PEPITA decays at 60% and 90% (epochs 60 and 90 of 100)
        return cfg.gamma ** sum(epoch >= round(m * epochs) for m in cfg.milestones)
    if cfg.schedule == "linear_step":
        # SPELA's code: lr 2.5 lowered by 0.1 every 10 epochs = gamma 0.04, step_size 10
        return max(0.0, 1.0 - cfg.gamma * (epoch // cfg.step_size))
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    # linear: constant until milestones[0] of the run, then linearly down towards 0 (FF's official code)
    start = cfg.milestones[0] * epochs
    if epoch < start:
        return 1.0
    return max(0.0, 1.0 - (epoch - start) / max(epochs - start, 1e-9))


def build_scheduler(opt: torch.optim.Optimizer, cfg: RuleConfig, epochs: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-epoch scheduler implementing ``lr_factor``."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_factor(cfg, e, epochs))
