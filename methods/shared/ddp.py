"""Gradient averaging across processes (DDP, multi-GPU / multi-node) for rules that fill ``.grad`` themselves.

Rules fill ``.grad`` in many ways (local losses, several backward calls, explicit formulas), so the loop turns off
the DDP reducer's own all-reduce while a rule computes its update (``backward_sync_off``) and averages every
trainable parameter's grad at once afterwards (``average_grads``). Outside a multi-process run both are no-ops.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def average_grads(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Replace each ``p.grad`` by its mean over the ``world_size`` processes of the default process group, in one
    all-reduce. A missing grad counts as zero; a parameter no process gave a grad keeps ``grad=None``."""
    import torch.distributed as dist

    if not params:
        return
    has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params] + [has])
    dist.all_reduce(flat)  # sum over ranks; each rank's grad is already a mean over its share of the batch
    flat /= world_size
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if flat[-len(params) + i] > 0:
            p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def distributed(trainer: Any) -> bool:
    """True inside a Trainer running more than one process."""
    return trainer is not None and trainer.world_size > 1


def backward_sync_off(trainer: Any):
    """A context in which the DDP reducer does not all-reduce inside ``manual_backward`` (a no-op context outside a
    multi-process Trainer or under a strategy without a reducer)."""
    if distributed(trainer) and hasattr(trainer.strategy, "block_backward_sync"):
        return trainer.strategy.block_backward_sync()
    return contextlib.nullcontext()


def reduce(value: torch.Tensor, trainer: Any, op: str) -> torch.Tensor:
    """``value`` reduced over the Trainer's processes (``op``: sum or mean); unchanged in one process."""
    if distributed(trainer):
        return trainer.strategy.reduce(value, reduce_op=op)
    return value
