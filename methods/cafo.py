"""Cascaded Forward, CaFo (Zhao et al. 2023, arXiv 2303.09728; docs/methods.md section 11): a predictor per block.

The network is a cascade of blocks; block k's output h_k feeds block k+1 and a predictor P_k ∈ R^{C×D_k} (a Linear
without bias on the flattened h_k) that is trained by its own loss on the detached h_k, so no gradient reaches a block
from a predictor. The prediction is the sum over the blocks of each predictor's output distribution, softmax(P_k h_k)
(``loss=ce`` or ``mse``) or sparsemax(P_k h_k) (``loss=sl``), as the authors' code (Graph-ZKY/CaFo, read, not copied)
sums them; each predictor alone is an early exit (``block<k>``).

  * ``blocks=rand`` (CaFo-Rand): the blocks keep their random initialisation and are never trained.
  * ``blocks=dfa`` (CaFo-DFA): the blocks learn by direct feedback alignment from the output predictor's error e
    (δ_k = (e B_k) ⊙ f'(a_k), B_k fixed kaiming-uniform as methods/dfa.py, batch-averaged), while the predictors
    learn as above.
  * ``loss``: ``ce`` (cross-entropy, gradient softmax(z) - y), ``mse`` (Σ_c (z_c - y_c)^2, gradient 2(z - y)) or
    ``sl`` (sparsemax loss, gradient sparsemax(z) - y): the three losses of the paper, each with the gradient the
    authors' code writes by hand (its ``jaccobian_*``).

How an arch string maps onto the cascade: every layer but the last is a block, and the arch's C-way last layer is the
last block's predictor (trained like the others, zero-initialised like them; it keeps the arch's bias unless
``bias=0``). ``cnn:32-128-512,kernel=3`` is the authors' three conv blocks (3x3 convs of 32, 128, 512 channels,
ReLU, 2x2 max-pool).

Departures from the paper and its code:
  * the shared loop: every batch updates every predictor (and, with DFA, every block) at once; the paper trains the
    predictors block by block, each to convergence with full-batch gradient descent (5000 epochs at step 0.01 in the
    code) or, for MSE, in closed form (least squares), and pre-trains the DFA blocks before the predictors;
  * Adam at 1e-3 on minibatches instead of full-batch gradient descent; predictors start at 0 (the code starts them at
    all ones: every class column equal, the same symmetric start for softmax and sparsemax);
  * the authors' conv blocks end in BatchNorm after the pooling; the harness's cnn blocks have none;
  * the authors' MSE loss value is Σ_c |z_c - y_c| while its gradient is that of the squared error; here both are the
    squared error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig
from methods.cost import CostModel
from methods.errors import ArchError
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.feedback import FixedFeedback, kaiming_uniform, project

Blocks = Literal["rand", "dfa"]
Loss = Literal["ce", "mse", "sl"]


@dataclass(frozen=True, kw_only=True)
class CaFoConfig(RuleConfig):
    """CaFo-Rand-CE by default (random fixed blocks, cross-entropy predictors); Adam at 1e-3 on minibatches."""

    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    blocks: Blocks = "rand"
    """rand: random blocks, never trained (CaFo-Rand); dfa: blocks trained by DFA from the output predictor's error
    (CaFo-DFA)."""
    loss: Loss = "ce"
    """Predictor loss: ce (cross-entropy), mse (squared error on the raw outputs) or sl (sparsemax loss)."""


def sparsemax(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sparsemax(z), τ) over dim 1 (Martins & Astudillo 2016): p = max(z - τ, 0), Σ_c p_c = 1."""
    zs = z.sort(dim=1, descending=True).values
    k = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
    cums = zs.cumsum(dim=1)
    support = (1 + k * zs > cums).sum(dim=1, keepdim=True)
    tau = (cums.gather(1, support - 1) - 1) / support.to(z.dtype)
    return (z - tau).clamp_min(0), tau


def predictor_error(z: torch.Tensor, target: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(e, mean loss) of a predictor's outputs z [B, C] against one-hot ``target``: e = ∂(per-sample loss)/∂z."""
    if loss == "ce":
        return torch.softmax(z, dim=1) - target, F.cross_entropy(z, target.argmax(1))
    if loss == "mse":
        return 2 * (z - target), (z - target).pow(2).sum(1).mean()
    p, tau = sparsemax(z)
    value = -(z * target).sum(1) + 0.5 * ((p > 0) * (z * z - tau * tau)).sum(1) + 0.5
    return p - target, value.mean()


@register
class CaFo(LearningRule):
    """Cascaded Forward: random (or DFA-trained) blocks, each with its own predictor; the predictions are summed."""

    name = "cafo"
    display_name = "CaFo"
    Config = CaFoConfig
    arch_kinds = ("mlp", "cnn")
    default_arch = "cnn:32-128-512,kernel=3"
    """The authors' three conv blocks (32, 128, 512 channels, 3x3, ReLU, 2x2 max-pool); the C-way head is the third
    block's predictor."""
    config: CaFoConfig

    @classmethod
    def check_arch(cls, spec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if spec.out_act != "none":
            raise ArchError(f"{cls.name}: the last layer is a predictor on raw outputs; got out_act={spec.out_act}")
        if spec.kind == "mlp" and len(spec.widths) < 2:
            raise ArchError(f"{cls.name} needs at least one block before the C-way predictor (got {spec.short})")
        if spec.binary:
            raise ArchError(f"{cls.name}: binary=1 is not supported")

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        L = len(dims) - 1
        heads = num_classes * sum(dims[1 : L - 1])  # the predictors of the blocks below the last
        if config.blocks == "rand":
            # blocks: forward only; predictors (and the output layer): forward + ΔP
            return CostModel(
                1, 0, [1] * (L - 1) + [2], max(dims[:-1]), extra_macs=2 * heads, note="random blocks, forward only"
            )
        # DFA blocks: forward + ΔW_k, e B_k per block (C-sized); predictors forward + ΔP
        return CostModel(
            1,
            0,
            [2] * L,
            sum(dims[:-1]),
            extra_macs=2 * heads + num_classes * sum(dims[1:L]),
            note="every block waits for the output predictor's error (DFA)",
        )

    def __init__(self, config: CaFoConfig, arch, in_shape, num_classes, epochs):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        self.layers = lw.explicit_layers(self.net)
        with torch.no_grad():
            h, traces = torch.zeros(1, *self.in_shape), []
            for layer in self.layers:
                traces.append(lw.layer_forward(layer, h))
                h = traces[-1].h
        self.predictors = nn.ModuleList(
            nn.Linear(math.prod(t.h.shape[1:]), num_classes, bias=False) for t in traces[:-2]
        )
        """P_k of every block but the last (whose predictor is the network's C-way layer)."""
        with torch.no_grad():
            for op in [p for p in self.predictors] + [self.layers[-1].op]:
                op.weight.zero_()
                if op.bias is not None:
                    op.bias.zero_()
        self.fixed = FixedFeedback()
        if config.blocks == "rand":
            for layer in self.layers[:-1]:
                layer.requires_grad_(False)
        else:  # B_k on the block's activity after the activation, before pooling (as methods/dfa.py)
            for k, t in enumerate(traces[:-1]):
                self.fixed.add(f"B{k}", kaiming_uniform((num_classes, *t.z.shape[1:])))

    def bp_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CE of the network's own output (the end-to-end loss DFA's block updates stand in for)."""
        return F.cross_entropy(self.net(x), y)

    def _set(self, op: nn.Module, u: torch.Tensor, g: torch.Tensor) -> None:
        lw.set_grads(op, *lw.weight_grads(op, u, g))

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        loss_kind, b = self.config.loss, x.shape[0]
        target = F.one_hot(y, self.num_classes).to(x.dtype)
        with torch.no_grad():
            traces, h = [], x
            for layer in self.layers:
                traces.append(lw.layer_forward(layer, h))
                h = traces[-1].h
            total = torch.zeros((), device=x.device, dtype=x.dtype)
            for k, pred in enumerate(self.predictors):  # P_k from its own loss on the (detached) block output
                u = traces[k].h.flatten(1)
                e, loss = predictor_error(pred(u), target, loss_kind)
                self._set(pred, u, e / b)
                total += loss
            last = traces[-1]
            e, loss = predictor_error(last.a, target, loss_kind)  # the output layer: the last block's predictor
            self._set(self.layers[-1].op, last.u, e / b)
            total += loss
            if self.config.blocks == "dfa":
                for k, layer in enumerate(self.layers[:-1]):
                    delta = layer.act.backward(project(e, self.fixed[f"B{k}"]), traces[k].a)
                    lw.set_grads(layer.op, *lw.weight_grads(layer.op, traces[k].u, delta), scale=1.0 / b)
        return {"loss": total}

    def _probs(self, z: torch.Tensor) -> torch.Tensor:
        return sparsemax(z)[0] if self.config.loss == "sl" else torch.softmax(z, dim=1)

    def exit_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``block<k>``: predictor k's outputs (1-based); ``out``: Σ_k of their distributions (the CaFo prediction)."""
        outs = self.net.block_outputs(x)
        scores = {f"block{k + 1}": pred(outs[k].flatten(1)) for k, pred in enumerate(self.predictors)}
        scores[f"block{len(self.predictors) + 1}"] = outs[-1]
        scores["out"] = torch.stack([self._probs(z) for z in scores.values()]).sum(dim=0)
        return scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_scores(x)["out"]
