"""Backpropagation: the end-to-end gradient of the cross-entropy loss (the reference every rule is compared to)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig
from methods.cost import backprop_like
from methods.registry import register


@dataclass(frozen=True, kw_only=True)
class BPConfig(RuleConfig):
    """Adam at 1e-3 by default (reaches the foundation bar on Fashion-MNIST in 10 epochs); SGD with momentum and
    step/cosine schedules are options."""

    lr: float = 1e-3
    optimizer: Optimizer = "adam"


@register
class BP(LearningRule):
    """dL/dW for every parameter through the whole network, L = CE(softmax(net(x)), y)."""

    name = "bp"
    display_name = "BP"
    Config = BPConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        return backprop_like(dims, "every layer's input kept for the backward pass")

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss = F.cross_entropy(self.net(x), y)
        self.manual_backward(loss)
        return {"loss": loss.detach()}
