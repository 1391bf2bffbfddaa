"""Forward gradient with random, local and NTK guesses (Baydin et al. 2022; Ren et al. 2023; Fournier et al. 2023).

Every block but the last gets an estimate of a *target* gradient t from its projection on a *guess* v
(Fournier et al. Eq. 1), per sample n and per parameter tensor (weight space, Eq. 4) or per block output
(activity space, Eq. 5)::

    ĝ = Σ_n ⟨t_n, v_n⟩ / (‖v_n‖² + ε) · v_n        (normalised; ``projection=unnormalized``: Σ_n ⟨t_n, v_n⟩ v_n)

  * target ``global``: t = ∂L/∂θ of the end-to-end cross-entropy; ``local``: the gradient of the block's own
    auxiliary loss ℓ_k = CE(head_k(h_k), y) on a detached block input;
  * guess ``gaussian`` / ``rademacher``: isotropic noise drawn per sample; ``local``: ∂ℓ_k/∂θ of a trained
    auxiliary head; ``ntk``: the same from a head re-drawn every step and never trained; ``fixed_ntk``: from a
    head frozen at its initialisation;
  * space ``weight``: v_n perturbs the parameters; ``activity``: v_n perturbs the block output h_k, and the
    estimate ĝ_h is backpropagated inside the block only.
The last block always receives its true gradient. Local target with local guess is greedy local learning (the
guess is the target, so the projection returns it): ``local_learning``. ``num_guesses`` estimates are averaged.
Guess kinds and spaces are strategy objects (methods/fg_strategies.py); the step functions here are the same
sequence for every combination.

How ⟨t_n, v_n⟩ is obtained (``derivative``):
  * ``jvp``: forward mode. The tangent of each perturbed module's output is written in closed form (it is linear
    in the parameter), and ``torch.func.jvp`` carries it to the per-sample losses; with random guesses there is
    no backward pass at all (only the last block's own gradient) and only the current block's module inputs are
    kept. Exact only when samples do not interact in the forward pass, so it is refused on BatchNorm networks.
  * ``backward``: Fournier et al.'s simulation with two reverse passes (target and guess), per-sample
    contributions from each module's input and output gradient (their hooks), then the projection.
  * ``auto``: jvp for random guesses on networks without BatchNorm, backward otherwise.
Both paths give the same numbers on the same guess (tests/test_forward_gradient.py).

Choices where the papers are silent, following streethagore/ForwardLocalGradient (e262989):
  * ``projection=auto`` is the authors' code: normalised, except random guesses in activity space, which their
    backward hook projects without normalisation;
  * per-sample random guesses (their ``compute_random_directions`` draws one per sample, shaped like the
    per-sample target); the guess heads see the block output of the same forward pass (their second pass
    recomputes it with batch statistics, without updating the running ones);
  * the NTK head is re-drawn with kaiming-uniform weights and 0.01 biases (``init_weights``);
  * not reproduced: their BatchNorm-bias branch writes the BN *weight* grad (a bug); here each tensor gets its own.
With target=local and an NTK guess, the target comes from a trained head and the guess from a random one (the
authors' code would reuse the re-drawn head for both, which makes target and guess equal).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from methods.arch import ArchSpec
from methods.base import LearningRule
from methods.config import Optimizer, RuleConfig
from methods.cost import CostModel
from methods.errors import ArchError, ConfigError
from methods.fg_strategies import GUESSES, SPACES
from methods.fg_strategies import grad as _grad
from methods.fg_strategies import set_grads as _set_grads
from methods.registry import get_rule, register
from methods.shared import projection as pj
from methods.shared.aux_heads import make_aux_head

Guess = Literal["gaussian", "rademacher", "local", "ntk", "fixed_ntk"]
Target = Literal["global", "local"]
Space = Literal["weight", "activity"]
Projection = Literal["auto", "normalized", "unnormalized"]
Derivative = Literal["auto", "jvp", "backward"]
GuessSampler = Literal["auto", "exact", "fast"]
AuxKind = Literal["linear", "mlp", "cnn"]

RANDOM = tuple(name for name, g in GUESSES.items() if g.random)
_BN = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True, kw_only=True)
class FGConfig(RuleConfig):
    """One forward-gradient family: guess x target x space, with Fournier et al.'s per-sample projection."""

    lr: float = 1e-3
    optimizer: Optimizer = "adam"
    guess: Guess = "local"
    """gaussian, rademacher (per-sample noise), local (trained aux head), ntk (aux head re-drawn every step),
    fixed_ntk (aux head frozen at init)."""
    target: Target = "global"
    """global (end-to-end loss) or local (the block's auxiliary loss)."""
    space: Space = "weight"
    """weight (perturb parameters) or activity (perturb block outputs, backprop the estimate inside the block)."""
    num_guesses: int = 1
    """Guesses drawn and averaged per step (random and ntk guesses; the others are deterministic)."""
    projection: Projection = "auto"
    """normalized (Fournier et al.), unnormalized (Baydin; Ren et al.), auto (authors' code: normalised except
    random guesses in activity space)."""
    derivative: Derivative = "auto"
    """How ⟨t_n, v_n⟩ is computed: jvp (forward mode), backward (two reverse passes), auto (jvp for random
    guesses on BatchNorm-free networks)."""
    guess_sampler: GuessSampler = "auto"
    """How random weight-space guesses of Linear weights are drawn: exact (a dense guess per sample for every
    weight, batch x parameters numbers, as the authors' code), fast (factored per sample, batch x out x min(batch, in)
    numbers plus one weight-sized draw: exact in distribution for gaussian, an approximation for rademacher: a
    Gaussian guess with the Rademacher guess's norm, same mean, not the same covariance), auto (fast for gaussian,
    exact for rademacher). Biases, conv and BatchNorm tensors are always drawn per sample."""
    eps: float = 1e-16
    """ε in the normalised projection."""
    aux: AuxKind = "mlp"
    """Auxiliary head: linear, mlp or cnn (cnn needs feature maps)."""
    aux_width: int = 0
    """Hidden units (mlp) or channels (cnn) of the heads; 0: the authors' values on resnet18 (mlp 1024 / cnn 32
    with 8 blocks, 512 / 16 with 16 blocks), the block's own width otherwise."""
    aux_depth: int = 3
    """Hidden layers of an mlp head / strided convs of a cnn head."""
    aux_pool: int = 2
    """Adaptive average pooling size of heads on feature maps."""
    aux_bn: bool | None = None
    """BatchNorm in the heads; None: when the network has BatchNorm (the authors' heads always have it)."""

    _fixed: ClassVar[dict[str, Any]] = {}
    """Options a preset pins (its name says them)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value in self._fixed.items():
            if getattr(self, key) != value:
                raise ConfigError(f"this preset fixes {key}={value}; use method 'fg' to set {key}={getattr(self, key)}")
        if self.num_guesses < 1:
            raise ConfigError(f"num_guesses must be >= 1, got {self.num_guesses}")
        if self.num_guesses > 1 and not GUESSES[self.guess].varies:
            raise ConfigError(
                f"guess={self.guess} is deterministic, so num_guesses={self.num_guesses} would repeat "
                "the same guess; use num_guesses=1 or a random/ntk guess"
            )
        if self.guess_sampler != "auto" and self.guess not in RANDOM:
            raise ConfigError(
                f"guess_sampler={self.guess_sampler} applies to random guesses (gaussian, rademacher), not "
                f"guess={self.guess}; leave it at auto"
            )
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise ConfigError(f"eps must be a finite number >= 0, got {self.eps}")
        if self.aux_width < 0 or self.aux_depth < 1 or self.aux_pool < 1:
            raise ConfigError(
                f"aux_width must be >= 0, aux_depth >= 1 and aux_pool >= 1; got {self.aux_width}, "
                f"{self.aux_depth}, {self.aux_pool}"
            )

    @property
    def fast_guesses(self) -> bool:
        """Random weight-space guesses of Linear weights are drawn factored (``guess_sampler``; auto: gaussian)."""
        return self.guess_sampler == "fast" or (self.guess_sampler == "auto" and self.guess == "gaussian")

    def identity_omits(self) -> set[str]:
        """``guess_sampler`` joins a run's identity only where it changes the numbers from the per-sample draws (the
        factored sampler of random weight-space guesses): runs of every other setting keep their hashes."""
        return set() if self.guess in RANDOM and self.space == "weight" and self.fast_guesses else {"guess_sampler"}


class _Taps:
    """Forward hooks keeping the input and output of each module of one forward pass."""

    def __init__(self, modules: list[nn.Module]):
        self.modules = modules
        self.inp: dict[nn.Module, torch.Tensor] = {}
        self.out: dict[nn.Module, torch.Tensor] = {}
        self._handles: list = []

    def _hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        self.inp[module], self.out[module] = args[0], out

    def __enter__(self) -> _Taps:
        self._handles = [m.register_forward_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


class _Inject:
    """Forward hooks adding ``values[module]`` to a module's output (the point where a tangent enters)."""

    def __init__(self, modules: list[nn.Module]):
        self.values: dict[nn.Module, torch.Tensor] = {}
        self._handles = [m.register_forward_hook(self._hook) for m in modules]

    def _hook(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        return out + self.values[module]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@register
class ForwardGradient(LearningRule):
    """Forward gradient: a target gradient projected per sample on a random, local or NTK guess (Fournier et al.)."""

    name = "fg"
    display_name = "FG"
    Config = FGConfig

    @classmethod
    def cost_model(cls, dims, num_classes, config):
        """Multiply-adds per sample of one update on an MLP (``methods/cost.py``), by the path the step takes.

        * Random guesses, global target, weight space, one guess (forward mode): the JVP model below.
        * Local, NTK and fixed-NTK guesses (any target, space, ``num_guesses``) on the two-reverse-pass path
          (``derivative`` auto or backward), mlp or linear heads: ``_head_guess_cost``.
        * None otherwise, not guessed: random guesses in the other settings (not modelled yet); ``derivative=jvp``
          with a head guess (its JVP carries one tangent per trainable tensor, bias included, and recomputes the
          primal from the block up, which depend on arch options the model does not see); ``aux=cnn`` (needs feature
          maps, so no MLP has it).
        """
        if config.guess not in RANDOM:
            if config.derivative == "jvp" or config.aux == "cnn":
                return None
            return _head_guess_cost(dims, num_classes, config)
        if not (config.target == "global" and config.space == "weight" and config.num_guesses == 1):
            return None
        L, widest_input = len(dims) - 1, max(dims[:-1])
        # block k < L: a JVP from block k to the loss carries the tangent of its guess (one product per layer from k
        # up); ĝ = Σ_n c_n v_n (one weight-sized product); the last block gets its true ΔW
        tangents = [min(layer, L - 1) for layer in range(1, L + 1)]
        matvecs = [1 + t + 1 for t in tangents]
        # a guess per sample for every parameter of blocks 1..L-1 (weights and biases)
        draws = sum((dims[i] + 1) * dims[i + 1] for i in range(L - 1))
        stored = max(dims[i] * dims[i + 1] for i in range(L - 1))
        note = "per-sample weight guess of one block + primal and tangent activations"
        if config.fast_guesses:  # FactoredGaussian, priced at the harness's default batch (its costs depend on B)
            B = MODEL_BATCH
            fast = [_factored_cost(dims[i], dims[i + 1], B) for i in range(L - 1)]
            for i, (tangent, estimate, _, _) in enumerate(fast):
                matvecs[i] = 1 + (tangents[i] - 1 + tangent) + estimate
            draws = sum(d + dims[i + 1] for i, (_, _, d, _) in enumerate(fast))  # + the biases' per-sample draws
            stored = max(st for _, _, _, st in fast)
            note = f"factored per-sample guess (guess_sampler=fast, batch {B}) + primal and tangent activations"
        # forward passes: the forward one, plus the JVPs as fractions of a pass (block k's covers L - k + 1 layers)
        return CostModel(
            1 + (L * (L + 1) / 2 - 1) / L,
            0,
            matvecs,
            stored + 2 * widest_input,
            draws=round(draws),
            note=note,
        )

    default_arch = "mlp:128-128-C"
    paper_epochs = 100
    in_all = False  # the configurable family; METHODS=all runs its presets

    @classmethod
    def check_arch(cls, spec: ArchSpec, num_classes: int) -> None:
        super().check_arch(spec, num_classes)
        if getattr(spec, "binary", False):
            raise ArchError(f"{cls.name}: binary=1 weights have no useful directional derivative; use real weights")

    def __init__(self, config: FGConfig, arch: ArchSpec, in_shape: tuple[int, ...], num_classes: int, epochs: int):
        super().__init__(config, arch, in_shape, num_classes, epochs)
        cfg = config
        blocks = list(self.net.blocks)
        if len(blocks) < 2:
            raise ArchError(
                f"{self.name}: {arch.short} has one block; forward gradient estimates the blocks below "
                "the last, so give it at least one hidden layer (e.g. mlp:256-C)"
            )
        self._unit_names = [[(m, pname) for m, pname, _ in self._block_units(k, b)] for k, b in enumerate(blocks[:-1])]
        self._block_mods = [list(dict.fromkeys(m for m, _ in units)) for units in self._unit_names]
        shapes = self._block_shapes()
        net_bn = any(isinstance(m, _BN) for m in self.net.modules())
        aux_bn = net_bn if cfg.aux_bn is None else cfg.aux_bn

        def heads() -> nn.ModuleList:
            try:
                return nn.ModuleList(
                    make_aux_head(
                        cfg.aux,
                        shapes[k],
                        num_classes,
                        width=self._aux_width(shapes[k]),
                        depth=cfg.aux_depth,
                        pool=cfg.aux_pool,
                        bn=aux_bn,
                    )
                    for k in range(len(blocks) - 1)
                )
            except ValueError as e:
                raise ArchError(f"{self.name} on {arch.short}: {e}") from None

        self.guess = GUESSES[cfg.guess]
        """How block k's guess is drawn (methods/fg_strategies.py)."""
        self.space = SPACES[cfg.space]
        """Where target and guess live, and how the estimate becomes a block's update."""
        self.local_learning = cfg.guess == "local" and cfg.target == "local"
        self.heads = heads() if "local" in (cfg.guess, cfg.target) else None
        """Trained auxiliary heads (local target and/or local guess), one per block below the last."""
        self.guess_heads = None
        """Untrained heads of the ntk / fixed_ntk guesses (no trainable parameters)."""
        if self.guess.guess_heads:
            self.guess_heads = heads().requires_grad_(False)
        coupled = net_bn or (aux_bn and cfg.target == "local")
        if cfg.derivative == "jvp" and coupled:
            raise ArchError(
                f"{self.name}: derivative=jvp computes one directional derivative per sample from "
                f"per-sample losses, which BatchNorm's batch statistics couple ({arch.short}"
                f"{', aux_bn' if not net_bn else ''}); use derivative=backward or auto"
            )
        self.use_jvp = cfg.derivative == "jvp" or (cfg.derivative == "auto" and self.guess.random and not coupled)
        self.normalize = cfg.projection == "normalized" or (
            cfg.projection == "auto" and not (self.guess.random and not self.space.weight)
        )

    # ---------------------------------------------------------------- structure
    @property
    def _units(self) -> list[list[tuple[nn.Module, str, nn.Parameter]]]:
        """(module, parameter name, parameter) of every trainable tensor of each block below the last. The parameter
        is looked up at each call, not kept: ``.to()`` may replace a module's parameters by new objects (it does for
        a move to the meta device, and under ``torch.__future__.set_swap_module_params_on_conversion``), and a kept
        reference would then point at the old tensors on the old device."""
        return [[(m, pname, getattr(m, pname)) for m, pname in units] for units in self._unit_names]

    def _block_units(self, k: int, block: nn.Module) -> list[tuple[nn.Module, str, nn.Parameter]]:
        """(module, parameter name, parameter) of every trainable tensor of block k, checked to be supported."""
        units, seen = [], set()
        for m in block.modules():
            if isinstance(m, pj.SUPPORTED):
                try:
                    pj.check_module(m)
                except ValueError as e:
                    raise ArchError(f"{self.name}: block {k}: {e}") from None
                for pname, p in m.named_parameters(recurse=False):
                    if p.requires_grad:
                        units.append((m, pname, p))
                        seen.add(id(p))
        other = [n for n, p in block.named_parameters() if p.requires_grad and id(p) not in seen]
        if other:
            raise ArchError(
                f"{self.name}: block {k} has parameters outside Linear/Conv2d/BatchNorm ({', '.join(other)})"
            )
        return units

    @torch.no_grad()
    def _block_shapes(self) -> list[tuple[int, ...]]:
        was = self.net.training
        self.net.eval()
        outs = self.net.block_outputs(torch.zeros(2, *self.in_shape))
        self.net.train(was)
        return [tuple(o.shape[1:]) for o in outs]

    def _aux_width(self, shape: tuple[int, ...]) -> int:
        cfg = self.config
        if cfg.aux_width:
            return cfg.aux_width
        if self.arch.kind == "resnet18":  # App. A.2 and args.py: 8 blocks mlp 1024 / cnn 32; 16 blocks 512 / 16
            return {("mlp", 8): 1024, ("mlp", 16): 512, ("cnn", 8): 32, ("cnn", 16): 16}.get(
                (cfg.aux, self.arch.blocks), shape[0]
            )
        return shape[0]  # the authors' h_channel=0 convention: the block's own width

    def _block_params(self, k: int) -> list[nn.Parameter]:
        return [p for p in self.net.blocks[k].parameters() if p.requires_grad]

    # ---------------------------------------------------------------- prediction
    def exit_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network's output, plus each trained auxiliary head's scores (``aux<k>``)."""
        if self.heads is None:
            return {"out": self.net(x)}
        outs = self.net.block_outputs(x)
        scores = {"out": outs[-1]}
        for k, head in enumerate(self.heads):
            scores[f"aux{k}"] = head(outs[k])
        return scores

    # ---------------------------------------------------------------- one step
    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.local_learning:
            loss = self._local_learning_step(x, y)
        elif self.use_jvp:
            loss = self._jvp_step(x, y)
        else:
            loss = self._backward_step(x, y)
        return {"loss": loss}

    def _head_loss(self, head: nn.Module, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(h), y)

    def _set_last_block_grad(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """True gradient of the last block (its input detached); returns the end-to-end loss."""
        params = self._block_params(len(self.net.blocks) - 1)
        with torch.enable_grad():
            loss = F.cross_entropy(self.net.blocks[-1](h.detach()), y)
            _set_grads(params, torch.autograd.grad(loss, params))
        return loss.detach()

    def _local_learning_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Greedy local learning: every block and its head follow ∇ℓ_k on a detached input (guess = target)."""
        h = x
        for k, head in enumerate(self.heads):
            params = self._block_params(k) + [p for p in head.parameters() if p.requires_grad]
            hk = self.net.blocks[k](h.detach())
            _set_grads(params, torch.autograd.grad(self._head_loss(head, hk, y), params))
            h = hk
        return self._set_last_block_grad(h, y)

    def _train_head(self, k: int, hk: torch.Tensor, y: torch.Tensor, points: list[torch.Tensor]):
        """Set head k's gradient of ℓ_k (trained heads only); return ∂ℓ_k at ``points`` (None without trained heads)."""
        if self.heads is None:
            return None
        hp = [p for p in self.heads[k].parameters() if p.requires_grad]
        with torch.enable_grad():
            gl = _grad(self._head_loss(self.heads[k], hk, y), hp + points)
        _set_grads(hp, gl[: len(hp)])
        return gl[len(hp) :]

    # ---------------------------------------------------------------- two reverse passes (Fournier et al.'s code)
    def _backward_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One forward pass, the end-to-end gradient at every block's points (global target), then block by block:
        the head's local gradient, the target, and the space's projection of the guesses on it."""
        blocks, hidden = self.net.blocks, range(len(self.net.blocks) - 1)
        with _Taps([m for ms in self._block_mods for m in ms]) as taps:
            hs, h = [], x
            for block in blocks:
                h = block(h)
                hs.append(h)
        loss = F.cross_entropy(hs[-1], y)
        points = [self.space.points(self, k, taps, hs[k]) for k in hidden]
        last = self._block_params(len(blocks) - 1)
        glob = self.config.target == "global"
        g = _grad(loss, last + ([p for ps in points for p in ps] if glob else []))
        _set_grads(last, g[: len(last)])
        targets, i = [], len(last)
        for ps in points:  # the end-to-end gradient at each block's points
            targets.append(list(g[i : i + len(ps)]))
            i += len(ps)
        for k in hidden:
            local = self._train_head(k, hs[k], y, points[k])
            self.space.update_from_target(self, k, taps, hs[k], y, targets[k] if glob else local, local)
        return loss.detach()

    def _contributions(self, taps: _Taps, k: int, deltas: list[torch.Tensor | None]) -> list[pj.PerSample]:
        """Per-sample contributions of block k's tensors, from each module's input and output gradient."""
        by_mod = {}
        for m, d in zip(self._block_mods[k], deltas):
            out = taps.out[m]
            by_mod[m] = pj.contributions(m, taps.inp[m], d if d is not None else torch.zeros_like(out))
        return [by_mod[m][pname] for m, pname, _ in self._units[k]]

    # ---------------------------------------------------------------- forward mode
    def _jvp_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Block by block: the head's local gradient, then the space's guesses with ⟨t_n, v_n⟩ for all of them from
        one vmapped torch.func.jvp; the last block gets its true gradient."""
        h = x.detach()
        for k in range(len(self.net.blocks) - 1):
            # a local graph of block k only where a local gradient is needed (heads, activity backprop)
            with (
                torch.set_grad_enabled(not self.guess.random or not self.space.weight),
                _Taps(self._block_mods[k]) as taps,
            ):
                hk = self.net.blocks[k](h)
            points = self.space.points(self, k, taps, hk) if self.guess.uses_local_gradient else []
            local = self._train_head(k, hk, y, points)
            self.space.update_from_jvp(self, k, h, taps, hk, y, local)
            h = hk.detach()
        return self._set_last_block_grad(h, y)

    def _per_sample_loss(self, k: int, hk: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ℓ_n / B downstream of block k's output: the end-to-end loss (global target) or head k's (local)."""
        if self.config.target == "local":
            logits = self.heads[k](hk)
        else:
            logits = hk
            for block in self.net.blocks[k + 1 :]:
                logits = block(logits)
        return F.cross_entropy(logits, y, reduction="none") / y.shape[0]

    def _weight_dots(
        self, k: int, h: torch.Tensor, y: torch.Tensor, taps: _Taps, guesses: list[list[pj.PerSample]]
    ) -> torch.Tensor:
        """⟨t_n, v_n⟩ for every (guess, tensor) of block k: tangents injected at the module outputs, one JVP each."""
        mods, units = self._block_mods[k], self._units[k]
        rows = [(j, i) for j in range(len(guesses)) for i in range(len(units))]
        tangents = {m: torch.zeros(len(rows), *taps.out[m].shape, device=h.device) for m in mods}
        for r, (j, i) in enumerate(rows):
            m, pname, _ = units[i]
            tangents[m][r] = pj.param_tangent(m, pname, taps.inp[m], guesses[j][i])
        inject = _Inject(mods)

        def losses(*zs: torch.Tensor) -> torch.Tensor:
            inject.values = dict(zip(mods, zs))
            return self._per_sample_loss(k, self.net.blocks[k](h), y)

        primals = tuple(torch.zeros_like(taps.out[m]) for m in mods)
        try:
            dots = torch.func.vmap(lambda *us: torch.func.jvp(losses, primals, us)[1])(*(tangents[m] for m in mods))
        finally:
            inject.remove()
        return dots.view(len(guesses), len(units), -1)

    def _activity_dots(self, k: int, hk: torch.Tensor, y: torch.Tensor, vs: torch.Tensor) -> torch.Tensor:
        """⟨∂L/∂h_{k,n}, v_n⟩ for every guess: the JVP of the per-sample losses along v at the block output."""

        def losses(z: torch.Tensor) -> torch.Tensor:
            return self._per_sample_loss(k, hk + z, y)

        zero = torch.zeros_like(hk)
        return torch.func.vmap(lambda v: torch.func.jvp(losses, (zero,), (v,))[1])(vs)


# --------------------------------------------------------------------------- cost model
MODEL_BATCH = 64
"""The batch the cost model prices the factored sampler at (the harness's default ``batch_size``)."""


def _factored_cost(n_in: int, out: int, batch: int) -> tuple[float, float, float, float]:
    """Per sample, in weight-sized products (n_in x out multiply-adds) for one Linear weight drawn by
    ``FactoredGaussian`` at batch B (r = min(B, in)): the tangent V_n x_n (its drawn columns, about (r+1)/2 of out
    each, plus the QR of the batch's inputs, 2 in r² per batch), the estimate (G E and (M - α G E) Eᵀ, r/B each,
    plus the sum of the drawn columns), the random numbers drawn, and the numbers held (drawn columns, G, E)."""
    r = min(batch, n_in)
    nested = out >= batch
    pairs = sum(min(n + 1, r) for n in range(batch)) if nested else batch * r
    weight = n_in * out
    tangent = (pairs * out + 2 * n_in * r * r) / batch / weight
    estimate = 2 * r / batch + pairs * out / batch / weight
    bartlett_cols = sum(j * (j + 1) / 2 for j in range(r)) + r * out if nested else 0
    d_perp = out * (n_in - r)
    complement = (weight + min(batch, d_perp) * batch) if d_perp else 0
    draws = (pairs * out + bartlett_cols + complement) / batch
    stored = (pairs * out + weight + n_in * r) / batch
    return tangent, estimate, draws, stored


def _head_macs(config: FGConfig, n: int, num_classes: int) -> int:
    """Multiply-adds of one forward pass of an auxiliary head on an n-vector (a block output of an MLP)."""
    if config.aux == "linear":
        return n * num_classes
    w = config.aux_width or n  # 0: the block's own width (MLPs)
    return n * w + (config.aux_depth - 1) * w * w + w * num_classes


def _head_inputs(config: FGConfig, n: int) -> int:
    """Numbers a head keeps for its backward pass: the input of each of its Linear layers."""
    return n if config.aux == "linear" else n + config.aux_depth * (config.aux_width or n)


def _head_guess_cost(dims: list[int], num_classes: int, config: FGConfig) -> CostModel:
    """Local, NTK or fixed-NTK guesses, two reverse passes (``_backward_step``; ``_local_learning_step``).

    With m_l the multiply-adds of one head forward pass on layer l's output (``_head_macs``) and G guesses:

    * main net: one forward product per layer; the last layer its true ΔW; global target: the end-to-end δ back
      through W_L .. W_2 (one product each; the weights' gradients below the top are not formed);
    * the estimate ĝ = Σ_n c_n v_n of every hidden layer: one weight-sized product per guess in weight space (the
      per-sample t_n and v_n are rank one, so ⟨t_n, v_n⟩ and ‖v_n‖² are O(n_{l-1} + n_l)); in activity space the
      projection is O(n_l) per guess, and the block's ΔW from the averaged ĝ_h (ĝ_h h^T) one product;
    * trained heads (local guess or local target): forward, ΔW and δ back to the block output, 3 m_l;
    * NTK / fixed-NTK guess: the untrained head's forward and δ back to the block output (no ΔW), 2 m_l per guess.
    Local learning (local guess = local target): forward, ΔW of the block, its head 3 m_l, no projection.

    Fournier et al. Table 1 costs a global target as a Jvp plus the local vJp, a local target as the local vJp only;
    this counts the step as it runs (Fournier et al.'s simulation): the global target by a reverse pass through the
    network, not a JVP. Stored: every layer's input (the step keeps all blocks' taps), the end-to-end δ at every
    hidden block output (global target), and one block's heads' layer inputs, guesses and local target at a time;
    local learning keeps one block's input and its head's. The O(n_l) vector products of the projection are left out.
    """
    L, G = len(dims) - 1, config.num_guesses
    glob, weight = config.target == "global", config.space == "weight"
    m = [_head_macs(config, dims[layer], num_classes) for layer in range(1, L)]
    heads_in = [_head_inputs(config, dims[layer]) for layer in range(1, L)]
    if config.guess == "local" and config.target == "local":
        return CostModel(
            1,
            0,
            [2] * L,
            max(dims[layer - 1] + heads_in[layer - 1] for layer in range(1, L)),
            extra_macs=3 * sum(m),
            note="each block and its head from the head's loss, input detached",
        )
    trained = "local" in (config.guess, config.target)
    head_guess = config.guess != "local"
    estimate = G if weight else 1
    matvecs = [1 + (estimate if layer < L else 1) + (1 if glob and layer > 1 else 0) for layer in range(1, L + 1)]
    per_block = [(trained + head_guess) * heads_in[i] + (G + (0 if glob else 1)) * dims[i + 1] for i in range(L - 1)]
    return CostModel(
        1,
        1 if glob else 0,
        matvecs,
        sum(dims[:-1]) + (sum(dims[1:-1]) if glob else 0) + max(per_block),
        extra_macs=sum((3 if trained else 0) * mi + (2 * G * mi if head_guess else 0) for mi in m),
        note=", ".join(
            ["end-to-end δ by a reverse pass" if glob else "local target"]
            + (["trained heads"] if trained else [])
            + (["untrained guess heads"] if head_guess else [])
        ),
    )


# --------------------------------------------------------------------------- presets
def _screened(guess: str, space: str) -> dict[str, Any]:
    """Optimiser and lr of a preset: the best of a 2-epoch screen on Fashion-MNIST, mlp:128-128-C, batch 64, scored on
    the validation split (docs/methods.md section 6). Random guesses in weight space barely move the hidden layers
    under the normalised projection (E[ĝ] = t/d), so they take SGD with a large lr for the last block; the others
    Adam."""
    if guess in RANDOM:
        return {"optimizer": "sgd", "lr": 0.1} if space == "weight" else {"optimizer": "adam", "lr": 1e-4}
    return {"optimizer": "adam", "lr": 1e-3 if guess == "local" else 3e-4}


def _preset(name: str, doc: str, in_all: bool = True, display: str = "", **fixed: Any) -> type[ForwardGradient]:
    """Register ``name``: the family with ``fixed`` options pinned and the screened optimiser and lr as defaults."""
    hints = typing.get_type_hints(FGConfig)
    fields = {**_screened(fixed["guess"], fixed["space"]), **fixed}
    cfg_cls = dataclasses.make_dataclass(
        "".join(part.title() for part in name.split("_")) + "Config",
        [(k, hints[k], dataclasses.field(default=v)) for k, v in fields.items()],
        bases=(FGConfig,),
        frozen=True,
        kw_only=True,
        namespace={"_fixed": dict(fixed), "__doc__": doc},
    )
    cfg_cls.__module__ = __name__
    display = display or "FG " + name.removeprefix("fg_").replace("_", " ")
    rule = type(
        "".join(part.title() for part in name.split("_")),
        (ForwardGradient,),
        {
            "name": name,
            "display_name": display,
            "Config": cfg_cls,
            "__doc__": doc,
            "in_all": in_all,
            "__module__": __name__,
        },
    )
    return register(rule)


PRESETS = {
    ("gaussian", "global", "weight"): _preset(
        "fg_gaussian",
        "Forward gradient, Gaussian per-sample guess, global target, weight space (Baydin; Fournier).",
        display="FG Gaussian",
        guess="gaussian",
        target="global",
        space="weight",
    ),
    ("rademacher", "global", "weight"): _preset(
        "fg_rademacher",
        "Forward gradient, Rademacher per-sample guess, global target, weight space (Fournier).",
        display="FG Rademacher",
        guess="rademacher",
        target="global",
        space="weight",
    ),
    ("local", "global", "weight"): _preset(
        "fg_local",
        "Forward gradient, local guess (trained aux head), global target, weight space (Fournier).",
        display="FG Local",
        guess="local",
        target="global",
        space="weight",
    ),
    ("ntk", "global", "weight"): _preset(
        "fg_ntk",
        "Forward gradient, NTK guess (aux head re-drawn each step), global target, weight space (Fournier).",
        display="FG NTK",
        guess="ntk",
        target="global",
        space="weight",
    ),
    ("fixed_ntk", "global", "weight"): _preset(
        "fg_fixed_ntk",
        "Forward gradient, fixed-NTK guess (aux head frozen at init), global target, weight space.",
        display="FG fixed NTK",
        guess="fixed_ntk",
        target="global",
        space="weight",
    ),
    ("local", "local", "weight"): _preset(
        "local_learning",
        "Greedy local learning: each block trained by its auxiliary head's loss (local target = local guess).",
        display="Local learning",
        guess="local",
        target="local",
        space="weight",
    ),
}
"""The papers' named settings (run by METHODS=all)."""
PRESETS[("local", "local", "activity")] = PRESETS[("local", "local", "weight")]  # the same update in both spaces


def _cell(g: str, t: str, s: str) -> str:
    if (g, t, s) in PRESETS:
        return PRESETS[(g, t, s)].name
    return _preset(
        f"fg_{g}_{t}_{s}",
        f"Forward gradient grid cell: guess={g}, target={t}, space={s}.",
        in_all=False,
        guess=g,
        target=t,
        space=s,
    ).name


GRID = tuple(dict.fromkeys(_cell(g, t, s) for g in Guess.__args__ for t in Target.__args__ for s in Space.__args__))
"""The forward-gradient grid (Fournier et al. Tables 2-4, 7) as data the profiles import: rule names covering
guess x target x space (19: local x local is ``local_learning`` in both spaces); the cells without a preset are
registered as ``fg_<guess>_<target>_<space>`` and left out of METHODS=all."""
WITH_HEADS = tuple(
    m
    for m in GRID
    if (get_rule(m).Config._fixed["guess"] not in RANDOM or get_rule(m).Config._fixed["target"] == "local")
)
"""Grid cells with auxiliary heads (local or NTK guess, or local target): Fournier's rows Local/NTK x CNN/MLP/Linear."""
