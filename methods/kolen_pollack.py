"""Kolen-Pollack (Akrout, Wilson, Humphreys, Lillicrap & Tweed 2019, "Deep learning without weight transport",
after Kolen & Pollack 1994): FA whose feedback matrices are trained with the forward weights' own updates.

The backward pass is FA's: δ_{k-1} = (δ_k B_k) ⊙ f'(a_{k-1}), with B_k shaped like W_k (docs/methods.md section 1).
The paper's updates (its Eqs. 16-17, B in W^T's shape) are ΔW_k = -η δ_k u_k^T - λ W_k and ΔB_k = -η u_k δ_k^T - λ B_k:
the feedback synapses change by the transpose of the forward synapses' change, and both decay at the same rate, so
W_k - B_k shrinks by (1 - λ) a step whatever the data and B_k -> W_k over training. With B_k stored shaped like W_k,
ΔB_k = ΔW_k.

How the shared optimiser keeps "B's update = W's update" exact: every B_k is a trained parameter in the same
optimiser group as the weights, and ``compute_updates`` gives it a copy of W_k's ``.grad`` (FA's δ_k u_k^T). Every
optimiser's state is a function of the gradient history alone (SGD's momentum buffer, Adam's two moments), and both
start at zero, so identical grads give identical steps: the gradient part of ΔB_k equals that of ΔW_k at every step,
for SGD, Adam and AdamW alike. Weight decay then acts on the difference D_k = W_k - B_k only:

* ``adamw`` (the default): decoupled decay, D_k <- (1 - ηλ) D_k each step, exactly the paper's form;
* ``sgd``: coupled decay enters the momentum buffer linearly, so D_k follows its own data-free heavy-ball dynamics
  on λ/2 |D_k|² and decays;
* ``adam`` with ``weight_decay > 0``: the coupled decay term λp is normalised by Adam's second moment together with
  the gradient, so W's and B's steps differ by more than a decay of D; the config rejects it (``adam`` with
  ``weight_decay=0`` is allowed: the steps are identical and D_k stays as drawn).

Departures from the paper: Akrout et al. train ResNets on ImageNet with SGD (momentum) and batch normalisation; here
the defaults are BP's units (ReLU, softmax + cross-entropy) and AdamW at BP's lr 1e-3, so the comparison with BP and
sign symmetry changes only the feedback. The decay λ = 0.1 (``weight_decay``) is this harness's choice, not the
paper's: it shrinks D_k by e^{-ηλt}, about 8% per Fashion-MNIST epoch of 844 steps at lr 1e-3 (AdamW's own default
0.01 would leave the aligning almost entirely to the shared updates). The paper's biological circuit computes ΔB_k
with its own outer product u_k δ_k^T; the code copies ΔW_k (the same numbers). Biases have no feedback counterpart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.config import Optimizer
from methods.cost import backprop_like
from methods.errors import ConfigError
from methods.fa import FA
from methods.registry import register
from methods.shared.error_feedback import ErrorFeedbackConfig
from methods.shared.feedback import kaiming_uniform


@dataclass(frozen=True, kw_only=True)
class KolenPollackConfig(ErrorFeedbackConfig):
    """AdamW at BP's lr with decoupled weight decay on W and B alike (so W - B decays by (1 - lr·wd) a step)."""

    lr: float = 1e-3
    """AdamW's step size (BP's default)."""
    optimizer: Optimizer = "adamw"
    """adamw: decoupled decay keeps B's step equal to W's plus the same shrink (adam only with weight_decay=0)."""
    nesterov: bool = False
    """No Nesterov momentum (the optimiser is AdamW)."""
    weight_decay: float = 0.1
    """λ on W and B alike: W - B shrinks by (1 - lr·λ) a step (this harness's choice; the paper's λ is for ImageNet
    SGD)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.optimizer == "adam" and self.weight_decay > 0:
            raise ConfigError(
                "kolen_pollack with optimizer=adam needs weight_decay=0: Adam's coupled decay is normalised with the "
                "gradient, so B's step would no longer equal W's; use optimizer=adamw (decoupled decay) or sgd"
            )


@register
class KolenPollack(FA):
    """Kolen-Pollack: FA's backward pass through trained B_k, with ΔB_k = ΔW_k (same optimiser, same decay)."""

    name = "kolen_pollack"
    display_name = "Kolen-Pollack"
    Config = KolenPollackConfig
    arch_defaults = {"act": "relu", "out_act": "none"}
    """BP's units: ReLU hidden layers, softmax + cross-entropy (Akrout et al. train ReLU ResNets with softmax)."""

    feedback_words = "trained B"

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        model = backprop_like(
            dims,
            "every layer's input kept for the backward pass (trained B in place of W); ΔB = ΔW is a copy of the "
            "weight update, no further products, and every B above the first layer is stepped by the optimiser",
        )
        return model

    def build_feedback(self) -> None:
        # B_k drawn as FA's (kaiming_uniform_ on W's shape), then trained: parameters, so the optimiser steps them
        self.trained_feedback = nn.ParameterDict(
            {
                f"B{k}": nn.Parameter(kaiming_uniform(layer.op.weight.shape, self.config.feedback_scale))
                for k, layer in enumerate(self.layers[1:], start=1)
            }
        )

    def feedback(self, k: int, layer) -> torch.Tensor:
        return self.trained_feedback[f"B{k}"].detach()

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().compute_updates(x, y)  # FA's ΔW_k for every layer, through the current B_k
        for k in range(1, len(self.layers)):
            # ΔB_k = ΔW_k (a copy: the optimiser and gradient averaging treat each grad as its own tensor)
            self.trained_feedback[f"B{k}"].grad = self.layers[k].op.weight.grad.clone()
        return out

    def feedback_alignment(self) -> dict[int, float]:
        """cos(B_k, W_k) per layer k above the first (1 when the feedback has become the forward weights)."""
        return {
            k: float(
                F.cosine_similarity(
                    self.trained_feedback[f"B{k}"].detach().flatten(), layer.op.weight.detach().flatten(), dim=0
                )
            )
            for k, layer in enumerate(self.layers[1:], start=1)
        }
