"""Accuracy counting of the shared loop: top-1 of every read-out (the prediction and each early exit) and top-5 of
the prediction, summed over an evaluation epoch and, under DDP, over processes (torchmetrics syncs the counts), so
every rank reports the accuracy on the whole split."""

from __future__ import annotations

import torch
from torchmetrics import Metric

OUT = "out"
"""The read-out that is the rule's prediction (``LearningRule.exit_scores``)."""


class TopKCorrect(Metric):
    """Share of samples whose label is among the ``k`` highest class scores: correct and total counts, summed."""

    full_state_update = False

    def __init__(self, k: int = 1):
        super().__init__()
        self.k = k
        self.add_state("correct", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, y: torch.Tensor) -> None:
        if self.k == 1:
            hit = scores.argmax(dim=1) == y
        else:
            hit = (scores.topk(self.k, dim=1).indices == y[:, None]).any(dim=1)
        self.correct += hit.sum()
        self.total += y.numel()

    def compute(self) -> float:
        return float(self.correct) / max(int(self.total), 1)


class ExitAccuracies:
    """Top-1 accuracy of each read-out of ``exit_scores`` and top-5 of the prediction (when it has more than five
    classes), logged as ``<prefix>/acc``, ``<prefix>/acc5`` and ``<prefix>/acc/<exit>``. One instance per evaluation
    epoch; a metric per read-out is made at its first batch."""

    def __init__(self) -> None:
        self.metrics: dict[str, TopKCorrect] = {}

    def _metric(self, name: str, k: int, device: torch.device) -> TopKCorrect:
        if name not in self.metrics:
            self.metrics[name] = TopKCorrect(k).to(device)
        return self.metrics[name]

    def update(self, scores_by_exit: dict[str, torch.Tensor], y: torch.Tensor) -> None:
        for key, scores in scores_by_exit.items():
            name = "acc" if key == OUT else f"acc/{key}"
            self._metric(name, 1, y.device).update(scores, y)
            if key == OUT and scores.shape[1] > 5:  # top-5 of the prediction, cheap beside the forward pass
                self._metric("acc5", 5, y.device).update(scores, y)

    def compute(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/{name}": m.compute() for name, m in self.metrics.items()}
