"""The per-sample cost model of a learning rule (SPELA Sec. 3.4 and Table 2; Fournier et al. Table 1).

Each rule states its own model by overriding ``LearningRule.cost_model``; ``make efficiency`` puts it beside what it
measures. The model counts, per sample, for an MLP with layer sizes n_0 (input) .. n_L: forward and backward passes,
the matrix-vector products with a weight-sized matrix per update (a forward product, a weight update δ h^T and a
backward product δ W or δ B each count one, on n_{l-1} n_l multiply-adds), and the numbers that must be stored at
once for the update.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CostModel:
    """SPELA Table 2's quantities for one rule on one MLP, per sample."""

    forward_passes: float
    backward_passes: float
    matvecs: list[float]
    """Weight-sized matrix-vector products per layer and update."""
    stored: int
    """Numbers kept at once for the update (activations, guesses)."""
    extra_macs: int = 0
    """Small products outside the weight-sized ones (C-sized feedback projections)."""
    draws: int = 0
    """Random numbers drawn per sample for one update (per-sample guesses); not multiply-adds, so ``macs`` leaves them
    out, but drawing them can cost more than the products (``make perf`` says so where it does)."""
    note: str = ""

    def macs(self, dims: list[int]) -> int:
        return int(sum(c * dims[i] * dims[i + 1] for i, c in enumerate(self.matvecs))) + self.extra_macs


def backprop_like(dims: list[int], note: str) -> CostModel:
    """Forward, then δ back through a weight-sized matrix (W^T, B, sign(W)): ΔW_l everywhere plus the δ-propagation
    below the top layer; every layer's input kept for the backward pass."""
    L = len(dims) - 1
    return CostModel(1, 1, [2] + [3] * (L - 1), sum(dims[:-1]), note=note)
