"""The alignment diagnostic: cos(rule's update, BP gradient) per block, averaged over an epoch (``align/b<k>``).

A Lightning callback the rule brings itself (``LearningRule.configure_callbacks``) when its config sets
``align_every``. Lightning has no hook between a manual update and the optimiser step, so the rule's
``update_step`` calls ``after_update`` once per step, on this process's grads before any averaging; the callback's
state (step counter, running sums) goes into checkpoints with the other callbacks'.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F


class GradientAlignment(L.Callback):
    """Every ``every`` steps: per block k, the cosine between the rule's ``.grad`` of block k's parameters (zeros where
    it gave none) and ∂``rule.bp_loss``/∂θ_k of the same batch on the same weights. An extra forward and backward
    pass, run with the RNG state and BatchNorm statistics restored afterwards, so training is unchanged."""

    def __init__(self, every: int):
        if every < 1:
            raise ValueError(f"every must be >= 1 step, got {every}")
        self.every = every
        self.step = 0
        self.sums: torch.Tensor | None = None
        self.count = 0

    def after_update(self, rule: Any, x: torch.Tensor, y: torch.Tensor) -> None:
        """Called by the rule after ``compute_updates``: record the cosines every ``every`` steps."""
        if self.step % self.every == 0:
            self.record(rule, x, y)
        self.step += 1

    def record(self, rule: Any, x: torch.Tensor, y: torch.Tensor) -> None:
        blocks = list(rule.net.blocks)
        params = [[p for p in b.parameters() if p.requires_grad] for b in blocks]
        flat = [p for ps in params for p in ps]
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.enable_grad(), torch.random.fork_rng(devices=devices), KeepBatchNormStats(rule.net):
            loss = rule.bp_loss(x, y)
            if loss is None:
                return
            true = torch.autograd.grad(loss, flat, allow_unused=True)
        if self.sums is None:
            self.sums = torch.zeros(len(blocks), dtype=torch.float64)
        i = 0
        for k, ps in enumerate(params):
            if not ps:
                continue
            est = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten() for p in ps])
            tru = torch.cat(
                [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(true[i : i + len(ps)], ps)]
            )
            i += len(ps)
            self.sums[k] += float(F.cosine_similarity(est.double(), tru.double(), dim=0, eps=1e-30))
        self.count += 1

    def compute(self) -> dict[str, float]:
        """Mean per-block alignment over the diagnostic steps since the last call (``align/b<k>``), then reset."""
        if not self.count or self.sums is None:
            return {}
        out = {f"align/b{k}": float(v) for k, v in enumerate(self.sums / self.count)}
        self.sums.zero_()
        self.count = 0
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "sums": self.sums, "count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step, self.sums, self.count = state_dict["step"], state_dict["sums"], state_dict["count"]


class KeepBatchNormStats:
    """Restore BatchNorm running statistics (and batch counters) after a diagnostic forward pass."""

    def __init__(self, net: torch.nn.Module):
        self.mods = [
            m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        ]

    def __enter__(self) -> None:
        self.saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in self.mods]

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for m, buf in zip(self.mods, self.saved):
                for k, v in buf.items():
                    getattr(m, k).copy_(v)
