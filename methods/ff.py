"""Forward-Forward (Hinton 2022; docs/methods.md section 4): each layer tells positive from negative data by goodness.

Positive data = the input with its true label written into the first C values, negative data = the same input
with a wrong label (``methods/shared/label_embedding.py``). Before every layer (the input included) the activity
is normalised, h <- h / (sqrt(mean_j h_j^2) + eps), so a layer cannot read the previous layer's goodness. Layer l
has goodness G_l = sum_j h_{l,j}^2, p(positive) = sigmoid(G_l - theta_l) with theta_l = N_l (the width), and the loss

    loss_l = 1/2 [ mean_pos softplus(theta_l - G_l) + mean_neg softplus(G_l - theta_l) ]   (BCE over pos + neg)

trained from its own loss only: its input is detached. Prediction: write each label in turn and take the label
with the largest goodness summed over layers >= ``min_layer`` (2 in the official code); each layer's own goodness
is an early exit. Optionally a linear softmax read-out on the normalised activities of layers >= ``min_layer`` for
the neutral input (label values 1/C), trained on detached features; it also supplies "hard" negatives.
Settings follow loeweX/Forward-Forward (da516f0: RMS normalisation, theta = N_l, ReLU with straight-through
gradient, peer normalisation 0.03, read-out lr 1e-2 and wd 3e-3) and the official code's lr decay (linear to 0 over
the second half), except two: the optimiser, Adam at 1e-3 instead of loeweX's SGD at 1e-3 (momentum 0.9, wd 3e-4,
tuned for 100 epochs), which learned far more slowly in a short screen; and the value of the written label,
sqrt(D / C) for D input values instead of 1 (``label_value``; docs/measurements.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig, Schedule
from methods.cost import CostModel
from methods.errors import ArchError, ConfigError
from methods.registry import register
from methods.shared.label_embedding import (
    embed_all_labels,
    embed_labels,
    embed_neutral,
    hard_wrong_labels,
    wrong_labels,
)


@dataclass(frozen=True, kw_only=True)
class FFConfig(RuleConfig):
    """Forward-Forward settings (loeweX's, with Adam; see the module docstring)."""

    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    schedule: Schedule = "linear"
    milestones: tuple[float, ...] = (0.5,)
    """The lr decays linearly to 0 over the second half of training (official code, loeweX)."""
    threshold: float | None = None
    """Goodness threshold theta_l; None = the layer's width N_l (official code, loeweX)."""
    negatives: Literal["uniform", "hard"] = "uniform"
    """uniform over the wrong labels, or hard: sampled from the softmax read-out, true label masked (needs readout)."""
    label_value: float | None = None
    """Value written at the label's position (the other C-1 label values are 0); None: sqrt(D / C) for D input values.
    The papers write 1 into [0, 1] pixels. On standardised inputs every value is about 1 in size, so a 1 holds about
    1/D of the normalised input's energy, and the layers learn to pair image and label slowly, the more slowly the
    larger the image; at sqrt(D / C) the label holds about 1/(C+1) of it whatever the image size. Set 1 for the
    papers' value."""
    min_layer: int = 2
    """Goodness prediction sums layers >= min_layer (1-based; official code: 2); also the read-out's layers."""
    straight_through: bool = True
    """ReLU passes the gradient as if it were the identity (loeweX's ReLU_full_grad); False: the true ReLU gradient."""
    peer_norm: float = 0.03
    """Weight of the peer-normalisation loss (mean_layer - mean_unit)^2 on running mean activities (0 = off)."""
    peer_momentum: float = 0.9
    """Momentum of the running mean activity of every unit (initialised at 0.5)."""
    readout: bool = False
    """Train a linear softmax read-out on the neutral input's normalised activities (reported as exit 'softmax')."""
    readout_lr: float = 1e-2
    """Learning rate of the softmax read-out (its own parameter group)."""
    readout_weight_decay: float = 3e-3
    """Weight decay of the softmax read-out."""
    predict: Literal["goodness", "softmax"] = "goodness"
    """The rule's prediction ('out'): summed goodness over all labels, or the softmax read-out (needs readout)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_value is not None and not (math.isfinite(self.label_value) and self.label_value > 0):
            raise ConfigError(f"label_value must be > 0 (or None for sqrt(D / C)), got {self.label_value}")
        if self.threshold is not None and not self.threshold > 0:
            raise ConfigError(f"threshold must be > 0 (or None for the layer width), got {self.threshold}")
        if self.min_layer < 1:
            raise ConfigError(f"min_layer is 1-based and must be >= 1, got {self.min_layer}")
        if self.peer_norm < 0 or not 0.0 <= self.peer_momentum < 1.0:
            raise ConfigError(
                f"need peer_norm >= 0 and peer_momentum in [0, 1), got {self.peer_norm}, {self.peer_momentum}"
            )
        if self.readout_lr <= 0 or self.readout_weight_decay < 0:
            raise ConfigError("readout_lr must be > 0 and readout_weight_decay >= 0")
        if not self.readout and (self.negatives == "hard" or self.predict == "softmax"):
            raise ConfigError(
                f"negatives={self.negatives!r} / predict={self.predict!r} use the softmax read-out; set readout=true"
            )


def rms_normalise(h: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """h / (sqrt(mean_j h_j^2) + eps) per sample: sum_j h_j^2 = N afterwards."""
    return h / (h.pow(2).mean(dim=1, keepdim=True).sqrt() + eps)


def ff_layer_loss(goodness: torch.Tensor, is_positive: torch.Tensor, threshold: float) -> torch.Tensor:
    """Mean BCE of sigmoid(G - theta) against positive (1) / negative (0) over all samples."""
    return F.binary_cross_entropy_with_logits(goodness - threshold, is_positive.to(goodness.dtype))


@register
class FF(LearningRule):
    """Forward-Forward: per-layer goodness of positive (true label) vs negative (wrong label) data."""

    name = "ff"
    display_name = "FF"
    Config = FFConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # positive and negative pass, each layer updated from its own goodness
        return CostModel(
            2, 0, [4] * (len(dims) - 1), 2 * max(dims[:-1]), note="positive and negative data, one layer at a time"
        )

    arch_kinds = ("mlp",)
    arch_defaults = {"out_act": "relu", "init": "lecun_normal", "act": "relu"}
    """ReLU on every layer; weights N(0, 1/fan_in), biases 0 (the official code)."""
    default_arch = "mlp:1000-1000-1000"
    needs_class_output = False

    @classmethod
    def check_arch(cls, spec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if spec.act != "relu" or spec.out_act != "relu":
            raise ArchError(f"ff computes goodness on ReLU units; got act={spec.act}, out_act={spec.out_act}")

    def __init__(self, config: FFConfig, arch, in_shape, num_classes, epochs):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        depth = len(self.net.blocks)
        if config.min_layer > depth:
            raise ConfigError(f"min_layer={config.min_layer} but {arch.short} has only {depth} layer(s)")
        if num_classes > self.net.blocks[0].op.in_features:
            raise ConfigError(f"cannot write {num_classes} labels into {self.net.blocks[0].op.in_features} inputs")
        d = self.net.blocks[0].op.in_features
        self.label_value = math.sqrt(d / num_classes) if config.label_value is None else config.label_value
        """The value written at the label's position (``label_value``, or sqrt(D / C))."""
        for k, width in enumerate(self.net.widths):
            self.register_buffer(f"peer_mean{k}", torch.full((width,), 0.5))
        self.read_layers = list(range(config.min_layer - 1, depth))
        self.readout_head: nn.Linear | None = None
        if config.readout:
            self.readout_head = nn.Linear(sum(self.net.widths[k] for k in self.read_layers), num_classes, bias=False)
            nn.init.zeros_(self.readout_head.weight)

    # ------------------------------------------------------------------ pieces
    def threshold(self, k: int) -> float:
        return float(self.net.widths[k]) if self.config.threshold is None else self.config.threshold

    def layer(self, k: int, z: torch.Tensor) -> torch.Tensor:
        """ReLU(W_k rms_normalise(z) + b_k); with ``straight_through`` the gradient ignores the ReLU."""
        block = self.net.blocks[k]
        a = block.op(rms_normalise(z))
        h = block.act(a)
        if self.config.straight_through:
            h = a + (h - a).detach()
        return h

    def param_groups(self) -> list[dict[str, Any]]:
        groups = [{"params": list(self.net.parameters())}]
        if self.readout_head is not None:
            groups.append(
                {
                    "params": list(self.readout_head.parameters()),
                    "lr": self.config.readout_lr,
                    "weight_decay": self.config.readout_weight_decay,
                }
            )
        return groups

    def readout_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax read-out on the normalised activities of the neutral input (features carry no gradient)."""
        with torch.no_grad():
            z, feats = embed_neutral(x, self.num_classes, self.label_value), []
            for k in range(len(self.net.blocks)):
                z = self.layer(k, z)
                if k in self.read_layers:
                    feats.append(rms_normalise(z))
        return self.readout_head(torch.cat(feats, dim=1))

    def peer_loss(self, k: int, h_pos: torch.Tensor) -> torch.Tensor:
        """(mean over units of the running means - each unit's running mean)^2, averaged (loeweX)."""
        m = self.config.peer_momentum
        running = getattr(self, f"peer_mean{k}") * m + h_pos.mean(dim=0) * (1 - m)
        getattr(self, f"peer_mean{k}").copy_(running.detach())
        return (running.mean() - running).pow(2).mean()

    # ------------------------------------------------------------------ training
    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, b = self.config, x.shape[0]
        if cfg.negatives == "hard":
            y_neg = hard_wrong_labels(self.readout_logits(x), y)
        else:
            y_neg = wrong_labels(y, self.num_classes)
        z = torch.cat(
            [
                embed_labels(x, y, self.num_classes, self.label_value),
                embed_labels(x, y_neg, self.num_classes, self.label_value),
            ]
        )
        is_pos = torch.zeros(2 * b, device=x.device)
        is_pos[:b] = 1.0
        total = torch.zeros((), device=x.device)
        for k in range(len(self.net.blocks)):
            h = self.layer(k, z.detach())  # detached input: the layer learns from its own loss only
            loss = ff_layer_loss(h.pow(2).sum(dim=1), is_pos, self.threshold(k))
            if cfg.peer_norm > 0:
                loss = loss + cfg.peer_norm * self.peer_loss(k, h[:b])
            self.manual_backward(loss)
            total = total + loss.detach()
            z = h.detach()
        if self.readout_head is not None:
            ce = F.cross_entropy(self.readout_logits(x), y)
            self.manual_backward(ce)
            total = total + ce.detach()
        return {"loss": total}

    # ------------------------------------------------------------------ prediction
    def goodness_all_labels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per layer, (B, C) goodness of x with each label written in."""
        b, z, out = x.shape[0], embed_all_labels(x, self.num_classes, self.label_value), []
        for k in range(len(self.net.blocks)):
            z = self.layer(k, z)
            out.append(z.pow(2).sum(dim=1).view(self.num_classes, b).T)
        return out

    def exit_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``layerK``: layer K's goodness per label; ``goodness``: summed over layers >= min_layer (``goodness_all``:
        over every layer); ``softmax``: the read-out (if trained); ``out``: the configured prediction."""
        per_layer = self.goodness_all_labels(x)
        out = {f"layer{k + 1}": g for k, g in enumerate(per_layer)}
        out["goodness"] = torch.stack([per_layer[k] for k in self.read_layers]).sum(dim=0)
        if self.config.min_layer > 1:
            out["goodness_all"] = torch.stack(per_layer).sum(dim=0)
        if self.readout_head is not None:
            out["softmax"] = self.readout_logits(x)
        out["out"] = out["softmax"] if self.config.predict == "softmax" else out["goodness"]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_scores(x)["out"]
