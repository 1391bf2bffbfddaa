"""SPELA and SPELA(O) (arXiv 2402.09769; docs/methods.md section 5): local cosine losses towards fixed class vectors.

Every layer k has C fixed unit vectors v_k(c) (``methods/shared/class_vectors.py``: the Thomson-energy
minimiser, a regular simplex when C <= N_k + 1). A layer's input is L2-normalised, h_k = σ(W_k ĥ_{k-1} + b_k),
and the layer learns from loss_k = -cos(h_k, v_k(y)) alone: its input is detached, so no gradient crosses
layers. Any layer predicts argmax_c cos(h_k, v_k(c)) (early exit); the last layer is the rule's prediction.

* ``spela_o`` (Alg. 1): one forward pass per batch; every layer gets its update as the data passes.
* ``spela`` (Alg. 3): layer by layer; the run's epochs are split across the layers (``layer_epochs``) and the
  lr schedule restarts for every layer (``methods/shared/layer_schedule.py``).

The paper states lr 0.01 "initial" and He-like initial weight norms, but not the activation, optimiser, batch
size or decay; the defaults below are a plain reading (ReLU, Adam 1e-3, batch 64, cosine decay). Neither they nor
the best of a search over activations and input scaling reach the paper's Fashion-MNIST number (docs/measurements.md;
the claims ledger of ``make report`` compares every SPELA claim with the runs at its settings).

The authors' published MLP code (github.com/BorthakurAyonIITG/SPELA-TMLR-2025, read, not copied) differs from
Alg. 1 in ways the paper does not mention; each is an option here, the paper's reading stays the default:
loss log(2 - cos) (``loss=log_cosine``), no L2 normalisation of layer inputs (``input_norm=false``, with raw
[0, 1] pixels: ``--norm unit``), leaky ReLU with slope 0.001 on every layer (``act=leaky_relu_1e-3``), He-uniform
weights, plain SGD at lr 2.5 lowered by 0.1 every 10 epochs (``schedule=linear_step``), batch 50; ``make bench
PROFILE=spela_code`` runs it, with Table 6's variants; the claims in reports/claims/spela.toml use this recipe.
Every layer needs an activation (σ_k), so ``out_act`` defaults to ReLU here. Ablations (SPELA Table 6):
``loss=euclidean`` (loss ||h_k - v_k(y)||, prediction = nearest vector), ``loss=euclidean_ref`` (the authors'
code: log(1 + ||unit(h_k) - v_k(y)||), nearest vector to the raw h_k predicts, which for unit vectors is the
cosine prediction), ``vectors=random`` (N(0, I) vectors scaled to unit norm), and ±1 weights through the arch
option ``binary=1`` (also usable by BP: BP-Bin).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig, Schedule
from methods.cost import CostModel
from methods.errors import ConfigError
from methods.registry import register
from methods.shared import layerwise as lw
from methods.shared.class_vectors import class_vectors, cosine_scores, euclidean_scores, random_vectors
from methods.shared.layer_schedule import layerwise_optimizers, phase, split_epochs

Loss = Literal["cosine", "log_cosine", "euclidean", "euclidean_ref"]
Vectors = Literal["symmetric", "random"]


@dataclass(frozen=True, kw_only=True)
class SpelaConfig(RuleConfig):
    """SPELA(O) settings (defaults: the plain reading of the paper, see the module docstring)."""

    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    schedule: Schedule = "cosine"
    loss: Loss = "cosine"
    """cosine: -cos(h_k, v_k(y)) (Alg. 1); log_cosine: log(2 - cos(h_k, v_k(y))) (the authors' code); Table 6's
    Euclidean ablation as euclidean (||h_k - v_k(y)||, nearest vector predicts) or euclidean_ref (the authors' code:
    log(1 + ||unit(h_k) - v_k(y)||) in training, the nearest vector to the raw h_k predicts)."""
    input_norm: bool = True
    """L2-normalise every layer's input (Alg. 1, line 6); the authors' MLP code feeds raw inputs (False)."""
    vectors: Vectors = "symmetric"
    """symmetric (Thomson-energy minimiser) or random (Gaussian, unit norm; Table 6 ablation)."""


@dataclass(frozen=True, kw_only=True)
class SpelaLayerwiseConfig(SpelaConfig):
    """SPELA (layer by layer): SPELA(O)'s settings plus how the run's epochs are shared among the layers."""

    layer_epochs: tuple[float, ...] = ()
    """Relative epoch shares of layers 1..K (e.g. 3,1); empty = an even split. Each layer gets >= 1 epoch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(not w > 0 for w in self.layer_epochs):
            raise ConfigError(f"layer_epochs must be positive shares, got {self.layer_epochs}")


def unit(h: torch.Tensor, norm: torch.Tensor | None = None) -> torch.Tensor:
    """h / ||h||_2 per sample (flattened); the normalisation before every SPELA layer (Alg. 1, line 6). ``norm``:
    ||h||_2 per sample (B, 1) when the caller has it already, e.g. from the previous layer's cosine loss."""
    h = h.flatten(1)
    return h / (h.norm(dim=1, keepdim=True) if norm is None else norm).clamp_min(1e-12)


class _SpelaMLP(LearningRule):
    """What SPELA and SPELA(O) share: class vectors per layer, the layer loss, per-layer read-outs."""

    Config = SpelaConfig
    arch_kinds = ("mlp",)
    arch_defaults = {"out_act": "relu", "init": "he_normal"}
    """σ_k on every layer (ReLU); He init fits the paper's initial weight norms (45.24, 4.46 for 784-1024-10)."""
    default_arch = "mlp:1000-34"
    needs_class_output = False
    compiled_step = "local_update"

    def __init__(self, config: SpelaConfig, arch, in_shape, num_classes, epochs):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        # one draw from the run's seeded generator fixes every layer's vectors (cached per (C, width, seed))
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
        make = class_vectors if config.vectors == "symmetric" else random_vectors
        for k, width in enumerate(self.net.widths):
            self.register_buffer(f"class_vectors{k}", make(num_classes, width, seed + k))

    def vectors(self, k: int) -> torch.Tensor:
        """(C, N_k) fixed unit class vectors of layer k (0-based)."""
        return getattr(self, f"class_vectors{k}")

    def layer(self, k: int, h: torch.Tensor) -> torch.Tensor:
        """h_k = σ_k(W_k unit(h_{k-1}) + b_k) (without ``unit`` when ``input_norm`` is off)."""
        return self.net.blocks[k](unit(h) if self.config.input_norm else h.flatten(1))

    def layer_loss(self, k: int, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Batch mean of the layer's loss towards v_k(y) (``loss``: see the config), as an autograd expression: the
        definition ``loss_and_grad`` differentiates by hand (the tests check the two agree)."""
        target, loss = self.vectors(k)[y], self.config.loss
        if loss in ("cosine", "log_cosine"):
            cos = F.cosine_similarity(h, target, dim=1, eps=1e-8)
            return -cos.mean() if loss == "cosine" else torch.log(2.0 - cos).mean()
        if loss == "euclidean":
            return (h - target).norm(dim=1).mean()
        return torch.log1p((unit(h) - target).norm(dim=1)).mean()

    def loss_and_grad(self, k: int, h: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(``layer_loss``, its gradient ∂loss/∂h) of layer k, by hand and without an autograd graph. With B the batch,
        v = v_k(y) (unit norm), n = ||h||, ĥ = h/n and c = cos(h, v) = ĥ·v, ∂c/∂h = (v - c ĥ)/n, so

        * cosine, -mean c:            ∂/∂h = -(v - c ĥ)/(B n)
        * log_cosine, mean log(2 - c): ∂/∂h = -(v - c ĥ)/(B n (2 - c))
        * euclidean, mean ||h - v||:   ∂/∂h = (h - v)/(B ||h - v||)          (0 where h = v)
        * euclidean_ref, mean log(1 + r), r = ||ĥ - v||: with g = (ĥ - v)/(B r (1 + r)), ∂/∂h = (g - ĥ (ĥ·g))/n.

        n is clamped as in ``layer_loss`` (1e-8 for the cosine, 1e-12 for ``unit``); only an all-zero h, where every
        formula gives 0 or the ReLU derivative does, can tell the clamps apart."""
        return self._loss_grad_norm(k, h, y)[:2]

    def _loss_grad_norm(
        self, k: int, h: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``loss_and_grad`` and ||h||_2 per sample (B, 1, unclamped) where the loss computes it (None for
        ``euclidean``): the next layer's ``unit`` takes it instead of computing it again."""
        v, B, kind = self.vectors(k).index_select(0, y), h.shape[0], self.config.loss
        if kind in ("cosine", "log_cosine"):
            norm = h.norm(dim=1, keepdim=True)
            n = norm.clamp_min(1e-8)
            cos = (h * v).sum(1, keepdim=True).div_(n)  # h·v as torch.linalg.vecdot computes it (product, then sum)
            if kind == "cosine":
                loss, coef = -cos.mean(), (-1.0 / B) / n
            else:
                two_minus = 2.0 - cos
                loss, coef = torch.log(two_minus).mean(), (-1.0 / B) / (n * two_minus)
            return loss, torch.addcmul(v * coef, h, -coef * cos / n), norm  # coef (v - c h/n)
        if kind == "euclidean":
            d = h - v
            r = d.norm(dim=1, keepdim=True)
            return r.mean(), d.div_(r.clamp_min(torch.finfo(d.dtype).tiny) * B), None
        norm = h.norm(dim=1, keepdim=True)
        n = norm.clamp_min(1e-12)
        hu = h / n
        d = hu - v
        r = d.norm(dim=1, keepdim=True)
        g = d.div_(r.clamp_min(torch.finfo(d.dtype).tiny) * (1.0 + r) * B)
        return torch.log1p(r).mean(), torch.addcmul(g, hu, -(hu * g).sum(1, keepdim=True)).div_(n), norm

    @torch.no_grad()
    def local_update(
        self, k: int, h_prev: torch.Tensor, y: torch.Tensor, norm: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Layer k's forward pass and its update from its own loss: h_k, the loss and ||h_k|| per sample (None where
        the loss does not compute it; ``norm`` of the next layer's call), with ``.grad`` of (W_k, b_k) set to
        ∂loss/∂W_k = δ^T u and ∂loss/∂b_k = Σ_n δ_n, δ = ∂loss/∂h ⊙ σ'(W_k u + b_k), u = unit(h_{k-1}) (``norm``:
        ||h_{k-1}|| per sample, if the caller has it). Written out (``loss_and_grad``) instead of through autograd:
        the same numbers as backpropagating ``layer_loss`` into the layer alone, without building or walking a graph
        per layer and per step."""
        block = self.net.blocks[k]
        u = unit(h_prev, norm) if self.config.input_norm else h_prev.flatten(1)
        a = block.op(u)  # a BinaryLinear (binary=1) multiplies by sign(W); its straight-through grad is the same δ^T u
        h = block.act(a)
        loss, g, h_norm = self._loss_grad_norm(k, h, y)
        lw.set_grads(block.op, *lw.weight_grads(block.op, u, block.act.backward(g, a)))
        return h, loss, h_norm

    def layer_scores(self, k: int, h: torch.Tensor) -> torch.Tensor:
        if self.config.loss in ("cosine", "log_cosine"):
            return cosine_scores(h, self.vectors(k))
        return euclidean_scores(h, self.vectors(k))

    def exit_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores of every layer (``layer1``..``layerK``); ``out`` is the last layer's."""
        out, h = {}, x
        for k in range(len(self.net.blocks)):
            h = self.layer(k, h)
            out[f"layer{k + 1}"] = self.layer_scores(k, h)
        out["out"] = out[f"layer{len(self.net.blocks)}"]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_scores(x)["out"]


@register
class SpelaO(_SpelaMLP):
    """SPELA(O): one forward pass; each layer updates from its own -cos(h_k, v_k(y)) as the data passes."""

    name = "spela_o"
    display_name = "SPELA(O)"

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        return CostModel(1, 0, [2] * (len(dims) - 1), max(dims[:-1]), note="one layer at a time")

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        total, h, norm = torch.zeros((), device=x.device, dtype=x.dtype), x, None
        for k in range(len(self.net.blocks)):
            h, loss, norm = self.local_update(k, h, y, norm)  # loss_k reaches (W_k, b_k) only
            total += loss
        return {"loss": total}


@register
class Spela(_SpelaMLP):
    """SPELA: layer by layer, each layer trained for its share of the epochs before the next one starts."""

    name = "spela"
    display_name = "SPELA"
    Config = SpelaLayerwiseConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        # the layer in training: forward through the trained ones, update that layer only
        return CostModel(1, 0, [1] * (len(dims) - 2) + [2], dims[-2], note="worst case: the last layer in training")

    layerwise = True

    def __init__(self, config: SpelaLayerwiseConfig, arch, in_shape, num_classes, epochs):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        n = len(self.net.blocks)
        weights = config.layer_epochs or (1.0,) * n
        if len(weights) != n:
            raise ConfigError(f"layer_epochs has {len(weights)} shares but {arch.short} has {n} layers")
        self.layer_epoch_counts = split_epochs(epochs, weights)
        """Epochs given to each layer, in order (sums to the run's epochs)."""

    def active_layer(self) -> int:
        """0-based index of the layer trained in the current epoch."""
        return phase(self.current_epoch, self.layer_epoch_counts)[0]

    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        k_train, h = self.active_layer(), x
        with torch.no_grad():  # the layers already trained only carry the data
            for k in range(k_train):
                h = self.layer(k, h)
        return {"loss": self.local_update(k_train, h, y)[1]}

    def configure_optimizers(self) -> dict[str, Any]:
        return layerwise_optimizers(self.param_groups(), self.config, self.layer_epoch_counts)


AUTHORS_CODE_ARCH = "mlp:1000-34,act=leaky_relu_1e-3,out_act=leaky_relu_1e-3,init=he_uniform"
AUTHORS_CODE_RULE = {
    "loss": "log_cosine",
    "input_norm": False,
    "optimizer": "sgd",
    "momentum": 0.0,
    "lr": 2.5,
    "schedule": "linear_step",
    "step_size": 10,
    "gamma": 0.04,
}
AUTHORS_CODE_RUN = {"batch_size": 50, "norm": "unit"}
"""The SPELA authors' published MLP recipe (this module's docstring): unit options, rule options, run options."""
