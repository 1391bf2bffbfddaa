"""Mono-Forward (Gong, Li, Abdulla 2025, arXiv 2501.09238; docs/methods.md section 10): a local cross-entropy per layer.

Every hidden layer l has a projection matrix M_l ∈ R^{C×N_l} (no bias) that maps its activity a_l to class scores
G_l = a_l M_l^T (the paper's "goodness"), and the layer learns from ℓ_l = CE(softmax(G_l), y) alone: its input is
detached, so ℓ_l reaches (W_l, b_l, M_l) and nothing below. One forward pass per batch updates every layer as the data
passes; the prediction is argmax G_L of the last hidden layer (the paper's MF prediction); every other layer's G_l is an
early exit (``layer<l>``), so the best layer's accuracy is reported too.

How an arch string maps onto the paper's network: the hidden layers are the MF layers, and the C-way last layer of the
arch *is* the last hidden layer's projection M_L (with the arch's bias, which the paper's M has not; ``bias=0`` drops
it). So ``mlp:1000-1000-C`` is the paper's 2 x 1000 MLP (M_1 extra, M_2 = the output layer), and on ``mlp:1024-C``
(one hidden layer) MF is backpropagation by construction: the one local loss is the network's loss. Conv archs
(``cnn``) work the same way, M_l on the flattened feature maps of a conv block (the paper also trains CNNs with MF).

Not given here (the paper's optimiser settings are not reproduced): Adam at 1e-3 is the harness's BP default; M_l is
initialised as a PyTorch Linear (kaiming-uniform, a=sqrt(5)), as Spyra & Dzwinel's MF code (read, not copied) does.
Not reproduced: a projection on the input a_0 (that code keeps one; it trains nothing but itself).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig
from methods.cost import CostModel
from methods.errors import ArchError
from methods.registry import register


@dataclass(frozen=True, kw_only=True)
class MonoForwardConfig(RuleConfig):
    """Adam at 1e-3 (the harness's BP default; the paper's optimiser settings are not reproduced)."""

    lr: float = 1e-3
    optimizer: Optimizer = "adam"


@register
class MonoForward(LearningRule):
    """Mono-Forward: each hidden layer l learns from CE(a_l M_l^T, y) on a detached input; predict from the last."""

    name = "mono_forward"
    display_name = "MF"
    Config = MonoForwardConfig
    arch_kinds = ("mlp", "cnn")
    default_arch = "mlp:1000-1000-C"
    """The paper's 2 x 1000 MLP (its MNIST and Fashion-MNIST network): M_1 extra, M_2 the C-way output layer."""

    @classmethod
    def check_arch(cls, spec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if spec.out_act != "none":
            raise ArchError(f"{cls.name} trains every projection by softmax + CE on logits; got out_act={spec.out_act}")
        if spec.kind == "mlp" and len(spec.widths) < 2:
            raise ArchError(
                f"{cls.name} needs at least one hidden layer (got {spec.short}); with none it is the delta rule"
            )

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # hidden layer l: forward + ΔW_l (its δ comes from the C-sized M_l, not a weight-sized matrix); the output
        # layer (M_L of the last hidden layer): forward, update, and δ back to the last hidden layer
        L = len(dims) - 1
        heads = sum(dims[1 : L - 1])  # hidden layers with an extra projection: all but the last hidden one
        stored = max([*dims[: L - 2], dims[L - 2] + dims[L - 1]])
        return CostModel(
            1,
            0,
            [2] * (L - 1) + [3],
            stored,
            extra_macs=3 * num_classes * heads,
            note="one forward pass, every layer updated from its own projection as the data passes",
        )

    def __init__(self, config: MonoForwardConfig, arch, in_shape, num_classes, epochs):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        with torch.no_grad():
            was = self.net.training
            self.net.eval()
            outs = self.net.block_outputs(torch.zeros(1, *self.in_shape))
            self.net.train(was)
        self.projections = nn.ModuleList(nn.Linear(math.prod(o.shape[1:]), num_classes, bias=False) for o in outs[:-2])
        """M_l of every hidden block but the last (whose projection is the network's C-way layer)."""

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        blocks, h, losses = self.net.blocks, x, []
        for k, proj in enumerate(self.projections):
            h = blocks[k](h.detach())  # detached input: ℓ_k reaches block k and M_k only
            losses.append(F.cross_entropy(proj(h.flatten(1)), y))
        out = blocks[-1](blocks[-2](h.detach()))  # the last hidden block and its projection (the output layer)
        loss = F.cross_entropy(out, y)
        self.manual_backward(torch.stack([*losses, loss]).sum())  # disjoint graphs: each loss reaches its layer only
        return {"loss": loss.detach()}

    def exit_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``layer<l>``: G_l = a_l M_l^T of hidden layer l (1-based) below the last; ``out``: the last layer's G_L."""
        outs = self.net.block_outputs(x)
        scores = {f"layer{k + 1}": proj(outs[k].flatten(1)) for k, proj in enumerate(self.projections)}
        scores["out"] = outs[-1]
        return scores
