"""Direct random target projection (Frenkel, Lefebvre, Bol 2021): hidden layers learn from the one-hot target
projected through a fixed random B_k, so each layer can update right after its own forward pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.cost import CostModel
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.error_feedback import DirectFeedbackConfig, DirectFeedbackRule


@dataclass(frozen=True, kw_only=True)
class DRTPConfig(DirectFeedbackConfig):
    """The DRTP repo's defaults (NAG, momentum 0.9, hidden signal summed over the batch, dropout 0) with a learning
    rate that trains in a short run (0.007 instead of the repo's 1e-4).

    Its defaults use tanh hidden/conv units and a sigmoid output with BCE (this rule's ``arch_defaults``); the
    comparison tables' setting (Dellaferrera & Kreiman 2022) is ``--arch mlp:1024-C,act=relu,out_act=none``
    (ReLU, softmax + CE). With ReLU the hidden signal y* B never vanishes (no saturation, and it does not depend on
    the output), so the hidden weights grow without bound and accuracy peaks after the first epoch and then falls
    (measured: docs/measurements.md). tanh saturates (f' -> 0), which bounds the growth.
    """

    lr: float = 0.007
    """The equal-budget sweep's value on Fashion-MNIST (sweeps/best/fashion_mnist/drtp.json), rounded. The DRTP repo's
    default ``--lr 1e-4`` (batch 100, 100 epochs) barely moves in a short run."""


@register
class DRTP(DirectFeedbackRule):
    """DRTP: δ_k = (y* B_k) ⊙ f'(a_k) for hidden layers (target, not error); the output layer follows its own loss."""

    name = "drtp"
    display_name = "DRTP"
    Config = DRTPConfig
    arch_defaults = {"act": "tanh", "out_act": "sigmoid"}
    """The DRTP repo's defaults (tanh hidden and conv units, sigmoid output, BCE)."""

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # y* B_l is known before the forward pass: a layer updates as soon as it has run
        return CostModel(
            1,
            0,
            [2] * (len(dims) - 1),
            max(dims[:-1]),
            extra_macs=num_classes * sum(dims[1:-1]),
            note="one layer at a time",
        )

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = self.one_hot(y, self.num_classes, x.dtype)
        masks = self.input_masks(x.shape[0], x.device)
        with torch.no_grad():
            h = x
            for k, (layer, m) in enumerate(zip(self.layers[:-1], masks)):
                t = lw.layer_forward(layer, h, in_mask=m)
                self.hidden_update_from_projection(k, t, target)  # needs only y* and this layer's own pass
                h = t.h
            _, loss = self.output_update(lw.layer_forward(self.layers[-1], h, in_mask=masks[-1]), target)
        return {"loss": loss}
