"""What FA, DFA and DRTP share: config fields, the explicit forward pass with its traces, the output layer's error.

The three rules differ only in the signal a hidden layer receives (docs/methods.md sections 1-2):
FA sends δ_{k+1} down through a fixed B_{k+1} shaped like W_{k+1}; DFA sends the output error e through a fixed
B_k ∈ R^{C×N_k}; DRTP sends the one-hot target y* through B_k. The output layer always learns from the gradient of
its own loss. Settings follow the DRTP repo (ChFrenkel/DirectRandomTargetProjection, b84e3fe), the one reference code
that implements all three: NAG (SGD, Nesterov, momentum 0.9), tanh hidden units, sigmoid output with BCE,
feedback ``kaiming_uniform_``, dropout 0 on the inputs of fully-connected layers.

The loss follows the architecture's output activation: ``out_act=none`` (logits) is softmax + CE, ``out_act=sigmoid``
is BCE on the sigmoid output (the DRTP repo's default). Any other output activation is rejected.
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
from methods.errors import ArchError, ConfigError
from methods.shared import layerwise as lw
from methods.shared.feedback import FixedFeedback, kaiming_uniform

OUT_ACTS = ("none", "sigmoid")


@dataclass(frozen=True, kw_only=True)
class ErrorFeedbackConfig(RuleConfig):
    """Shared options of FA, DFA and DRTP; defaults are the DRTP repo's (NAG, momentum 0.9)."""

    optimizer: Optimizer = "sgd"
    nesterov: bool = True
    """NAG, the DRTP repo's default optimiser for every rule it trains."""
    dropout: float = 0.0
    """Drop probability on the input of every fully-connected layer (DRTP repo ``--dropout``, default 0; it is
    applied in ``FC_block`` before the Linear, never on conv layers)."""
    feedback_scale: float = 1.0
    """Multiplier of the feedback init bound sqrt(6/fan_in) (1 = ``kaiming_uniform_`` as in the DRTP repo)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout is a drop probability in [0, 1), got {self.dropout}")
        if not self.feedback_scale > 0:
            raise ConfigError(f"feedback_scale must be > 0, got {self.feedback_scale}")


@dataclass(frozen=True, kw_only=True)
class DirectFeedbackConfig(ErrorFeedbackConfig):
    """DFA and DRTP: a signal projected straight to every hidden layer."""

    hidden_reduction: Literal["sum", "mean"] = "sum"
    """How the hidden layers' projected signal is reduced over the batch: ``sum`` (the DRTP repo: the injected
    gradient has no 1/B, while the output loss is mean-reduced) or ``mean``."""


class ErrorFeedbackRule(LearningRule):
    """Base of FA/DFA/DRTP: explicit forward with traces, output δ_L, per-layer ``.grad`` written by hand."""

    arch_kinds = ("mlp", "cnn")
    config: ErrorFeedbackConfig

    @classmethod
    def check_arch(cls, spec: ArchSpec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if spec.out_act not in OUT_ACTS:
            raise ArchError(
                f"{cls.name} takes its output error from softmax + CE (out_act=none) or sigmoid + BCE "
                f"(out_act=sigmoid); out_act={spec.out_act} has neither"
            )
        if spec.kind == "mlp" and len(spec.widths) < 2:
            raise ArchError(
                f"{cls.name} needs at least one hidden layer (got {spec.short}); with none it is the delta rule"
            )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.layers = lw.explicit_layers(self.net)
        self.out_act = self.arch.out_act
        with torch.no_grad():  # z shapes (before pooling) of every layer, for conv-shaped feedback
            h, self.z_shapes = torch.zeros(1, *self.in_shape), []
            for layer in self.layers:
                t = lw.layer_forward(layer, h)
                self.z_shapes.append(tuple(t.z.shape[1:]))
                h = t.h
        self.fixed = FixedFeedback()
        self.build_feedback()

    def build_feedback(self) -> None:
        """Draw the rule's fixed matrices into ``self.fixed`` (``B<k>``)."""
        raise NotImplementedError

    def feedback(self, k: int, layer: lw.Layer) -> torch.Tensor:
        """The matrix that carries the learning signal to layer ``k`` (``layer`` is ``self.layers[k]``): FA's stand-in
        for W_k in the backward pass (shaped like W_k), DFA/DRTP's C-to-layer projection B_k. Default: the fixed random
        ``B<k>``; a variant overrides this one method (sign symmetry: sign(W_k), computed from the current weights)."""
        return self.fixed[f"B{k}"]

    def bp_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The output loss the rules train on (CE or BCE by ``out_act``), without dropout: the alignment reference."""
        return lw.output_error(self.net(x), self.out_act, self.one_hot(y, self.num_classes, x.dtype))[1]

    # ------------------------------------------------------------------ pieces
    def input_masks(self, batch: int, device: torch.device) -> list[torch.Tensor | None]:
        """Inverted-dropout masks on the input of every Linear (None elsewhere, or when dropout is 0)."""
        p = self.config.dropout
        masks: list[torch.Tensor | None] = []
        for layer in self.layers:
            if p > 0 and isinstance(layer.op, nn.Linear):
                keep = torch.full((batch, layer.op.in_features), 1.0 - p, device=device)
                masks.append(torch.bernoulli(keep) / (1.0 - p))
            else:
                masks.append(None)
        return masks

    @staticmethod
    def one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
        return F.one_hot(y, num_classes).to(dtype)

    def output_update(self, trace: lw.Trace, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient of the output layer's own loss w.r.t. its weights only; returns (δ_L, loss)."""
        delta, loss = lw.output_error(trace.z, self.out_act, target)
        lw.set_grads(self.layers[-1].op, *lw.weight_grads(self.layers[-1].op, trace.u, delta))
        return delta, loss

    def hidden_update_from_projection(self, k: int, trace: lw.Trace, signal: torch.Tensor) -> None:
        """DFA/DRTP hidden layer k: δ_k = (signal B_k) ⊙ f'(a_k) at z_k (after the activation, before pooling, as the
        DRTP repo's hook), ΔW_k = δ_k^T u_k summed (or averaged) over the batch."""
        from methods.shared.feedback import project

        g_z = project(signal, self.feedback(k, self.layers[k]))
        delta = self.layers[k].act.backward(g_z, trace.a)
        scale = 1.0 if self.config.hidden_reduction == "sum" else 1.0 / signal.shape[0]
        lw.set_grads(self.layers[k].op, *lw.weight_grads(self.layers[k].op, trace.u, delta), scale=scale)


class DirectFeedbackRule(ErrorFeedbackRule):
    """Base of DFA and DRTP: one fixed B_k per hidden layer that maps the C-dimensional signal (error or target)
    straight to that layer."""

    config: DirectFeedbackConfig

    def build_feedback(self) -> None:
        # DRTP repo TrainingHook: kaiming_uniform_ on [C, N_k], i.e. U(+-sqrt(6/N_k)); a conv layer's B_k is
        # [C, Ch, H, W], hooked after the activation and before max-pooling
        for k, shape in enumerate(self.z_shapes[:-1]):
            self.fixed.add(f"B{k}", kaiming_uniform((self.num_classes, *shape), self.config.feedback_scale))
