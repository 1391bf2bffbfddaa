"""±1 weights with real-valued biases (SPELA Sec. 4.4.3 ablation, and BP-Bin as its baseline).

The forward pass uses sign(W) in {-1, +1} (sign(0) = +1); the gradient of the loss with respect to sign(W)
is passed straight through to a real-valued latent W, which the optimiser updates (BinaryConnect,
Courbariaux et al. 2015, without clipping). Biases are neither binarised nor touched. The SPELA paper says
only "±1 weights, biases not binarised"; the straight-through latent weights are our choice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad


def binarize(w: torch.Tensor) -> torch.Tensor:
    """sign(w) in the forward pass, identity gradient in the backward pass."""
    return _SignSTE.apply(w)


class BinaryLinear(nn.Linear):
    """``nn.Linear`` computing x @ sign(W)^T + b; ``weight`` holds the latent real values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, binarize(self.weight), self.bias)


class BinaryConv2d(nn.Conv2d):
    """``nn.Conv2d`` with sign(W) kernels; ``weight`` holds the latent real values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, binarize(self.weight), self.bias)
