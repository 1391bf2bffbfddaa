"""The ``LearningRule`` base: one training loop, one evaluation, one set of metrics for every rule.

A rule subclasses ``LearningRule`` and supplies
  * ``compute_updates(x, y)``: fill ``p.grad`` of the parameters it trains (with local autograd or
    explicit formulas) and return a dict with at least ``loss`` (a detached scalar tensor);
  * optionally ``forward(x)`` (class scores) where prediction is not the network's output, and
    ``exit_scores(x)`` for per-layer (early-exit) read-outs.
The base owns zeroing the grads, the optimiser step, the lr schedule, divergence detection and all
logging, so every rule is trained and measured the same way. Its helpers live in ``methods/shared``: accuracy
counting (``metrics``), gradient averaging across processes (``ddp``) and the alignment diagnostic
(``alignment``, a Lightning callback the rule brings when ``align_every`` is set).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F

from methods.arch import ArchSpec, LayeredNet, build_network
from methods.config import RuleConfig, build_config
from methods.cost import CostModel
from methods.errors import ArchError
from methods.optim import build_optimizer, build_scheduler
from methods.shared import ddp
from methods.shared.alignment import GradientAlignment
from methods.shared.metrics import ExitAccuracies
from methods.steps import StepGroup


class LearningRule(L.LightningModule):
    name: ClassVar[str] = ""
    """Registry name (``METHODS=`` uses it)."""
    Config: ClassVar[type[RuleConfig]] = RuleConfig
    """The rule's typed hyperparameters."""
    arch_kinds: ClassVar[tuple[str, ...]] = ("mlp", "cnn", "resnet18")
    """Architecture kinds the rule can train."""
    arch_defaults: ClassVar[dict[str, Any]] = {}
    """Architecture options the rule prefers where the arch string is silent (e.g. PEPITA: bias=0)."""
    default_arch: ClassVar[str] = "mlp:1024-C"
    """Architecture used when none is given."""
    paper_epochs: ClassVar[int] = 100
    """Epochs of the rule's paper protocol (PROFILE=paper)."""
    needs_class_output: ClassVar[bool] = True
    """The rule predicts from a C-way last layer (False for SPELA, FF: they read out class vectors/goodness)."""
    in_all: ClassVar[bool] = True
    """Run by ``METHODS=all`` (False for variants reached by name or through a profile, e.g. grid cells)."""
    compiled_step: ClassVar[str | None] = None
    """The method ``compile_step`` compiles: the rule's written-out update (no autograd graph, no random draws inside);
    None: the network's forward pass (autograd differentiates the compiled graph)."""
    display_name: ClassVar[str] = ""
    """The rule's name in tables and figures (the paper's, e.g. ``SPELA(O)``); empty: derived from ``name``
    (``label()``)."""
    layerwise: ClassVar[bool] = False
    """Greedy layer-by-layer training: ``self.current_epoch`` decides which layer trains, and a step leaves the
    other layers without a grad (SPELA, SPELA CNN)."""

    def __init__(self, config: RuleConfig, arch: ArchSpec, in_shape: tuple[int, ...], num_classes: int, epochs: int):
        super().__init__()
        self.automatic_optimization = False
        self.config = config
        self.arch = arch
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        self.epochs = epochs
        self.net: LayeredNet = build_network(arch, self.in_shape, num_classes)
        self.history: list[dict[str, float]] = []
        """One row of metrics per epoch (train loss, val accuracies, lr, epoch time)."""
        self.test_results: dict[str, float] = {}
        self.diverged = False
        self._acc = ExitAccuracies()
        every = int(getattr(config, "align_every", 0) or 0)
        self.alignment = GradientAlignment(every) if every else None
        """The alignment diagnostic (``align_every`` on), or None."""

    # ---------------------------------------------------------------- what a rule supplies
    def compute_updates(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fill ``.grad`` of the trained parameters for batch (x, y); return ``{"loss": ...}``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (argmax = prediction)."""
        return self.net(x)

    def exit_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Class scores of every read-out; ``out`` is the rule's prediction, other keys are early exits."""
        return {"out": self(x)}

    def epoch_metrics(self) -> dict[str, float]:
        """Extra metrics of the epoch for its history row: the base's alignment diagnostic (``align/b<k>``, when
        ``align_every`` is on). A rule adding its own diagnostics returns ``{**super().epoch_metrics(), ...}``."""
        return self.alignment.compute() if self.alignment is not None else {}

    def bp_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
        """The loss whose end-to-end backprop gradient the rule's update stands in for: the reference of the alignment
        diagnostic. Default: cross-entropy of the class scores for rules with a C-way output; None (no BP counterpart)
        for rules whose losses are local by design (SPELA, FF). Rules with another output loss override it."""
        if not self.needs_class_output:
            return None
        return F.cross_entropy(self(x), y)

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimiser parameter groups (override to give a part its own lr)."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    @classmethod
    def check_arch(cls, spec: ArchSpec, num_classes: int) -> None:
        """Raise ArchError, saying why, when this rule cannot train ``spec``."""
        if spec.kind not in cls.arch_kinds:
            raise ArchError(
                f"{cls.name} does not support {spec.kind} architectures (it supports "
                f"{', '.join(cls.arch_kinds)}); got {spec.short}"
            )
        if cls.needs_class_output and not spec.ends_in_classes():
            raise ArchError(
                f"{cls.name} predicts from a C-way output layer, but {spec.short} ends in "
                f"{spec.widths[-1]} units; end the arch with C (e.g. mlp:1024-C)"
            )

    @classmethod
    def create(
        cls,
        overrides: dict[str, Any] | None,
        arch: str | None,
        in_shape: tuple[int, ...],
        num_classes: int,
        epochs: int,
    ) -> LearningRule:
        """Validate everything (config, arch, pairing), then build the rule."""
        config = build_config(cls.Config, overrides, owner=f"rule {cls.name!r}")
        spec = cls.parse_arch(arch, num_classes)
        return cls(config, spec, in_shape, num_classes, epochs)

    @classmethod
    def parse_arch(cls, arch: str | None, num_classes: int) -> ArchSpec:
        spec = ArchSpec.parse(arch or cls.default_arch, cls.arch_defaults)
        cls.check_arch(spec, num_classes)
        return spec

    def compile_step(self) -> None:
        """``torch.compile`` the rule's step where it is written out (``compiled_step``), else the network's forward
        (in place: parameter names do not change). Same math; kernels fused, launches fewer; the first batches of a
        run pay the compilation.

        Dynamo's compiled code of earlier rules in this process is dropped first (``torch.compiler.reset``; a rule
        compiled before recompiles at its next call): dynamo counts the graphs of one function across all instances,
        every rule's compiled step and network forward share its wrapper, and past ``recompile_limit`` (8) it runs
        the step eagerly with only a warning, so an inline grid's later runs would silently not be compiled."""
        torch.compiler.reset()
        if self.compiled_step:
            setattr(self, self.compiled_step, torch.compile(getattr(self, self.compiled_step)))
        else:
            self.net.compile()

    @classmethod
    def label(cls) -> str:
        """Display name: ``display_name``, else ``name`` with underscores as spaces."""
        return cls.display_name or cls.name.replace("_", " ")

    @classmethod
    def cost_model(cls, dims: list[int], num_classes: int, config: RuleConfig) -> CostModel | None:
        """Per-sample cost of one update on an MLP with layer sizes ``dims`` (input first; ``methods/cost.py``):
        SPELA Table 2's model. None: the rule states no model (the efficiency table says so). Rules override it."""
        return None

    # ---------------------------------------------------------------- the shared loop
    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Lightning's backward (precision plugin, DDP, backward hooks) inside a Trainer that needs it; plain autograd
        outside a Trainer (unit tests) and in a single-device fp32 run where nothing hooks the backward pass (the same
        gradients, without Lightning's per-call hook dispatch)."""
        if self._trainer is None or self._plain_backward:
            loss.backward(*args, **kwargs)
        else:
            super().manual_backward(loss, *args, **kwargs)

    _plain_backward = False

    def _backward_is_plain(self) -> bool:
        """True when Lightning's backward adds nothing to ``loss.backward()``: one device, fp32, and neither the rule
        nor a callback overrides a backward hook."""
        from lightning.pytorch.plugins.precision import Precision
        from lightning.pytorch.strategies import SingleDeviceStrategy

        trainer = self._trainer
        hooks = ("on_before_backward", "on_after_backward")
        return (
            type(trainer.strategy) is SingleDeviceStrategy
            and type(trainer.precision_plugin) is Precision
            and all(getattr(type(self), h) is getattr(L.LightningModule, h) for h in (*hooks, "backward"))
            and not any(getattr(type(cb), h) is not getattr(L.Callback, h) for cb in trainer.callbacks for h in hooks)
        )

    def configure_optimizers(self):
        opt = build_optimizer(self.param_groups(), self.config)
        return {"optimizer": opt, "lr_scheduler": build_scheduler(opt, self.config, self.epochs)}

    def standalone(self) -> LearningRule:
        """Ready the rule to run ``training_step`` without a Trainer (``make perf``'s step timing): the optimiser of
        ``configure_optimizers`` (its schedule is not stepped) and a fresh epoch tally. Returns the rule."""
        self._opt = self.configure_optimizers()["optimizer"]
        self.on_train_epoch_start()
        return self

    def on_train_start(self) -> None:
        # the raw torch optimiser: Lightning's wrapper adds a closure and profiler records to every step
        self._opt = self.optimizers(use_pl_optimizer=False)
        self._plain_backward = self._backward_is_plain()

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._steps = 0
        self._samples = 0
        self._epoch_t0 = time.perf_counter()

    def training_step(self, batch, batch_idx: int) -> None:
        """One optimiser step per batch: ``batch`` is ``(x, y)`` or a ``StepGroup`` of them."""
        group = batch if isinstance(batch, StepGroup) else (batch,)
        opt, loss_sum, samples = self._opt, self._loss_sum, 0
        for x, y in group:
            opt.zero_grad(set_to_none=True)
            with self._ddp_sync_off():
                out = self.update_step(x, y)
            self.sync_grads()
            opt.step()
            loss_sum.add_(out["loss"].detach())
            samples += len(y)
        self._steps += len(group)
        self._samples += samples

    def update_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``compute_updates``, then the per-step diagnostics (alignment every ``align_every`` steps, on this
        process's grads before any averaging); what the loop runs between zeroing the grads and the optimiser step."""
        out = self.compute_updates(x, y)
        if self.alignment is not None:
            self.alignment.after_update(self, x, y)
        return out

    def configure_callbacks(self) -> list[L.Callback]:
        """The rule's own callbacks: the alignment diagnostic when ``align_every`` is on (once per Trainer)."""
        if self.alignment is None or self.alignment in self.trainer.callbacks:
            return []
        return [self.alignment]

    def _ddp_sync_off(self):
        """Under DDP, turn off the reducer's own all-reduce inside ``manual_backward``: rules fill ``.grad`` in many
        ways (local losses, several backward calls, explicit formulas), so ``sync_grads`` averages them all at once."""
        return ddp.backward_sync_off(self._trainer)

    def sync_grads(self) -> None:
        """Average ``.grad`` of every trainable parameter over the processes (multi-GPU / multi-node); a no-op in one
        process. The loop calls it after ``compute_updates``; a rule that steps inside ``compute_updates`` calls it
        before its own step. A parameter no process gave a grad keeps ``grad=None`` (a layer-wise rule's idle
        layers)."""
        if ddp.distributed(self._trainer):
            ddp.average_grads([p for p in self.parameters() if p.requires_grad], self._trainer.world_size)

    def on_validation_epoch_start(self) -> None:
        self._acc = ExitAccuracies()

    def on_test_epoch_start(self) -> None:
        self._acc = ExitAccuracies()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self._acc.update(self.exit_scores(x), y)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self._acc.update(self.exit_scores(x), y)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._val = self._acc.compute("val")

    def on_train_epoch_end(self) -> None:
        loss = (self._loss_sum / max(self._steps, 1)).item()
        if ddp.distributed(self.trainer):
            loss = float(ddp.reduce(torch.tensor(loss, device=self.device), self.trainer, "mean"))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        row = {
            "epoch": self.current_epoch + 1,
            "train/loss": loss,
            "train/epoch_time_s": time.perf_counter() - self._epoch_t0,
            "lr": self._opt.param_groups[0]["lr"],
            "train/samples": self._samples_seen(),
        }
        row.update(getattr(self, "_val", {}))
        row.update(self.epoch_metrics())
        self._val = {}
        if self._diverged(loss):
            self.diverged = True
            row["diverged"] = 1.0
            self.trainer.should_stop = True
        self.history.append(row)
        self.log_dict({k: float(v) for k, v in row.items()}, on_epoch=True, sync_dist=False)
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()

    def _diverged(self, loss: float) -> bool:
        """The epoch's loss or a parameter is NaN/inf: the loop then stops the run, which is recorded as diverged."""
        return not math.isfinite(loss) or not all(torch.isfinite(p).all() for p in self.parameters())

    def _samples_seen(self) -> int:
        """Training samples of this epoch, summed over processes (DDP pads each rank's share to equal size)."""
        n = torch.tensor(float(self._samples), device=self.device)
        return int(ddp.reduce(n, self.trainer, "sum").item())

    def on_test_epoch_end(self) -> None:
        self.test_results = self._acc.compute("test")
        self.log_dict(self.test_results)
