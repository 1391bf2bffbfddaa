"""Sign symmetry (Liao, Leibo & Poggio 2016, "How important is weight symmetry in backpropagation?"): FA's backward
pass with sign(W_k) in place of the fixed random B_k.

The backward signal keeps the signs of the forward weights and drops their magnitudes: δ_{k-1} = (δ_k sign(W_k)) ⊙
f'(a_{k-1}). The feedback follows the current weights at every step (nothing is drawn at construction). The whole
rule is FA's ``feedback`` hook overridden, so it trains every architecture FA does (mlp and cnn, conv kernels too).

Departures from the paper: Liao et al. train with batch normalisation and "batch manhattan" updates (the sign of the
batch gradient); here the shared loop's optimiser applies the update as for every other rule, and the network has no
batch normalisation. The defaults are BP's (ReLU, softmax + cross-entropy, Adam 1e-3): Adam is invariant to the
scale of a gradient, so the ±1 feedback (far larger than |W|) needs no rescaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.config import Optimizer
from methods.fa import FA
from methods.registry import register
from methods.shared.error_feedback import ErrorFeedbackConfig


@dataclass(frozen=True, kw_only=True)
class SignSymmetryConfig(ErrorFeedbackConfig):
    """Adam 1e-3 (BP's default; Adam's step does not depend on the ±1 feedback's scale), no Nesterov momentum."""

    lr: float = 1e-3
    """Adam's step size (BP's default)."""
    optimizer: Optimizer = "adam"
    nesterov: bool = False
    """No Nesterov momentum (the optimiser is Adam)."""
    feedback_scale: float = 1.0
    """Multiplier of sign(W_k) in the backward pass (1: Liao et al.'s ±1 feedback)."""


@register
class SignSymmetry(FA):
    """Sign symmetry: δ_{k-1} = (δ_k sign(W_k)) ⊙ f'(a_{k-1}), the signs of the current forward weights as feedback."""

    name = "sign_symmetry"
    display_name = "Sign symmetry"
    Config = SignSymmetryConfig
    arch_defaults = {"act": "relu", "out_act": "none"}
    """BP's units: ReLU hidden layers, softmax + cross-entropy (Liao et al. use ReLU networks)."""

    feedback_words = "sign(W)"

    def build_feedback(self) -> None:
        """Nothing fixed to draw: the feedback is read from the weights at every step."""

    def feedback(self, k: int, layer) -> torch.Tensor:
        return torch.sign(layer.op.weight.detach()) * self.config.feedback_scale
