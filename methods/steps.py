"""What one call of the training loop hands a rule's ``training_step``: the loop's protocol, not a rule type (the
data pipeline builds it without knowing any rule)."""

from __future__ import annotations

__all__ = ["StepGroup"]


class StepGroup(list):
    """Consecutive training batches ``[(x, y), ...]`` that one ``training_step`` call trains on one after another (one
    optimiser step each). A data loader yields them to pay the training loop's per-call cost (Lightning's hooks, batch
    fetching) once per group instead of once per step; a plain ``(x, y)`` batch is one step."""
