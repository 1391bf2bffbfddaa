"""Target propagation (docs/methods.md section "Target propagation"): DTP and DDTP-linear.

Both rules give every layer a target ĥ_l and train it by its own loss ||h_l - ĥ_l||²; no error is sent back through
the forward weights. The output target is a gradient step on the loss, ĥ_L = h_L - η ∂ℓ/∂h_L = h_L - η (softmax(h_L) -
y*) (h_L: the logits, ℓ: the sample's cross-entropy), and every layer, the output layer included, is trained towards its
target (Meulemans et al. 2020, "we used targets to train all layers"). Per layer l (u_l its input, a_l = W_l u_l + b_l,
h_l = f_l(a_l)) the forward update is the gradient of (1/B) Σ_n ||h_l - ĥ_l||² for W_l alone:

    δ_l = (2/B) (h_l - ĥ_l) ⊙ f_l'(a_l),   ΔW_l = δ_l^T u_l,   Δb_l = Σ_n δ_l.

The rules differ in how the targets reach the hidden layers and how the feedback weights learn (they are parameters of
the rule, trained by the same optimiser step as the forward weights, in their own parameter group):

* ``dtp`` (Lee, Zhang, Fischer & Bengio 2015, Alg. 1): a learned inverse per layer above the first,
  g_l(h_l) = σ(V_l h_l + c_l) ≈ f_l^{-1}, carries the target down with the difference correction
  ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) - g_l(h_l). g_l learns from the noise-corrupted reconstruction loss
  (1/σ²) mean ||g_l(f_l(h_{l-1} + σε)) - (h_{l-1} + σε)||², ε ~ N(0, I).
* ``ddtp`` (DDTP-linear, Meulemans, Carzaniga, Suykens, Sacramento & Grewe 2020): a direct linear map Q_l (N_l × C)
  from the output to every hidden layer, ĥ_l = h_l + Q_l (ĥ_L - h_L); Q_l learns from the difference reconstruction
  loss (DRL) (1/σ²) mean ||Q_l (f_{l→L}(h_l + σε) - h_L) - σε||² (f_{l→L}: the layers above l up to the logits),
  whose minimum is the (damped) pseudo-inverse of the Jacobian of the output w.r.t. h_l: Gauss-Newton targets.

Where the papers leave a choice open, the authors' code (github.com/meulemansalex/theoretical_framework_for_target_
propagation, read, not copied) decides: per step, the targets and both updates are computed from the same forward
pass and the weights before the step (``train_parallel``); losses are mean-reduced over the batch, the reconstruction
losses over batch and units and scaled by 1/σ²; tanh hidden units, feedback activations tanh (DTP) and linear (DDTP),
Xavier-normal feedback weights, Adam for forward and feedback weights. Departures: the output target takes the gradient
of each sample's loss (the code's loss is the batch mean, so its η carries a 1/B: its 0.017 and 0.24 with batch 128
are η = 1.3e-4 and 1.9e-3 here; Adam makes the forward update's size independent of η up to its ε); one Adam
setting (betas 0.9, 0.999) for both weight sets (the code tunes betas and ε per set); forward weights Xavier-uniform
(the code: Xavier-normal, the same variance); the code's initial feedback-only epochs (DDTP-linear: 6, plus one
feedback-only epoch after every epoch) are ``fb_warmup_steps`` feedback-only steps here. DTP's first layer gets its
target through g_2 like every other layer (Lee et al. also do so); no feedback map is needed for the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from methods.arch import ACTIVATIONS, Activation, ArchSpec
from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig
from methods.cost import CostModel
from methods.errors import ArchError, ConfigError
from methods.registry import register
from methods.shared import layerwise as lw


@dataclass(frozen=True, kw_only=True)
class TargetPropConfig(RuleConfig):
    """Options shared by DTP and DDTP-linear (Adam for forward and feedback weights, as the authors' code)."""

    lr: float = 1e-3
    """Adam lr of the forward weights."""
    optimizer: Optimizer = "adam"
    target_step: float = 0.1
    """η of the output target ĥ_L = h_L - η (softmax(h_L) - y*) (the gradient of the sample's cross-entropy)."""
    fb_lr: float = 1e-3
    """lr of the feedback weights (their own parameter group; the lr schedule scales it too)."""
    fb_weight_decay: float = 0.0
    """Coupled L2 decay of the feedback weights (the DDTP-linear code's ``feedback_wd``)."""
    sigma: float = 0.1
    """Std of the Gaussian noise that corrupts the activities in the reconstruction loss."""
    fb_warmup_steps: int = 0
    """Steps at the start of the run that train the feedback weights only (the forward weights get no update): the
    authors' initial feedback-only epochs (``epochs_fb``), counted in steps."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("target_step", "fb_lr", "sigma"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and v > 0 and v < float("inf")):
                raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")
        if not self.fb_weight_decay >= 0:
            raise ConfigError(f"fb_weight_decay must be >= 0, got {self.fb_weight_decay}")
        if not isinstance(self.fb_warmup_steps, int) or self.fb_warmup_steps < 0:
            raise ConfigError(f"fb_warmup_steps must be an integer >= 0, got {self.fb_warmup_steps}")


@dataclass(frozen=True, kw_only=True)
class DTPConfig(TargetPropConfig):
    """DTP defaults: Adam 1e-3 for both weight sets, η 0.1, σ 0.1 (picked by a few 3-epoch runs on 10k Fashion-MNIST
    images: forward lr 3e-4 / 1e-3 / 3e-3, η 0.01 / 0.1 / 1, σ 0.1 / 0.3; docs/methods.md)."""

    fb_act: str = "hidden"
    """Activation σ of the inverses g_l(h) = σ(V_l h + c_l): ``hidden`` (the network's hidden activation, tanh by
    default, as the authors' DTP code) or an activation name (e.g. none for linear inverses)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fb_act != "hidden" and self.fb_act not in ACTIVATIONS:
            raise ConfigError(f"fb_act={self.fb_act!r} is not valid; choose hidden or one of {', '.join(ACTIVATIONS)}")


@dataclass(frozen=True, kw_only=True)
class DDTPConfig(TargetPropConfig):
    """DDTP-linear defaults: forward Adam 3e-4 (the best of 3e-4 / 1e-3 / 3e-3 in 3-epoch runs on 10k Fashion-MNIST
    images; the authors' Fashion-MNIST config gives 8.7e-6 / 0.017 = 5e-4 after their lr normalisation), feedback Adam
    1e-3, σ 0.1 (theirs: 0.099). With linear feedback, η only scales the targets (Adam undoes it, up to its ε)."""

    lr: float = 3e-4


class _TargetProp(LearningRule):
    """What DTP and DDTP-linear share: the explicit forward pass, the output target, the local forward update, the
    feedback parameter group."""

    Config = TargetPropConfig
    arch_kinds = ("mlp",)
    arch_defaults = {"act": "tanh", "init": "xavier_uniform"}
    """The authors' tanh hidden units; Xavier init (their code: Xavier-normal)."""
    config: TargetPropConfig

    @classmethod
    def check_arch(cls, spec: ArchSpec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if spec.out_act != "none":
            raise ArchError(
                f"{cls.name} takes its output target from the cross-entropy gradient of the logits; "
                f"out_act={spec.out_act} is not logits (use out_act=none)"
            )
        if len(spec.widths) < 2:
            raise ArchError(f"{cls.name} needs at least one hidden layer (got {spec.short})")

    def __init__(self, config: TargetPropConfig, arch, in_shape, num_classes, epochs):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        self.layers = lw.explicit_layers(self.net)
        self.widths = [int(layer.op.out_features) for layer in self.layers]
        self.feedback = self.build_feedback()
        """The trained feedback maps (``nn.ModuleList``; rule-specific indexing)."""
        self._steps_done = 0
        self._rec_sum = None

    def build_feedback(self) -> nn.ModuleList:
        raise NotImplementedError

    def param_groups(self) -> list[dict[str, Any]]:
        """Forward weights at ``lr``; feedback weights at ``fb_lr`` with ``fb_weight_decay``."""
        fwd = [p for p in self.net.parameters() if p.requires_grad]
        fb = [p for p in self.feedback.parameters() if p.requires_grad]
        return [
            {"params": fwd},
            {"params": fb, "lr": self.config.fb_lr, "weight_decay": self.config.fb_weight_decay},
        ]

    def draw_noise(self, h: torch.Tensor) -> torch.Tensor:
        """ε ~ N(0, I) shaped like ``h`` (the tests replace it by fixed tensors)."""
        return torch.randn_like(h)

    def forward_traces(self, x: torch.Tensor) -> list[lw.Trace]:
        traces, h = [], x
        for layer in self.layers:
            traces.append(lw.layer_forward(layer, h))
            h = traces[-1].h
        return traces

    def output_target(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ĥ_L = h_L - η (softmax(h_L) - y*), the batch-mean cross-entropy)."""
        e = torch.softmax(logits, dim=1) - F.one_hot(y, self.num_classes).to(logits.dtype)
        return logits - self.config.target_step * e, F.cross_entropy(logits, y)

    def local_update(self, k: int, trace: lw.Trace, target: torch.Tensor) -> None:
        """``.grad`` of layer k's (W, b) from (1/B) Σ_n ||h_k - ĥ_k||²: δ = (2/B)(h - ĥ) ⊙ f'(a), ΔW = δ^T u."""
        layer = self.layers[k]
        g = (trace.h - target).mul_(2.0 / trace.h.shape[0])
        delta = layer.act.backward(g, trace.a)
        lw.set_grads(layer.op, *lw.weight_grads(layer.op, trace.u, delta))

    def training_forward(self) -> bool:
        """False during the feedback-only warm-up steps."""
        return self._steps_done >= self.config.fb_warmup_steps

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._rec_sum = torch.zeros((), device=self.device)

    def epoch_metrics(self) -> dict[str, float]:
        out = dict(super().epoch_metrics())
        if self._rec_sum is not None and self._steps:
            out["train/rec_loss"] = float(self._rec_sum / self._steps)
        return out

    def _finish(self, loss: torch.Tensor, rec: torch.Tensor) -> dict[str, torch.Tensor]:
        self._steps_done += 1
        if self._rec_sum is not None:
            self._rec_sum += rec
        return {"loss": loss, "rec_loss": rec}


@register
class DTP(_TargetProp):
    """Difference target propagation: ĥ_{l-1} = h_{l-1} + g_l(ĥ_l) - g_l(h_l), g_l a learned inverse of layer l."""

    name = "dtp"
    display_name = "DTP"
    Config = DTPConfig
    config: DTPConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # forward W_l u and ΔW_l everywhere; above the first layer: g_l at ĥ_l and h_l (2), and the reconstruction
        # loss's corrupted f_l(h̃), g_l and ΔV_l (3)
        L = len(dims) - 1
        return CostModel(
            2,
            1,
            [2] + [7] * (L - 1),
            sum(dims[:-1]) + sum(dims[1:]),
            draws=sum(dims[1:-1]),
            note="targets carried down layer by layer through learned inverses; every layer's activity and target kept",
        )

    def build_feedback(self) -> nn.ModuleList:
        # feedback[k - 1] = g_k: layer k's output (N_k) back to layer k-1's (N_{k-1}), k = 1..L-1 (0-based)
        fbs = nn.ModuleList()
        for k in range(1, len(self.layers)):
            lin = nn.Linear(self.widths[k], self.widths[k - 1], bias=self.arch.bias)
            nn.init.xavier_normal_(lin.weight)
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
            fbs.append(lin)
        name = self.arch.act if self.config.fb_act == "hidden" else self.config.fb_act
        self.fb_act = Activation(name)
        return fbs

    def inverse(self, k: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g_k(h), its pre-activation V_k h + c_k) for layer k >= 1 (0-based)."""
        a = self.feedback[k - 1](h)
        return self.fb_act(a), a

    def propagate(self, k: int, target: torch.Tensor, h_k: torch.Tensor, h_below: torch.Tensor) -> torch.Tensor:
        """The difference-corrected target of layer k-1: h_{k-1} + g_k(ĥ_k) - g_k(h_k)."""
        return h_below + (self.inverse(k, target)[0] - self.inverse(k, h_k)[0])

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        sigma = self.config.sigma
        with torch.no_grad():
            traces = self.forward_traces(x)
            target, loss = self.output_target(traces[-1].h, y)
            if self.training_forward():
                for k in range(len(self.layers) - 1, -1, -1):
                    self.local_update(k, traces[k], target)
                    if k > 0:
                        target = self.propagate(k, target, traces[k].h, traces[k - 1].h)
            rec = torch.zeros((), device=x.device, dtype=x.dtype)
            for k in range(1, len(self.layers)):  # g_k from the corrupted layer below (Lee et al. Alg. 1)
                noisy = traces[k - 1].h + sigma * self.draw_noise(traces[k - 1].h)
                fk = self.layers[k](noisy)
                g, a = self.inverse(k, fk)
                r = g - noisy
                scale = 1.0 / (sigma**2 * r.numel())
                rec += scale * r.square().sum()
                delta = self.fb_act.backward(r.mul_(2.0 * scale), a)
                lin = self.feedback[k - 1]
                lin.weight.grad = delta.t() @ fk
                if lin.bias is not None:
                    lin.bias.grad = delta.sum(0)
        return self._finish(loss.detach(), rec)


@register
class DDTP(_TargetProp):
    """DDTP-linear: ĥ_l = h_l + Q_l (ĥ_L - h_L), Q_l a linear map from the output trained by the DRL."""

    name = "ddtp"
    display_name = "DDTP-linear"
    Config = DDTPConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # forward and ΔW_l everywhere; the DRL of hidden layer l sends its corrupted activity through every layer above
        # it (layer i+1 is crossed by the i hidden layers below it); Q_l e, Q_l Δa and ΔQ_l are C x N_l products
        L = len(dims) - 1
        hidden = sum(dims[1:-1])
        return CostModel(
            2,
            0,
            [2 + i for i in range(L)],
            sum(dims[:-1]) + sum(dims[1:]),
            extra_macs=3 * num_classes * hidden,
            draws=hidden,
            note="the output's target reaches every hidden layer through its own Q_l (C x N_l)",
        )

    def build_feedback(self) -> nn.ModuleList:
        # feedback[k] = Q_k: the C output units to hidden layer k (0-based); no bias (it cancels in the difference)
        fbs = nn.ModuleList()
        for k in range(len(self.layers) - 1):
            lin = nn.Linear(self.num_classes, self.widths[k], bias=False)
            nn.init.xavier_normal_(lin.weight)
            fbs.append(lin)
        return fbs

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        sigma, top = self.config.sigma, len(self.layers) - 1
        with torch.no_grad():
            traces = self.forward_traces(x)
            logits = traces[-1].h
            target, loss = self.output_target(logits, y)
            if self.training_forward():
                step = target - logits  # ĥ_L - h_L
                self.local_update(top, traces[top], target)
                for k in range(top):
                    self.local_update(k, traces[k], traces[k].h + self.feedback[k](step))
            rec = torch.zeros((), device=x.device, dtype=x.dtype)
            for k in range(top):  # difference reconstruction loss of Q_k
                noise = sigma * self.draw_noise(traces[k].h)
                h = traces[k].h + noise
                for j in range(k + 1, top + 1):
                    h = self.layers[j](h)
                da = h - logits  # f_{k→L}(h_k + σε) - h_L
                r = self.feedback[k](da) - noise
                scale = 1.0 / (sigma**2 * r.numel())
                rec += scale * r.square().sum()
                self.feedback[k].weight.grad = r.mul_(2.0 * scale).t() @ da
        return self._finish(loss.detach(), rec)
