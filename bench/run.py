"""The one run function. The CLI, the grid, the sweeps and the tests all call ``run``.

It is the only place that seeds, builds the data, the rule, the Trainer and the W&B logger, and
writes the durable run record (``<runs>/records/<run name>.json``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import socket
import subprocess
import sys
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError, Interrupted
from bench.ids import config_hash, slug
from bench.paths import PROJECT_ROOT, runs_root, set_tool_dirs
from bench.records import (
    DONE,
    RUN_META,
    RUN_SUMMARY,
    CellClaim,
    claim_path,
    read_claim,
    record_path,
    save_attempt,
)

WANDB_MODES = ("offline", "online", "disabled")


NOT_IDENTITY = {"identity": False}
"""Field metadata of RunConfig fields that do not change the numbers a run produces (where it writes, how it logs,
which devices): left out of the run's identity, so adding such a field changes no run hash."""


@dataclass(kw_only=True)
class RunConfig:
    """Everything that defines one training run (one dataset x rule x arch x seed)."""

    dataset: str = "fashion_mnist"
    method: str = "bp"
    arch: str | None = None
    """Architecture string (None: the rule's default_arch)."""
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 1000
    val_fraction: float = 0.1
    """Fraction of the official training set held out for validation (tuning never sees test data)."""
    norm: str = "standard"
    """Input normalisation for every rule: standard (per-channel mean/std of the training split) or unit ([0, 1])."""
    augment: bool = False
    """Random crop + flip on whole batches (32x32 colour datasets)."""
    test_fraction: float | None = None
    """Few-shot protocol: merge train and test, hold out this fraction as the test set."""
    rule: dict[str, Any] = field(default_factory=dict)
    """Overrides of the rule's hyperparameters (validated against its config class)."""
    limit_train: int | None = None
    """Use only this many training samples (tests, quick checks)."""
    limit_eval: int | None = None
    """Use only this many validation and test samples."""
    data_dir: str | None = field(default=None, metadata=NOT_IDENTITY)
    download: bool = field(default=False, metadata=NOT_IDENTITY)
    verify_data: bool = field(default=True, metadata=NOT_IDENTITY)
    """Check the torchvision checksums of the data files."""
    runs_dir: str | None = field(default=None, metadata=NOT_IDENTITY)
    wandb: str = field(default_factory=lambda: os.environ.get("BENCH_WANDB", "offline"), metadata=NOT_IDENTITY)
    """offline (default, no account), online (when the user configured W&B) or disabled."""
    wandb_project: str = field(
        default_factory=lambda: os.environ.get("WANDB_PROJECT", "bpfree-bench"), metadata=NOT_IDENTITY
    )
    wandb_entity: str | None = field(default_factory=lambda: os.environ.get("WANDB_ENTITY"), metadata=NOT_IDENTITY)
    group: str | None = field(default=None, metadata=NOT_IDENTITY)
    """The grid profile (or a sweep's study) the run belongs to, stored with the run (record ``group``/``profile``)."""
    job_type: str = field(default="train", metadata=NOT_IDENTITY)
    """What the run is: ``train`` (a grid or ``bench run``), ``sweep`` (a tuning trial or transfer check) or ``perf``;
    W&B's job type, and ``SOURCE=wandb:`` reads only ``train`` runs."""
    sweep: dict[str, Any] | None = field(default=None, metadata=NOT_IDENTITY)
    """A sweep trial's study name, trial number and objective (stored in the record and the W&B config)."""
    protocol: str | None = field(default=None, metadata=NOT_IDENTITY)
    """The protocol (bench.protocol) whose tuned settings the run applied, or None (defaults or stated options)."""
    accelerator: str = field(default="auto", metadata=NOT_IDENTITY)
    devices: int | str = field(default=1, metadata=NOT_IDENTITY)
    strategy: str = field(default="auto", metadata=NOT_IDENTITY)
    num_nodes: int = field(default=1, metadata=NOT_IDENTITY)
    progress: bool = field(default=True, metadata=NOT_IDENTITY)
    """Lightning's progress bar within the run."""
    epoch_lines: bool = field(default=True, metadata=NOT_IDENTITY)
    """Without the progress bar: one line per finished epoch on stderr (a grid worker's run log); ``make perf``
    turns it off."""
    callbacks: list = field(default_factory=list, repr=False, metadata=NOT_IDENTITY)
    """Extra Lightning callbacks (e.g. a sweep's pruning callback); not part of the run's identity."""
    evaluate_test: bool = field(default=True, metadata=NOT_IDENTITY)
    """Evaluate the test split after training (sweep trials set False: tuning never looks at test data)."""
    rule_sources: dict[str, str] = field(default_factory=dict, metadata=NOT_IDENTITY)
    """Where each ``rule`` option came from (--set, tuned file, sweep trial); stored in the record."""
    compile: bool = field(default=False, metadata=NOT_IDENTITY)
    """``torch.compile`` the rule's step (``LearningRule.compile_step``). Not part of the run's identity: the same
    numbers to float rounding; stored in the record as ``compiled``."""
    steps_per_call: int = field(default=8, metadata=NOT_IDENTITY)
    """Training batches per call of the loop's ``training_step`` (``bench.data.GroupedBatches``): Lightning's
    per-call hooks and batch fetching are paid once per this many optimiser steps. The same batches in the same order
    and the same updates for any value, so not part of the run's identity; 1 gives Lightning one call per batch."""
    tuned: bool | None = field(default=None, metadata=NOT_IDENTITY)
    """The grid's word on fairness: True when tuned options (sweeps/best/) for the run's dataset, rule and arch were
    applied, False when there were none (or --no-tuned) and the rule ran on its defaults; None outside a grid and
    when the profile, a claim or --set states the learning rate. Stored in the record; the report marks untuned rows."""

    def identity(self) -> dict[str, Any]:
        """The fields that decide the numbers a run produces (hashed into its id): every field not marked
        ``NOT_IDENTITY``."""
        keep = {f.name for f in dataclasses.fields(self) if f.metadata.get("identity", True)}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in keep}


IDENTITY_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.metadata.get("identity", True))
"""RunConfig fields that are part of a run's identity (its config hash), derived from the fields' metadata."""
RUN_SETTINGS = tuple(f for f in IDENTITY_FIELDS if f not in ("dataset", "method", "arch", "seed", "epochs", "rule"))
"""Identity fields beyond dataset, rule, arch, seed and epochs: how a run trains and is measured (batch size,
splits, subsets, normalisation, augmentation)."""


@dataclass
class Resolved:
    """A validated run: canonical config (rule defaults filled in), its hash and its name."""

    cfg: RunConfig
    rule_cls: type
    rule_config: Any
    arch: Any
    canonical: dict[str, Any]
    config_hash: str
    name: str


@dataclass
class RunResult:
    name: str
    status: str
    test_acc: float | None
    record: dict[str, Any]
    record_path: Path


def resolve(cfg: RunConfig) -> Resolved:
    """Validate a run config completely (dataset, rule, options, arch pairing) without touching data."""
    import methods  # noqa: F401 - registers the rules
    from bench.checks import check_run_fields
    from bench.data import get_dataset_info
    from methods.config import build_config, config_to_dict
    from methods.registry import get_rule

    info = get_dataset_info(cfg.dataset)
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.wandb not in WANDB_MODES:
        raise ConfigError(f"wandb={cfg.wandb!r}; choose one of {', '.join(WANDB_MODES)}")
    if cfg.norm not in ("standard", "unit"):
        raise ConfigError(f"norm={cfg.norm!r}; choose one of standard, unit")
    if not 0.0 <= cfg.val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    check_run_fields(cfg)
    rule_cls = get_rule(cfg.method)
    rule_config = build_config(rule_cls.Config, cfg.rule, owner=f"rule {cfg.method!r}")
    arch = rule_cls.parse_arch(cfg.arch, info.num_classes)
    canonical = {**cfg.identity(), "arch": arch.text, "rule": config_to_dict(rule_config, identity=True)}
    digest = config_hash(canonical)
    name = f"{cfg.dataset}__{cfg.method}__{slug(arch.short)}__s{cfg.seed}__{digest}"
    return Resolved(cfg, rule_cls, rule_config, arch, canonical, digest, name)


def setting_of(canonical: dict[str, Any]) -> str:
    """A run's setting: the hash of its identity without the seed. Runs sharing it are seeds of one setting (a table
    cell, a W&B group)."""
    return config_hash({k: v for k, v in canonical.items() if k not in ("seed", "meta")})


def wandb_group(res: Resolved) -> str:
    """W&B group of a run: ``<dataset>/<rule>/<arch>/<setting>``, so the W&B UI averages the seeds of one setting."""
    return f"{res.cfg.dataset}/{res.cfg.method}/{res.arch.short}/{setting_of(res.canonical)}"


def _git_commit() -> str | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return (sha + ("-dirty" if dirty else "")) or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import lightning
    import numpy
    import torch
    import torchvision

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import wandb

        out["wandb"] = wandb.__version__
    except ImportError:
        pass
    return out


class _PeakMemory:
    """Peak memory of the run: CUDA peak allocation on GPU, else the process's peak RSS (reset at start)."""

    def __init__(self, device_type: str):
        self.cuda = device_type == "cuda"

    def start(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            try:  # writing 5 to clear_refs resets VmHWM (Linux)
                Path("/proc/self/clear_refs").write_text("5")
            except OSError:
                pass

    def read(self) -> tuple[int | None, str]:
        import torch

        if self.cuda:
            return int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024, "cpu_peak_rss"
        except OSError:
            pass
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_peak_rss"


class RunningElsewhere(BenchError):
    """The run's cell is claimed by a live worker (this machine or another node sharing the runs folder)."""


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)


def steady_process() -> None:
    """Process settings that keep a CPU step's cost the same from step to step and from rule to rule (same numbers;
    idempotent; the harness and ``make perf``'s plain loop both run under them):

    * glibc's malloc (Linux) with fixed thresholds: buffers up to 32 MB come from the heap, and the heap keeps up to
      1 GB of freed memory instead of handing it back. With glibc's adaptive defaults, the weight-sized temporaries
      of an optimiser step and the fresh gradients of every step are mapped and unmapped again, so each step pays
      page faults for them, more or fewer by the history of allocations (one rule's pattern, the validation batches).
    * Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` on import (asking whether CUDA is available must not
      initialise it before a fork); Adam's step asks at every step. Where NVML is not installed (CPU machines), torch
      then tries to load it at every ask and falls back to the CUDA runtime's count anyway; the variable is dropped
      there, so the answer is the same and the runtime's count is cached."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        pass
    else:
        mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1":
        try:
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]


def _rank_zero() -> bool:
    """False in the extra processes of a multi-process (DDP) run; they train but do not claim or record."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def run(cfg: RunConfig, resolved: Resolved | None = None, claim: CellClaim | None = None) -> RunResult:
    """Seed, train, evaluate, log to W&B and write the run record. Returns the result.

    The run holds its cell's claim while it trains (``claim``: one the caller already holds; else it takes one
    and raises ``RunningElsewhere`` when a live worker holds it). Bad input raises ``ConfigError``/``DataError``
    before training. A run whose loss or parameters become NaN/inf is stopped and recorded as ``diverged``;
    SIGINT/SIGTERM (``Interrupted``) is recorded as ``interrupted`` and re-raised; any other exception is
    recorded as ``crashed`` and re-raised. The record is written once, when the attempt ends, and an attempt that
    did not complete never replaces a completed record (see ``bench.records``).
    """
    res = resolved or resolve(cfg)
    own = None
    if claim is None and _rank_zero():
        own = CellClaim.acquire(claim_path(res.name, cfg.runs_dir))
        if own is None:
            info = read_claim(claim_path(res.name, cfg.runs_dir))
            raise RunningElsewhere(
                f"{res.name} is running elsewhere ({info.owner if info else 'another worker'}); "
                "its claim is taken over once its worker stops"
            )
    try:
        return _run(cfg, res)
    finally:
        if own is not None:
            own.release()


def label_facts(rule_cls: type, arch_text: str) -> dict[str, Any]:
    """What a report needs to label a run of ``rule_cls`` on ``arch_text`` without importing training code: the
    rule's default options, the architecture the rule builds from the same layer string, its display name."""
    from methods.arch import ArchSpec
    from methods.config import config_to_dict

    try:
        arch_default = ArchSpec.parse(arch_text.split(",", 1)[0], rule_cls.arch_defaults).text
    except BenchError:
        arch_default = None
    return {
        "rule_defaults": config_to_dict(rule_cls.Config(), identity=True),
        "arch_default": arch_default,
        "display_name": rule_cls.label() if hasattr(rule_cls, "label") else None,
    }


def _run(cfg: RunConfig, res: Resolved) -> RunResult:
    path = record_path(res.name, cfg.runs_dir)
    record: dict[str, Any] = {
        "name": res.name,
        "id": f"{res.name}-{uuid.uuid4().hex[:6]}",
        "config_hash": res.config_hash,
        "status": "running",
        "dataset": cfg.dataset,
        "method": cfg.method,
        "arch": res.arch.short,
        "arch_full": res.arch.text,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "group": cfg.group,
        "profile": cfg.group,
        "job_type": cfg.job_type,
        "protocol": cfg.protocol,
        "setting": setting_of(res.canonical),
        "sweep": cfg.sweep,
        "config": res.canonical,
        "rule_sources": cfg.rule_sources,
        "tuned": cfg.tuned,
        "history": [],
        "test": {},
        "test_acc": None,
        "host": socket.gethostname(),
        "compiled": cfg.compile,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:  # setting up: an interruption here is recorded too (the attempt ends interrupted, nothing trained)
        import lightning as L
        import torch
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from bench.data import TensorDataModule

        record.update(
            {"labels": label_facts(res.rule_cls, res.arch.text), "versions": _versions(), "git_commit": _git_commit()}
        )
        runs = runs_root(cfg.runs_dir)
        set_tool_dirs(runs)
        torch.set_flush_denormal(True)
        steady_process()
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

        dm = TensorDataModule(
            cfg.dataset,
            root=cfg.data_dir,
            batch_size=cfg.batch_size,
            eval_batch_size=cfg.eval_batch_size,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            norm=cfg.norm,
            augment=cfg.augment,
            download=cfg.download,
            verify=cfg.verify_data,
            limit_train=cfg.limit_train,
            limit_eval=cfg.limit_eval,
            test_fraction=cfg.test_fraction,
            steps_per_call=cfg.steps_per_call,
        )
        dm.prepare_data()
        dm.setup()  # load now: a missing or corrupt file fails here, before anything is logged

        L.seed_everything(cfg.seed, workers=False, verbose=False)
        rule = res.rule_cls(res.rule_config, res.arch, dm.in_shape, dm.num_classes, cfg.epochs)
        if cfg.compile:
            rule.compile_step()

        logger = _make_logger(cfg, res, record)
        # Lightning's deterministic=... sets process-wide torch flags; they are restored when the run ends, so a run
        # leaves the process (a notebook, the test suite, the next run) as it found it
        flags = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.utils.deterministic.fill_uninitialized_memory,
        )
        trainer = L.Trainer(
            max_epochs=cfg.epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            num_nodes=cfg.num_nodes,
            logger=logger if logger is not None else False,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            enable_progress_bar=cfg.progress,
            limit_val_batches=1.0 if len(dm.splits["val"][0]) else 0,
            default_root_dir=str(runs),
            callbacks=[
                *cfg.callbacks,
                *(_progress_bar(True) if cfg.progress else [_epoch_lines()] if cfg.epoch_lines else []),
            ],
            deterministic="warn" if cfg.accelerator != "cpu" else True,
            log_every_n_steps=50,
        )
        # deterministic mode also fills every new tensor with NaN before a kernel writes it (a debugging aid against
        # kernels that read uninitialised memory, which no rule uses): a memory write per allocation on a CPU, a
        # kernel launch per allocation on a GPU. Off during the run; the updates do not change.
        torch.utils.deterministic.fill_uninitialized_memory = False
        device_type = trainer.strategy.root_device.type
        peak = _PeakMemory(device_type)
        peak.start()
    except (Interrupted, KeyboardInterrupt) as e:
        record.update(
            {
                "status": "interrupted",
                "error": f"{type(e).__name__}: {e}".rstrip(": "),
                "epochs_done": 0,
                "train_time_s": 0.0,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "finished_ts": time.time(),
            }
        )
        if _rank_zero():
            save_attempt(path, record)
        raise
    t0 = time.perf_counter()
    status, error = "completed", None
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*is an invalid value for `limit_val_batches`.*")
            # the loop logs values it has already reduced over processes (loss mean, summed accuracy counts)
            warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")
            trainer.fit(rule, datamodule=dm)
            train_time = time.perf_counter() - t0
            if rule.diverged:
                status = "diverged"
            elif cfg.evaluate_test:
                trainer.test(rule, datamodule=dm, verbose=False)
    except (Interrupted, KeyboardInterrupt, SIGTERMException) as e:  # a signal: record it, then stop
        status, error = "interrupted", f"{type(e).__name__}: {e}".rstrip(": ")
        train_time = time.perf_counter() - t0
        if isinstance(e, SIGTERMException):  # Lightning's own SIGTERM handling ran instead of ours
            raise Interrupted(15) from None
        raise
    except BaseException as e:  # record the crash, then let it propagate
        status, error = "crashed", f"{type(e).__name__}: {e}"
        train_time = time.perf_counter() - t0
        record["traceback"] = traceback.format_exc()
        raise
    finally:
        torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = flags[2], flags[3]
        torch.utils.deterministic.fill_uninitialized_memory = flags[4]
        mem, mem_kind = peak.read()
        record.update(
            {
                "status": status,
                "error": error,
                "history": rule.history,
                "test": rule.test_results,
                "test_acc": rule.test_results.get("test/acc"),
                "train_time_s": train_time,
                "epochs_done": len(rule.history),
                "peak_mem_bytes": mem,
                "peak_mem_kind": mem_kind,
                "device": device_type,
                "world_size": trainer.world_size,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "finished_ts": time.time(),
            }
        )
        if trainer.global_rank == 0:
            path = _store(path, record, logger, cfg.runs_dir)
    return RunResult(res.name, status, record["test_acc"], record, path)


class RecordWriteError(BenchError):
    """The run ended but its record could not be written (full or read-only disk): the disk's state, exit 1."""

    exit_code = 1


def _store(path: Path, record: dict[str, Any], logger, runs_dir: str | None = None) -> Path:
    """Write the attempt's record first (``bench.records.save_attempt``), then finish W&B: nothing that can fail
    after training (W&B's service, a lost connection) comes before the record. A W&B failure is one warning line
    and never replaces the run's outcome. When the record cannot be written, the error says where the result
    survives: the W&B run file when it verifiably holds it (the report reads it then), else the result itself."""
    try:
        saved, failed = save_attempt(path, record), None
    except OSError as e:
        saved, failed = None, e
    try:
        _finish_logger(logger, record, runs_dir)
    except Exception as e:  # noqa: BLE001 - W&B's own failure (its service died of the same signal, a full disk)
        held = f"its record {saved} holds the result" if saved is not None else "its record could not be written"
        print(
            f"warning: W&B could not finish run {record['name']} ({type(e).__name__}: {e}); {held}",
            file=sys.stderr,
            flush=True,
        )
    if failed is None:
        return saved
    run_file = _wandb_file(logger) if logger is not None else None
    if run_file is not None and _wandb_holds(run_file, record):
        where = f"its metrics are in the W&B run {run_file}, which `make report` reads"
    else:
        import json

        from bench.records import json_default

        why = (
            "W&B was disabled"
            if logger is None
            else f"the W&B run {run_file or 'file'} does not hold it (cut short or unfinished)"
        )
        result = {k: record.get(k) for k in ("status", "test", "epochs", "epochs_done", "train_time_s")}
        result["val_acc"] = [row.get("val/acc") for row in record.get("history") or []]
        where = f"{why}, so here is its result: {json.dumps(result, default=json_default)}"
    raise RecordWriteError(
        f"run {record['name']} ended {record['status']} (test acc {record['test_acc']}) but "
        f"its record {path} could not be written: {failed.strerror or failed}; {where}; free space (or make "
        "the folder writable) and launch again to redo it"
    ) from None


def _wandb_file(logger) -> str | None:
    try:
        exp = logger.experiment
        return str(Path(exp.dir).parent / f"run-{exp.id}.wandb")
    except Exception:  # noqa: BLE001 - only for a message
        return None


def _wandb_holds(run_file: str, record: dict[str, Any]) -> bool:
    """Whether the W&B run file holds the run's result as the report would read it in place of the record: the
    run finished, with this record's config hash, a final status and the same test accuracy."""
    from bench.wandb_io import read_wandb_file

    try:
        wb = read_wandb_file(run_file)
    except Exception:  # noqa: BLE001 - missing, cut short, not a W&B file
        return False
    return (
        wb.finished
        and record["status"] in DONE
        and wb.summary.get("status") == record["status"]
        and (wb.config.get("meta") or {}).get("config_hash") == record["config_hash"]
        and wb.summary.get("test/acc") == record["test_acc"]
    )


def _epoch_lines():
    """Without a progress bar (grid workers, ``--no-progress``): a callback printing one line per finished epoch on
    stderr, which a grid worker sends to the run's log (``<runs>/logs/<run>.log``), so a long run shows how far it
    got."""
    import lightning.pytorch as pl

    class EpochLines(pl.Callback):
        def __init__(self) -> None:
            self._shown = 0

        def _show(self, trainer, rule) -> None:
            history = getattr(rule, "history", [])
            if trainer.global_rank == 0:
                for row in history[self._shown :]:
                    shown = "  ".join(
                        f"{k} {v:.4f}"
                        for k, v in row.items()
                        if k.startswith(("train/loss", "val/acc")) and v is not None
                    )
                    t = row.get("train/epoch_time_s") or 0.0
                    print(
                        f"epoch {row.get('epoch')}/{trainer.max_epochs}  {shown}  {t:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
            self._shown = len(history)

        def on_train_epoch_start(self, trainer, rule) -> None:  # the previous epoch's row is complete by now
            self._show(trainer, rule)

        def on_train_end(self, trainer, rule) -> None:
            self._show(trainer, rule)

    return EpochLines()


def _progress_bar(enabled: bool) -> list:
    """Lightning's own bar within a run, counting optimiser steps (not the loop's calls, which group several steps),
    refreshed rarely when the output is not a terminal (logs, CI)."""
    if not enabled:
        return []
    from lightning.pytorch.callbacks import TQDMProgressBar

    class StepBar(TQDMProgressBar):
        @property
        def total_train_batches(self):
            steps = getattr(self.trainer.train_dataloader, "steps", None)
            return steps if steps is not None else super().total_train_batches

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            steps = getattr(pl_module, "_steps", None)
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx if steps is None else steps - 1)

    return [StepBar(refresh_rate=1 if sys.stderr.isatty() else 200, leave=False)]


def _make_logger(cfg: RunConfig, res: Resolved, record: dict[str, Any]):
    if cfg.wandb == "disabled":
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    runs = runs_root(cfg.runs_dir)
    meta = {k: record[k] for k in RUN_META}
    logger = WandbLogger(
        project=cfg.wandb_project,
        entity=cfg.wandb_entity,
        name=res.name,
        save_dir=str(runs),
        offline=cfg.wandb == "offline",
        group=wandb_group(res),
        job_type=cfg.job_type,
        tags=[cfg.dataset, cfg.method, res.arch.short],
        id=record["id"],
        config={
            **res.canonical,
            "meta": meta,
            "profile": cfg.group,
            "protocol": cfg.protocol,
            "setting": record["setting"],
            "job_type": cfg.job_type,
            **({"sweep": cfg.sweep} if cfg.sweep else {}),
        },
        log_model=False,
        settings=wandb.Settings(console="off", x_disable_stats=True),
    )
    logger.experiment.summary["status"] = "running"
    return logger


def _finish_logger(logger, record: dict[str, Any], runs_dir: str | None = None) -> None:
    if logger is None:
        return
    summary = {**{k: record[k] for k in RUN_SUMMARY}, "record_path": str(record_path(record["name"], runs_dir))}
    summary.update({k: v for k, v in record["test"].items()})
    if record["history"]:
        summary.update({f"final/{k}": v for k, v in record["history"][-1].items() if isinstance(v, (int, float))})
    if record.get("error"):
        summary["error"] = record["error"]
    exp = logger.experiment
    for k, v in summary.items():
        if not (isinstance(v, float) and not math.isfinite(v)):
            exp.summary[k] = v
    import wandb

    run_file = Path(exp.dir).parent / f"run-{exp.id}.wandb" if exp.settings.mode in ("offline", "dryrun") else None
    wandb.finish(exit_code=0 if record["status"] in DONE else 1)
    if run_file is not None:
        _wait_until_written(run_file)


def _wait_until_written(run_file: Path, timeout: float = 60.0) -> None:
    """W&B may return from finish() before the offline record file holds the run's end; wait for it, so a
    grid that stops right after a run (or a report built at once) sees the whole run."""
    from bench.wandb_io import read_wandb_file

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if read_wandb_file(run_file).finished:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    print(f"warning: W&B has not finished writing {run_file} after {timeout:.0f} s", file=sys.stderr, flush=True)
