"""Feedback alignment (Lillicrap et al. 2016): backprop's backward pass, fixed random B_{l+1} for W_{l+1}^T."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.cost import backprop_like
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.error_feedback import ErrorFeedbackConfig, ErrorFeedbackRule
from methods.shared.feedback import kaiming_uniform


@dataclass(frozen=True, kw_only=True)
class FAConfig(ErrorFeedbackConfig):
    """FA with the DRTP repo's settings (NAG, momentum 0.9, tanh, sigmoid + BCE) and a learning rate that trains in a
    short run (0.07 instead of the repo's 1e-4)."""

    lr: float = 0.07
    """The equal-budget sweep's value on Fashion-MNIST (sweeps/best/fashion_mnist/fa.json), rounded. The DRTP repo's
    default ``--lr 1e-4`` (batch 100, 100 epochs) barely moves in a short run: the BCE output gradient carries
    1/(B·C)."""


@register
class FA(ErrorFeedbackRule):
    """Feedback alignment: δ_l = (δ_{l+1} B_{l+1}) ⊙ f'(a_l), B_{l+1} fixed random, shaped like W_{l+1}."""

    name = "fa"
    display_name = "FA"
    Config = FAConfig
    arch_defaults = {"act": "tanh", "out_act": "sigmoid"}
    """The DRTP repo's FA defaults (``--hidden-act tanh --conv-act tanh --output-act sigmoid --loss BCE``)."""

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        return backprop_like(
            dims, f"every layer's input kept for the backward pass ({cls.feedback_words} in place of W)"
        )

    feedback_words = "B"
    """What stands in for W in the backward pass, for the cost model's note."""

    def build_feedback(self) -> None:
        # one B per layer above the first, shaped like W (FA_wrapper: kaiming_uniform_ on a tensor of W's shape,
        # so fan_in = W's inputs: U(±sqrt(6/fan_in)); a conv layer's B is a conv kernel)
        for k, layer in enumerate(self.layers[1:], start=1):
            self.fixed.add(f"B{k}", kaiming_uniform(layer.op.weight.shape, self.config.feedback_scale))

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = self.one_hot(y, self.num_classes, x.dtype)
        masks = self.input_masks(x.shape[0], x.device)
        with torch.no_grad():
            traces, h = [], x
            for layer, m in zip(self.layers, masks):
                traces.append(lw.layer_forward(layer, h, in_mask=m))
                h = traces[-1].h
            delta, loss = self.output_update(traces[-1], target)  # δ_L = ∂loss/∂a_L
            for k in range(len(self.layers) - 1, 0, -1):
                above, below, t = self.layers[k], self.layers[k - 1], traces[k - 1]
                g_u = lw.input_grad(
                    above.op, self.feedback(k, above), delta, traces[k].u.shape
                )  # B_k stands in for W_k
                if masks[k] is not None:
                    g_u = g_u * masks[k]
                g_z = lw.post_backward(below, t, g_u.reshape(t.h.shape))  # through flatten and pooling
                delta = below.act.backward(g_z, t.a)  # δ_{k-1} = (δ_k B_k) ⊙ f'(a_{k-1})
                lw.set_grads(below.op, *lw.weight_grads(below.op, t.u, delta))
        return {"loss": loss}
