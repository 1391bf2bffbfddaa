"""Direct feedback alignment (Nøkland 2016): the output error goes to every hidden layer through its own fixed B_k."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.cost import CostModel
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.error_feedback import DirectFeedbackConfig, DirectFeedbackRule


@dataclass(frozen=True, kw_only=True)
class DFAConfig(DirectFeedbackConfig):
    """DFA with the DRTP repo's settings (its ``--train-mode DFA``: NAG, momentum 0.9, tanh, sigmoid + BCE) and a
    learning rate that trains in a short run (0.0075 instead of the repo's 1e-4)."""

    lr: float = 0.0075
    """The equal-budget sweep's value on Fashion-MNIST (sweeps/best/fashion_mnist/dfa.json), rounded. The DRTP repo's
    default ``--lr 1e-4`` (batch 100, 100 epochs) barely moves in a short run."""


@register
class DFA(DirectFeedbackRule):
    """Direct feedback alignment: δ_k = (e B_k) ⊙ f'(a_k) with e = y - y*, B_k ∈ R^{C×N_k} fixed random."""

    name = "dfa"
    display_name = "DFA"
    Config = DFAConfig
    arch_defaults = {"act": "tanh", "out_act": "sigmoid"}
    """The DRTP repo's defaults (tanh hidden and conv units, sigmoid output, BCE)."""

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # e reaches every layer through its own B_l (C x n_l)
        return CostModel(
            1,
            0,
            [2] * (len(dims) - 1),
            sum(dims[:-1]),
            extra_macs=num_classes * sum(dims[1:-1]),
            note="every layer waits for the output error",
        )

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = self.one_hot(y, self.num_classes, x.dtype)
        masks = self.input_masks(x.shape[0], x.device)
        with torch.no_grad():
            traces, h = [], x
            for layer, m in zip(self.layers, masks):
                traces.append(lw.layer_forward(layer, h, in_mask=m))
                h = traces[-1].h
            _, loss = self.output_update(traces[-1], target)
            # e = y - y*: softmax output (CE) or the sigmoid output (BCE), as the DRTP repo's self.y
            e = lw.prediction(traces[-1].z, self.out_act) - target
            for k in range(len(self.layers) - 1):
                self.hidden_update_from_projection(k, traces[k], e)
        return {"loss": loss}
