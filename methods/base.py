"""The ``LearningRule`` base: one training loop, one evaluation, one set of metrics for every rule.

A rule subclasses ``LearningRule`` and supplies
  * ``compute_updates(x, y)``: fill ``p.grad`` of the parameters it trains (with local autograd or
    explicit formulas) and return a dict with at least ``loss`` (a detached scalar tensor);
  * optionally ``forward(x)`` (class scores) where prediction is not the network's output, and
    ``exit_scores(x)`` for per-layer (early-exit) read-outs.
The base owns zeroing the grads, the optimiser step, the lr schedule, divergence detection and all
logging, so every rule is trained and measured the same way.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, ClassVar

import lightning as L
import torch
import torch.nn.functional as F

from bench.errors import ArchError
from methods.arch import ArchSpec, LayeredNet, build_network
from methods.config import RuleConfig, build_config
from methods.cost import CostModel
from methods.optim import build_optimizer, build_scheduler


def average_grads(params: list[torch.nn.Parameter], world_size: int) -> None:
    """Replace each ``p.grad`` by its mean over the ``world_size`` processes of the default process group, in one
    all-reduce. A missing grad counts as zero; a parameter no process gave a grad keeps ``grad=None``."""
    import torch.distributed as dist

    if not params:
        return
    has = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params] + [has])
    dist.all_reduce(flat)  # sum over ranks; each rank's grad is already a mean over its share of the batch
    flat /= world_size
    offset = 0
    for i, p in enumerate(params):
        n = p.numel()
        if flat[-len(params) + i] > 0:
            p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


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
        self._acc: dict[str, list] = {}
        self._align_every = int(getattr(config, "align_every", 0) or 0)
        self._align_step = 0
        self._align_sum: torch.Tensor | None = None
        self._align_n = 0

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
        return self._alignment_metrics()

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
            raise ArchError(f"{cls.name} does not support {spec.kind} architectures (it supports "
                            f"{', '.join(cls.arch_kinds)}); got {spec.short}")
        if cls.needs_class_output and not spec.ends_in_classes():
            raise ArchError(f"{cls.name} predicts from a C-way output layer, but {spec.short} ends in "
                            f"{spec.widths[-1]} units; end the arch with C (e.g. mlp:1024-C)")

    @classmethod
    def create(cls, overrides: dict[str, Any] | None, arch: str | None, in_shape: tuple[int, ...], num_classes: int,
               epochs: int) -> LearningRule:
        """Validate everything (config, arch, pairing), then build the rule."""
        config = build_config(cls.Config, overrides, owner=f"rule {cls.name!r}")
        spec = cls.parse_arch(arch, num_classes)
        return cls(config, spec, in_shape, num_classes, epochs)

    @classmethod
    def parse_arch(cls, arch: str | None, num_classes: int) -> ArchSpec:
        spec = ArchSpec.parse(arch or cls.default_arch, cls.arch_defaults)
        cls.check_arch(spec, num_classes)
        return spec

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
        """Lightning's backward (precision, DDP) inside a Trainer; plain autograd outside one (unit tests)."""
        if self._trainer is None:
            loss.backward(*args, **kwargs)
        else:
            super().manual_backward(loss, *args, **kwargs)

    def configure_optimizers(self):
        opt = build_optimizer(self.param_groups(), self.config)
        return {"optimizer": opt, "lr_scheduler": build_scheduler(opt, self.config, self.epochs)}

    def on_train_start(self) -> None:
        # the raw torch optimiser: Lightning's wrapper adds a closure and profiler records to every step
        self._opt = self.optimizers(use_pl_optimizer=False)

    def on_train_epoch_start(self) -> None:
        self._loss_sum = torch.zeros((), device=self.device)
        self._steps = 0
        self._samples = 0
        self._epoch_t0 = time.perf_counter()

    def training_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self._opt.zero_grad(set_to_none=True)
        with self._ddp_sync_off():
            out = self.update_step(x, y)
        self.sync_grads()
        self._opt.step()
        self._loss_sum += out["loss"].detach()
        self._steps += 1
        self._samples += len(y)

    def update_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """``compute_updates``, then the base's per-step diagnostics (alignment every ``align_every`` steps, on this
        process's grads before any averaging); what the loop runs between zeroing the grads and the optimiser step."""
        out = self.compute_updates(x, y)
        if self._align_every:
            if self._align_step % self._align_every == 0:
                self._record_alignment(x, y)
            self._align_step += 1
        return out

    def _record_alignment(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """cos(update, BP gradient) per block: the rule's ``.grad`` of block k's parameters (zeros where it gave none)
        against ∂``bp_loss``/∂θ_k of the same batch on the same weights. An extra forward and backward pass, run with
        the RNG state and BatchNorm statistics restored afterwards, so training is unchanged."""
        blocks = list(self.net.blocks)
        params = [[p for p in b.parameters() if p.requires_grad] for b in blocks]
        flat = [p for ps in params for p in ps]
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.enable_grad(), torch.random.fork_rng(devices=devices), _KeepBatchNormStats(self.net):
            loss = self.bp_loss(x, y)
            if loss is None:
                return
            true = torch.autograd.grad(loss, flat, allow_unused=True)
        if self._align_sum is None:
            self._align_sum = torch.zeros(len(blocks), dtype=torch.float64)
        i = 0
        for k, ps in enumerate(params):
            if not ps:
                i += len(ps)
                continue
            est = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).detach().flatten() for p in ps])
            tru = torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                             for g, p in zip(true[i:i + len(ps)], ps)])
            i += len(ps)
            self._align_sum[k] += float(F.cosine_similarity(est.double(), tru.double(), dim=0, eps=1e-30))
        self._align_n += 1

    def _alignment_metrics(self) -> dict[str, float]:
        """Mean per-block alignment over the epoch's diagnostic steps (``align/b<k>``), then reset."""
        if not self._align_n or self._align_sum is None:
            return {}
        out = {f"align/b{k}": float(v) for k, v in enumerate(self._align_sum / self._align_n)}
        self._align_sum.zero_()
        self._align_n = 0
        return out

    def _ddp_sync_off(self):
        """Under DDP, turn off the reducer's own all-reduce inside ``manual_backward``: rules fill ``.grad`` in many
        ways (local losses, several backward calls, explicit formulas), so ``sync_grads`` averages them all at once."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1 and hasattr(trainer.strategy, "block_backward_sync"):
            return trainer.strategy.block_backward_sync()
        return contextlib.nullcontext()

    def sync_grads(self) -> None:
        """Average ``.grad`` of every trainable parameter over the processes (multi-GPU / multi-node); a no-op in one
        process. The loop calls it after ``compute_updates``; a rule that steps inside ``compute_updates`` calls it
        before its own step. A parameter no process gave a grad keeps ``grad=None`` (a layer-wise rule's idle layers)."""
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:
            average_grads([p for p in self.parameters() if p.requires_grad], trainer.world_size)

    def on_validation_epoch_start(self) -> None:
        self._acc = {}

    def _count(self, x: torch.Tensor, y: torch.Tensor) -> None:
        for key, scores in self.exit_scores(x).items():
            self._add(key, (scores.argmax(dim=1) == y).sum(), y.numel())
            if key == "out" and scores.shape[1] > 5:  # top-5 of the prediction (acc5), cheap beside the forward pass
                self._add(_TOP5, (scores.topk(5, dim=1).indices == y[:, None]).any(dim=1).sum(), y.numel())

    def _add(self, key: str, correct: torch.Tensor, n: int) -> None:
        if key in self._acc:
            self._acc[key][0] += correct
            self._acc[key][1] += n
        else:
            self._acc[key] = [correct, n]

    def validation_step(self, batch, batch_idx: int) -> None:
        self._count(*batch)

    def test_step(self, batch, batch_idx: int) -> None:
        self._count(*batch)

    def on_test_epoch_start(self) -> None:
        self._acc = {}

    def _accuracies(self, prefix: str) -> dict[str, float]:
        out = {}
        for key, (correct, n) in self._acc.items():
            correct, n = self._reduce(correct, n)
            name = {"out": f"{prefix}/acc", _TOP5: f"{prefix}/acc5"}.get(key, f"{prefix}/acc/{key}")
            out[name] = float(correct) / max(n, 1)
        return out

    def _reduce(self, correct: torch.Tensor, n: int) -> tuple[float, int]:
        """Sum counts over processes (DDP) so every rank reports the accuracy on the whole split."""
        t = torch.stack([correct.float(), torch.tensor(float(n), device=correct.device)])
        if self.trainer is not None and self.trainer.world_size > 1:
            t = self.trainer.strategy.reduce(t, reduce_op="sum")
        return t[0].item(), int(t[1].item())

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._val = self._accuracies("val")

    def on_train_epoch_end(self) -> None:
        loss = (self._loss_sum / max(self._steps, 1)).item()
        if self.trainer.world_size > 1:
            loss = float(self.trainer.strategy.reduce(torch.tensor(loss, device=self.device), reduce_op="mean"))
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        row = {"epoch": self.current_epoch + 1, "train/loss": loss,
               "train/epoch_time_s": time.perf_counter() - self._epoch_t0,
               "lr": self._opt.param_groups[0]["lr"], "train/samples": self._samples_seen()}
        row.update(getattr(self, "_val", {}))
        row.update(self.epoch_metrics())
        self._val = {}
        if not math.isfinite(loss) or not all(torch.isfinite(p).all() for p in self.parameters()):
            self.diverged = True
            row["diverged"] = 1.0
            self.trainer.should_stop = True
        self.history.append(row)
        self.log_dict({k: float(v) for k, v in row.items()}, on_epoch=True, sync_dist=False)
        sched = self.lr_schedulers()
        if sched is not None:
            sched.step()

    def _samples_seen(self) -> int:
        """Training samples of this epoch, summed over processes (DDP pads each rank's share to equal size)."""
        n = torch.tensor(float(self._samples), device=self.device)
        if self.trainer.world_size > 1:
            n = self.trainer.strategy.reduce(n, reduce_op="sum")
        return int(n.item())

    def on_test_epoch_end(self) -> None:
        self.test_results = self._accuracies("test")
        self.log_dict(self.test_results)


_TOP5 = "\0top5"
"""Accumulator key of the prediction's top-5 accuracy (logged as ``val/acc5`` / ``test/acc5``)."""


class _KeepBatchNormStats:
    """Restore BatchNorm running statistics (and batch counters) after a diagnostic forward pass."""

    def __init__(self, net: torch.nn.Module):
        self.mods = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                     and m.track_running_stats]

    def __enter__(self) -> None:
        self.saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in self.mods]

    def __exit__(self, *exc: Any) -> None:
        with torch.no_grad():
            for m, buf in zip(self.mods, self.saved):
                for k, v in buf.items():
                    getattr(m, k).copy_(v)
