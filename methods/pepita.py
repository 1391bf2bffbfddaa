"""PEPITA (Dellaferrera & Kreiman, ICML 2022): two forward passes, the second on the input modulated by the error.

Per batch (docs/methods.md section 3; GiorgiaD/PEPITA 3fe03d8, numpy ``functions.py``, ``main_pytorch.py`` and the
CIFAR-10
tutorial): draw dropout masks once; pass 1 gives h_l and e = softmax(a_L) - y*; pass 2 runs on x̃ = x + F e with the
same masks and gives h̃_l and ẽ. Updates (W <- W - η ΔW, ΔW averaged over the batch):

    first layer   ΔW_1 = (h_1 - h̃_1) x̃^T
    middle layers ΔW_l = (h_l - h̃_l) h̃_{l-1}^T
    last layer    ΔW_L = ẽ h̃_{L-1}^T

No biases. SGD with momentum 0.9, lr ×0.1 at 60% and 90% of training. Variants of Srinivasan et al. 2024
(ravifrancesco/PEPITA 6f786f7): weight decay (``--set weight_decay=1e-4``, coupled L2 as its ``torch.optim.SGD``),
activation normalisation (``normalize=1``) and the factorised normal F (``f_init=factorised``). Weight mirroring is
not implemented (off by default in that code too).

Small CNN (``main_pytorch.py``): F e is reshaped to the image; a conv layer's difference is taken at ReLU(conv(·))
before pooling and correlated with the patches of its modulated input (``compute_delta_w_conv``). That script adds
its conv update with the opposite sign to its FC updates; here every layer uses the FC sign of the spec (to first
order the flip equals using -F for that layer, and F is zero-mean). Torch's SGD momentum (v <- 0.9 v + g,
W <- W - η v) equals the reference's v <- 0.9 v + η g, W <- W - v while η is constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.arch import ArchSpec
from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig, Schedule
from methods.cost import CostModel
from methods.errors import ArchError, ConfigError
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.feedback import FixedFeedback, pepita_factorised, pepita_uniform


@dataclass(frozen=True, kw_only=True)
class PEPITAConfig(RuleConfig):
    """The reference code's settings: SGD, momentum 0.9, keep rate 0.9, F scale 0.05, lr decay ×0.1 at 60%/90%."""

    lr: float = 0.01
    """The CIFAR-10 tutorial's η (the README says it matches the paper) and the conv script's default; the MNIST
    README command uses 0.1. With standardised inputs 0.01, 0.05 and 0.1 all train (docs/measurements.md)."""
    optimizer: Optimizer = "sgd"
    schedule: Schedule = "multistep"
    """η ×0.1 at epochs 60 and 90 of 100 (``milestones=(0.6, 0.9)``, ``gamma=0.1``)."""
    dropout: float = 0.1
    """Drop probability on the output of every hidden fully-connected layer, one mask per batch shared by both passes
    (the reference ``--dropout 0.9`` is the keep rate). Conv layers get none: the conv script's models ignore masks."""
    mask_twice: bool = False
    """Multiply the hidden difference h - h̃ by the mask once more, as the numpy ``functions.py`` does; the PyTorch
    tutorial and conv script do not (default)."""
    f_scale: float = 0.05
    """``Bstd``: F ~ U(±f_scale·sqrt(6/d)) (uniform) or product std f_scale·sqrt(2/d) (factorised)."""
    f_init: Literal["uniform", "factorised"] = "uniform"
    """uniform (GiorgiaD/PEPITA) or factorised normal F = B_0 ⋯ B_{L-1} (Srinivasan et al. 2024, MLPs only)."""
    normalize: bool = False
    """Srinivasan et al.'s activation normalisation: after each hidden activation (and mask), h <- h/‖h‖ with the
    Frobenius norm of the whole batch matrix, as their ``Normalization`` layer."""
    last_error: Literal["auto", "modulated", "clean"] = "auto"
    """Error in the last layer's update: modulated ẽ (GiorgiaD/PEPITA FC code), clean e (its conv script when the
    output layer follows a conv layer directly, and Srinivasan et al.'s code). auto: clean right after a conv layer,
    modulated otherwise."""
    conv_scale: Literal["reference", "positions", "sum"] = "reference"
    """Reduction of a conv layer's update Σ_{n,p} (h - h̃) ⊗ x̃-patch over batch n and output positions p:
    reference = /(B²·P) (the conv script averages over the batch and the P positions in ``compute_delta_w_conv`` and
    divides by the batch size again in the momentum step), positions = /(B·P), sum = /B (the FC rule's reduction)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout is a drop probability in [0, 1), got {self.dropout}")
        if not self.f_scale > 0:
            raise ConfigError(f"f_scale must be > 0, got {self.f_scale}")


@register
class PEPITA(LearningRule):
    """PEPITA: ΔW_l = (h_l - h̃_l) h̃_{l-1}^T from a clean and an error-modulated forward pass (x̃ = x + F e)."""

    name = "pepita"
    display_name = "PEPITA"
    Config = PEPITAConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # two forward passes, ΔW from the difference; F e (C x n_0) modulates the input
        return CostModel(
            2,
            0,
            [3] * (len(dims) - 1),
            sum(dims[1:-1]) + num_classes,
            extra_macs=num_classes * dims[0],
            note="first-pass hidden activations kept until the modulated pass",
        )

    arch_kinds = ("mlp", "cnn")
    arch_defaults = {"bias": False, "init": "he_uniform"}
    """The reference models: ``bias=False`` everywhere, He-uniform U(±sqrt(6/fan_in)) weights."""
    config: PEPITAConfig
    compiled_step = "updates_with_masks"
    """Compiled without the dropout masks, drawn eagerly (a compiled draw would not be the eager random stream)."""

    @classmethod
    def check_arch(cls, spec: ArchSpec, num_classes: int) -> None:
        if spec.kind == "resnet18":
            raise ArchError(
                "pepita updates plain conv/FC stacks (its reference code has no BatchNorm, skips or "
                "biases); resnet18 is not supported, use mlp:... or cnn:..."
            )
        super().check_arch(spec, num_classes)
        if spec.bias:
            raise ArchError(
                "pepita has no biases: its update rules define ΔW only (the reference models use "
                "bias=False); drop bias=1 from the arch"
            )
        if spec.out_act != "none":
            raise ArchError(f"pepita's output is softmax of the logits (out_act=none); got out_act={spec.out_act}")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layers = lw.explicit_layers(self.net)
        cfg = self.config
        d = int(torch.tensor(self.in_shape).prod())
        self.fixed = FixedFeedback()
        if cfg.f_init == "uniform":
            self.fixed.add("F", pepita_uniform(d, self.num_classes, cfg.f_scale))
        else:
            if self.arch.kind != "mlp":
                raise ArchError(
                    "pepita f_init=factorised is defined for MLPs (Srinivasan et al. 2024); use "
                    "f_init=uniform with a cnn"
                )
            factors = pepita_factorised([d, *self.net.widths], cfg.f_scale)
            product = factors[0]
            for b in factors[1:]:
                product = product @ b
            self.fixed.add("F", product)  # only the product is used (no weight mirroring)
        self.after_conv = len(self.layers) > 1 and isinstance(self.layers[-2].op, nn.Conv2d)

    # ------------------------------------------------------------------ forward passes
    def _layer(
        self, k: int, h: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(u, z, h_out) of layer k: u its input, z = act(op(u)) ⊙ mask (normalised if asked), h_out = pool(z)."""
        layer = self.layers[k]
        u = layer.pre(h)
        z = layer.act(layer.op(u))
        if k < len(self.layers) - 1:
            if mask is not None:
                z = z * mask
            if self.config.normalize:
                z = z / z.norm().clamp_min(1e-12)
        return u, z, layer.post(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.config.normalize:
            return self.net(x)
        h = x
        for k in range(len(self.layers)):
            h = self._layer(k, h, None)[2]
        return h

    def sample_masks(self, batch: int, device: torch.device) -> list[torch.Tensor | None]:
        """Inverted-dropout masks for the hidden FC layers (None for conv and output layers, or dropout 0)."""
        p = self.config.dropout
        masks: list[torch.Tensor | None] = []
        for k, layer in enumerate(self.layers):
            if p > 0 and k < len(self.layers) - 1 and isinstance(layer.op, nn.Linear):
                keep = torch.full((batch, layer.op.out_features), 1.0 - p, device=device)
                masks.append(torch.bernoulli(keep) / (1.0 - p))
            else:
                masks.append(None)
        return masks

    # ------------------------------------------------------------------ the rule
    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.updates_with_masks(x, y, self.sample_masks(x.shape[0], x.device))

    @torch.no_grad()
    def updates_with_masks(
        self, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor | None]
    ) -> dict[str, torch.Tensor]:
        """PEPITA's updates for batch (x, y) with the given dropout masks (one per layer, None = no mask)."""
        cfg, L, B = self.config, len(self.layers), x.shape[0]
        target = F.one_hot(y, self.num_classes).to(x.dtype)
        # pass 1: keep only the hidden activations z_l (and the output error)
        clean, h = [], x
        for k in range(L):
            _, z, h = self._layer(k, h, masks[k])
            clean.append(z if k < L - 1 else None)
        loss = F.cross_entropy(h, y)
        e = torch.softmax(h, dim=1) - target
        # pass 2 on x̃ = x + F e (F e reshaped to the image), same masks; update each layer as its pass-2 output arrives
        x_mod = x + (e @ self.fixed["F"].t()).reshape(x.shape)
        h = x_mod
        for k, layer in enumerate(self.layers):
            u, z, h = self._layer(k, h, masks[k])
            if k < L - 1:
                diff = clean[k] - z  # h_l - h̃_l
                clean[k] = None
                if cfg.mask_twice and masks[k] is not None:
                    diff = diff * masks[k]
            else:
                use_clean = cfg.last_error == "clean" or (cfg.last_error == "auto" and self.after_conv)
                diff = e if use_clean else torch.softmax(h, dim=1) - target  # e or ẽ
            dw, _ = lw.weight_grads(layer.op, u, diff)  # Σ_n diff_n ũ_n^T (u = x̃ or h̃_{l-1}, flattened)
            scale = 1.0 / B
            if isinstance(layer.op, nn.Conv2d) and cfg.conv_scale != "sum":
                positions = z.shape[-2] * z.shape[-1]
                scale /= positions * (B if cfg.conv_scale == "reference" else 1)
            lw.set_grads(layer.op, dw, None, scale=scale)
        return {"loss": loss}
