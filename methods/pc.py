"""Predictive coding (PC), discriminative inference learning: Whittington & Bogacz 2017 in the setting of Pinchetti et
al. 2024 (PCX, liukidar/pcx, ``examples/discriminative_experiments/MLP``).

Every layer l = 1..L-1 of an MLP has value nodes x_l; x_0 is the input, clamped. Layer l predicts
μ_l = f(a_l), a_l = W_l x_{l-1} + b_l (the activation applied to the prediction, as in PCX, where a vode stores
``act(linear(x))``), and the output layer's logits a_L are scored against the target y. Per sample the energy is

    F = Σ_{l=1}^{L-1} ½ ||x_l - f(a_l)||²  +  β · ℓ(a_L, y),

ℓ = CE(softmax(a_L), y) (``output=ce``, PCX ``ce_energy`` with the output vode clamped to the one-hot target) or
ℓ = ½ ||y - a_L||² (``output=se``, PCX ``se_energy``: the output nodes clamped to y). β = 1 is the clamped output;
β < 1 nudges it (the output term scaled, as in equilibrium propagation and Millidge et al. 2022; PCX instead moves the
clamped target to a_L + β(y - a_L): the two agree to first order in β at the start of inference).

Per batch:
  1. a forward pass sets x_l = f(a_l), so every hidden error ε_l = x_l - f(a_l) starts at 0;
  2. T inference steps of gradient descent on F over the hidden value nodes, all layers at once (PCX differentiates
     the summed energy and steps every unfrozen vode): with g_l = ∂F/∂a_l (g_l = -ε_l ⊙ f'(a_l) for l < L,
     g_L = β ∂ℓ/∂a_L),

        x_l <- x_l - γ (ε_l + W_{l+1}^T g_{l+1}),      then the predictions a_l are recomputed from the new x;

  3. local weight updates from the errors at the final state, averaged over the batch and divided by β (PCX's
     ``mul=1/beta``):  ∂F/∂W_l / β = g_l x_{l-1}^T / β, i.e. ΔW_l ∝ ε_l ⊙ f'(a_l) x_{l-1}^T for hidden layers and
     ΔW_L ∝ -(∂ℓ/∂a_L) x_{L-1}^T at the output. The shared optimiser steps them.

Where the code departs from PCX: the value nodes descend their own per-sample energy with plain gradient steps of
size γ (PCX uses SGD with momentum 0.1-0.35 on the vodes, lr 0.02-0.03, on a batch-mean energy under ``vmap``); the
weights use the harness's optimiser (Adam by default; PCX uses AdamW with a warm-up/cosine schedule, 25 epochs).
Prediction is the feedforward pass (PCX's eval step runs the forward pass only). With one hidden layer (the default
mlp:1024-C) the hidden nodes are the only value nodes; T >= L-1 steps are needed before the error reaches layer 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.arch import ArchSpec
from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig
from methods.cost import CostModel
from methods.errors import ArchError, ConfigError
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.binary import BinaryLinear, binarize


@dataclass(frozen=True, kw_only=True)
class PCConfig(RuleConfig):
    """Adam on the weights (PCX trains its PC MLPs with AdamW); T, γ and lr from short Fashion-MNIST runs
    (10,000 training samples, 1 epoch) on mlp:1024-C, see docs/methods.md."""

    lr: float = 1e-3
    """Weight learning rate (Adam). PCX's tuned AdamW lr for its 784-128-128-128-10 GELU MLPs is 3e-4 over 25
    epochs; 1e-3 trains within the harness's short runs."""
    optimizer: Optimizer = "adam"
    inference_steps: int = 4
    """T: gradient steps on the value nodes per batch before the weight update (PCX's MLP configs: T = 5). A step
    costs a forward-like and a backward-like pass."""
    inference_lr: float = 0.5
    """γ: step size of the value-node descent on the per-sample energy (PCX: SGD lr ~0.02-0.03 with momentum on a
    batch-mean energy)."""
    output: Literal["ce", "se"] = "ce"
    """Output energy: ``ce`` (cross-entropy of softmax(a_L) against the clamped one-hot target; PCX PC-CE) or ``se``
    (½||y - a_L||², the output nodes clamped to y; PCX PC-SE, Whittington & Bogacz)."""
    beta: float = 1.0
    """Output nudge β: the output term of F is β·ℓ and the weight update is divided by β. 1 = output clamped to the
    target; small β gives BP's gradient once inference has converged."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.inference_steps, int) or self.inference_steps < 1:
            raise ConfigError(
                f"inference_steps (T) must be >= 1, got {self.inference_steps}: with none no hidden error forms"
            )
        if not 0.0 < self.inference_lr <= 1.0:
            raise ConfigError(f"inference_lr (γ) must be in (0, 1], got {self.inference_lr}")
        if not 0.0 < self.beta <= 1.0:
            raise ConfigError(f"beta (output nudge) must be in (0, 1], got {self.beta}")


@register
class PC(LearningRule):
    """Predictive coding: T steps of inference on the value nodes, then ΔW_l ∝ ε_l ⊙ f'(a_l) x_{l-1}^T."""

    name = "pc"
    display_name = "PC"
    Config = PCConfig
    arch_kinds = ("mlp",)
    compiled_step = "pc_update"
    config: PCConfig

    @classmethod
    def check_arch(cls, spec: ArchSpec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if spec.out_act != "none":
            raise ArchError(
                f"pc scores the output logits a_L with its own energy (output=ce|se); out_act={spec.out_act} "
                "would put an activation before it: use out_act=none"
            )
        if len(spec.widths) < 2:
            raise ArchError(f"pc needs at least one hidden layer of value nodes (got {spec.short})")

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        T, L = config.inference_steps, len(dims) - 1
        # layer 1: its forward product and its update (x_0 is clamped, a_1 never changes); layer l >= 2: the
        # forward product, T re-predictions, T errors sent down through W_l^T, the update
        return CostModel(
            forward_passes=T + 1,
            backward_passes=T,
            matvecs=[2] + [2 + 2 * T] * (L - 1),
            stored=sum(dims[:-1]) + sum(dims[1:]),
            note=(
                f"T={T}: the input, the value nodes x_1..x_{{L-1}} and the pre-activations a_1..a_L kept through the "
                "inference steps"
            ),
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layers = lw.explicit_layers(self.net)

    def bp_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The output loss ℓ of the energy (CE or ½||y - a_L||² summed over classes), averaged over the batch."""
        out = self(x)
        if self.config.output == "ce":
            return F.cross_entropy(out, y)
        return 0.5 * (out - F.one_hot(y, self.num_classes).to(out.dtype)).pow(2).sum(1).mean()

    @staticmethod
    def _weight(op: nn.Linear) -> torch.Tensor:
        """The weight the forward pass multiplies by (sign(W) for binary=1)."""
        return binarize(op.weight) if isinstance(op, BinaryLinear) else op.weight

    def _output_grad(self, a_out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """∂ℓ/∂a_L per sample (β not applied)."""
        if self.config.output == "ce":
            return torch.softmax(a_out, dim=1) - target
        return a_out - target

    def pc_update(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Inference and the weight gradients: returns (loss of the feedforward output, [dW_1, db_1, ..., dW_L, db_L])
        with dW_l = Σ_b g_l x_{l-1}^T / (β B) (db_l likewise; None without biases)."""
        cfg, layers = self.config, self.layers
        beta, gamma = cfg.beta, cfg.inference_lr
        L = len(layers)
        weights = [self._weight(layer.op) for layer in layers]
        # 1. forward pass: x_l = f(a_l); xs[0] is the (flattened) input
        xs = [layers[0].pre(x)]
        acts = []
        for k, layer in enumerate(layers):
            acts.append(layer.op(xs[k]))
            if k < L - 1:
                xs.append(layer.act(acts[k]))
        out = acts[-1]
        if cfg.output == "ce":
            loss = F.cross_entropy(out, target.argmax(1))
        else:
            loss = 0.5 * (out - target).pow(2).sum(1).mean()

        def errors() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            """ε_l = x_l - f(a_l) (hidden l) and g_l = ∂F/∂a_l for every layer (index k = l - 1)."""
            eps = [xs[k + 1] - layers[k].act(acts[k]) for k in range(L - 1)]
            g = [-layers[k].act.backward(eps[k], acts[k]) for k in range(L - 1)]
            g.append(beta * self._output_grad(acts[-1], target))
            return eps, g

        # 2. T inference steps on x_1..x_{L-1}, all layers at once, then new predictions above them
        for _ in range(cfg.inference_steps):
            eps, g = errors()
            for k in range(L - 1):
                xs[k + 1] = xs[k + 1] - gamma * (eps[k] + g[k + 1] @ weights[k + 1])
            for k in range(1, L):
                acts[k] = layers[k].op(xs[k])
        # 3. local updates from the errors at the final state
        _, g = errors()
        scale = 1.0 / (beta * x.shape[0])
        grads: list[torch.Tensor] = []
        for k, layer in enumerate(layers):
            grads.append((g[k].t() @ xs[k]) * scale)
            grads.append(g[k].sum(0) * scale if layer.op.bias is not None else None)
        return loss, grads

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        target = F.one_hot(y, self.num_classes).to(x.dtype)
        with torch.no_grad():
            loss, grads = self.pc_update(x, target)
        for k, layer in enumerate(self.layers):
            lw.set_grads(layer.op, grads[2 * k], grads[2 * k + 1])
        return {"loss": loss.detach()}
