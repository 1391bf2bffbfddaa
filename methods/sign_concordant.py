"""Sign-concordant feedback with random magnitudes: FA's backward pass with B_k = sign(W_k) ⊙ |R_k|.

Liao, Leibo & Poggio 2016 ("How important is weight symmetry in backpropagation?") define the variants and their
names; Moskovitz, Litwin-Kumar & Abbott 2018 ("Feedback alignment in deep convolutional networks") study
sign-concordant feedback in deep conv nets; the rule names are BioTorch's (jsalbert/biotorch, ``brsf``, ``frsf``):

* ``brsf`` (batchwise random magnitude sign-concordant feedback): R_k is redrawn for every batch (every update of W);
* ``frsf`` (fixed random magnitude sign-concordant feedback): R_k is drawn once at construction and kept.

The feedback always has the signs of the current forward weights (sign symmetry, ``sign_symmetry``, is the same with
|R_k| = 1), so δ_{k-1} = (δ_k (sign(W_k) ⊙ |R_k|)) ⊙ f'(a_{k-1}). Everything else is FA's (docs/methods.md section 1):
the output layer's true gradient, ΔW_k = δ_k u_k^T, conv kernels as feedback for conv layers.

How R is drawn: R_k is FA's feedback draw (``kaiming_uniform_`` on W_k's shape, U(±scale·sqrt(6/fan_in))), so |R_k| is
U(0, scale·sqrt(6/fan_in)) and frSF differs from FA only in the signs. BioTorch draws R with its layers' init
(``xavier_uniform_`` by default, U(±sqrt(6/(fan_in + fan_out)))) and takes the absolute value; with Adam the scale of a
layer's feedback does not change its update, only the spread of the magnitudes does, which is the same uniform shape.
brSF draws from torch's global RNG (the run seeds it) at the start of every ``compute_updates``, on the weights'
device.

Departures from the papers: Liao et al. train with batch normalisation and "batch manhattan" updates; here the shared
loop's optimiser applies the update, with BP's defaults (ReLU, softmax + cross-entropy, Adam 1e-3) as sign symmetry
does, and the network has no batch normalisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from methods.cost import backprop_like
from methods.registry import register
from methods.shared.feedback import fan_in, kaiming_uniform
from methods.sign_symmetry import SignSymmetry, SignSymmetryConfig


@dataclass(frozen=True, kw_only=True)
class SignConcordantConfig(SignSymmetryConfig):
    """Sign symmetry's settings (Adam 1e-3, no Nesterov momentum); ``feedback_scale`` scales the range of |R|."""

    feedback_scale: float = 1.0
    """Multiplier of the bound of |R_k| ~ U(0, sqrt(6/fan_in)) (1: FA's ``kaiming_uniform_`` draw)."""


class _SignConcordant(SignSymmetry):
    """sign(W_k) ⊙ |R_k| as the feedback of layer k (R_k: ``magnitude(k)``)."""

    feedback_words = "sign(W)⊙|R|"

    def magnitude_bound(self, k: int) -> float:
        """The upper end of |R_k|: scale·sqrt(6/fan_in) of W_k's shape (FA's ``kaiming_uniform_`` bound)."""
        return self.config.feedback_scale * math.sqrt(6.0 / fan_in(self.layers[k].op.weight.shape))

    def magnitude(self, k: int) -> torch.Tensor:
        """|R_k| used by the current step."""
        raise NotImplementedError

    def feedback(self, k: int, layer) -> torch.Tensor:
        return torch.sign(layer.op.weight.detach()) * self.magnitude(k)


@register
class FRSF(_SignConcordant):
    """frSF: δ_{k-1} = (δ_k (sign(W_k) ⊙ |R_k|)) ⊙ f'(a_{k-1}), |R_k| drawn once and fixed."""

    name = "frsf"
    display_name = "frSF"
    Config = SignConcordantConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        return backprop_like(
            dims, f"every layer's input kept for the backward pass ({cls.feedback_words} in place of W)"
        )

    def build_feedback(self) -> None:
        # |R_k| kept as a buffer (saved, moved with the module): FA's draw, absolute value
        for k, layer in enumerate(self.layers[1:], start=1):
            self.fixed.add(f"R{k}", kaiming_uniform(layer.op.weight.shape, self.config.feedback_scale).abs())

    def magnitude(self, k: int) -> torch.Tensor:
        return self.fixed[f"R{k}"]


@register
class BRSF(_SignConcordant):
    """brSF: δ_{k-1} = (δ_k (sign(W_k) ⊙ |R_k|)) ⊙ f'(a_{k-1}), |R_k| redrawn for every batch."""

    name = "brsf"
    display_name = "brSF"
    Config = SignConcordantConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        drawn = sum(a * b for a, b in zip(dims[1:-1], dims[2:]))
        return backprop_like(
            dims,
            f"every layer's input kept for the backward pass ({cls.feedback_words} in place of W); a fresh |R| of "
            f"{drawn} numbers (every weight above the first layer) drawn per batch, not per sample",
        )

    def build_feedback(self) -> None:
        """Nothing fixed: |R_k| is drawn at every step (``compute_updates``)."""
        self.magnitudes: dict[int, torch.Tensor] = {}

    def magnitude(self, k: int) -> torch.Tensor:
        return self.magnitudes[k]

    def draw_magnitudes(self) -> None:
        """Draw every |R_k| for this batch: U(0, bound_k) on the weights' device and dtype."""
        for k in range(1, len(self.layers)):
            w = self.layers[k].op.weight
            self.magnitudes[k] = torch.empty(w.shape, device=w.device, dtype=w.dtype).uniform_(
                0.0, self.magnitude_bound(k)
            )

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        self.draw_magnitudes()
        return super().compute_updates(x, y)
