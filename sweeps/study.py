"""One study = one (dataset, rule, arch) tuned under one protocol; workers share it through its storage.

The launcher creates the study once and stores its ``StudySpec`` in the study itself; every worker (on this
machine or on a cluster node) loads the spec from there, so all trials train exactly the same way. The
objective is the benchmark's own ``bench.run.run`` scored on the last epoch's validation accuracy; the
test split is never evaluated during tuning.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from lightning.pytorch.callbacks import EarlyStopping

from bench.errors import BenchError, ConfigError
from bench.ids import config_hash, slug
from bench.protocol import CUSTOM, get_protocol
from bench.run import RUN_SETTINGS

METRIC = "val/acc"
SPEC_ATTR = "bench_spec"
BUDGET_ATTR = "bench_budget"
PRUNE_REASON = "pruned_reason"
DEFAULTS_ATTR = "defaults"
"""User attribute of the study's first trial, the rule's defaults (``defaults_trial``): the names of the options it
was enqueued with."""
RUN_FIELDS = RUN_SETTINGS
"""RunConfig fields that change what a trial measures (part of the study's identity): the run settings of a run's
identity (bench.run.RUN_SETTINGS)."""


_STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,=+-]{0,199}")


def safe_study_name(name: str) -> str:
    """``name`` if it is fit to be one folder name (study names become ``runs/sweeps/<name>/`` and
    ``reports/out/sweeps/<name>/``): letters, digits and ``_.,=+-``, no leading dot, no path separator, at most 200
    characters. Names given on the command line and names read from a (shared) storage both pass here before any
    path is built from them; anything else is refused in one line."""
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise ConfigError(
            f"study name {name!r} cannot be a folder name: use letters, digits and _ . , = + - (no leading dot, "
            "no / or \\, at most 200 characters)"
        )
    return name


@dataclass
class StudySpec:
    """Everything that decides what a trial measures. Its hash names the study, so re-running the same command
    resumes (tops up) the same study and a changed protocol starts a new one."""

    dataset: str
    method: str
    arch: str
    """Full architecture string (``ArchSpec.text``)."""
    epochs: int
    seed: int = 0
    run: dict[str, Any] = field(default_factory=dict)
    """RunConfig fields in RUN_FIELDS (batch size, subset limits, split)."""
    fixed: dict[str, Any] = field(default_factory=dict)
    """Rule options held fixed in every trial (``--set``)."""
    space: dict[str, Any] = field(default_factory=dict)
    space_source: str = ""
    pruner: dict[str, Any] = field(default_factory=lambda: dict(get_protocol().pruner))
    sampler: dict[str, Any] = field(default_factory=dict)
    """``seed`` (the study's sampler seed; by default derived from the cell, ``Protocol.study_seed``) and ``startup``
    (Sobol trials after the defaults' trial before TPE)."""
    protocol: str = CUSTOM
    """The protocol this study follows (``v1``) or ``custom`` when its budget differs (``classify``)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudySpec:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def seed_of_sampler(self) -> int:
        seed = self.sampler.get("seed")
        return int(seed) if seed is not None else get_protocol().study_seed(self.dataset, self.method, self.arch)

    def startup(self) -> int:
        return int(self.sampler.get("startup", get_protocol().startup))

    def digest(self) -> str:
        d = self.to_dict()
        d.pop("space_source")
        return config_hash(d)

    def study_name(self) -> str:
        from methods.arch import ArchSpec

        short = slug(ArchSpec.parse(self.arch).short)
        return f"{self.dataset}__{self.method}__{short}__e{self.epochs}__{self.digest()}"

    def run_config(self, rule: dict[str, Any], env: dict[str, Any] | None = None, **extra):
        from bench.run import RunConfig

        return RunConfig(
            dataset=self.dataset,
            method=self.method,
            arch=self.arch,
            seed=self.seed,
            epochs=self.epochs,
            rule={**self.fixed, **rule},
            **self.run,
            **(env or {}),
            **extra,
        )


def show_params(params: dict[str, Any]) -> str:
    """A trial's parameters on one line: ``lr=0.01234 f_scale=0.1`` (floats to 4 significant digits)."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def make_pruner(cfg: dict[str, Any]):
    import optuna

    name = cfg.get("name", "median")
    if name == "median":
        return MarginMedianPruner(
            startup=int(cfg.get("startup", 3)), warmup=int(cfg.get("warmup", 0)), margin=float(cfg.get("margin", 0.0))
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"pruner {name!r}; choose median or none")


def _base_pruner():
    import optuna

    return optuna.pruners.BasePruner


class MarginMedianPruner(_base_pruner()):
    """Median pruner that decides only on differences the validation split can resolve: a trial is pruned at epoch
    ``step >= warmup`` when its validation accuracy is more than ``margin`` below the median of the completed trials
    at that epoch, once ``startup`` trials have completed. A NaN value is pruned."""

    def __init__(self, startup: int = 3, warmup: int = 0, margin: float = 0.0):
        self.startup, self.warmup, self.margin = startup, warmup, margin

    def prune(self, study, trial) -> bool:
        import math
        import statistics

        from optuna.trial import TrialState

        step = trial.last_step
        if step is None or step < self.warmup:
            return False
        value = trial.intermediate_values[step]
        if value is None or math.isnan(value):
            return True
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < self.startup:
            return False
        others = [t.intermediate_values[step] for t in done if step in t.intermediate_values]
        others = [v for v in others if v is not None and not math.isnan(v)]
        if not others:
            return False
        return value < statistics.median(others) - self.margin


def make_sampler(seed: int, startup: int):
    """The protocol's sampler: trial 0 is the enqueued defaults, trials 1..``startup`` scrambled Sobol points
    (``QMCSampler``), the rest multivariate TPE (``constant_liar`` keeps parallel workers from proposing the same
    point while trials are running). ``seed`` is the study's (derived from the cell), so studies of different cells
    draw different points."""
    import optuna

    class StagedSampler(optuna.samplers.BaseSampler):
        def __init__(self):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self._build()

        def _build(self):
            self.qmc = optuna.samplers.QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=seed,
                warn_independent_sampling=False,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            )
            self.tpe = optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=startup + 1, multivariate=True, constant_liar=True
            )

        def _stage(self, trial):
            return self.qmc if trial.number <= startup else self.tpe

        def infer_relative_search_space(self, study, trial):
            return self._stage(trial).infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._stage(trial).sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._stage(trial).sample_independent(study, trial, param_name, param_distribution)

        def before_trial(self, study, trial):
            self._stage(trial).before_trial(study, trial)

        def after_trial(self, study, trial, state, values):
            self._stage(trial).after_trial(study, trial, state, values)

        def reseed_rng(self) -> None:
            self.qmc.reseed_rng()
            self.tpe.reseed_rng()

    return StagedSampler()


def defaults_trial(spec: StudySpec) -> dict[str, Any]:
    """The rule's default value of every searched option (with the spec's fixed options applied): the study's first,
    enqueued trial, so the exported setting is never worse than the defaults at the sweep's own budget."""
    import methods  # noqa: F401 - registers the rules
    from methods.config import build_config
    from methods.registry import get_rule

    cfg = build_config(get_rule(spec.method).Config, dict(spec.fixed), owner=f"rule {spec.method!r}")
    # an option whose default is unset (None: the rule derives it, e.g. FF's threshold from the layer width) is left
    # out: the defaults' trial does not set it, so the rule derives it as it does by default
    return {name: getattr(cfg, name) for name in spec.space if getattr(cfg, name) is not None}


def classify(spec: StudySpec, trials: int) -> str:
    """``v1`` (the default protocol's name) when the study follows that protocol's budget for its cell, else
    ``custom``: the same trials, tuning budget, seed, pruner, sampler startup, search-space file, run settings and no
    fixed options."""
    from bench.run import RunConfig
    from sweeps.space import load_space

    p = get_protocol()
    budget = p.tuning_budget(spec.method)
    defaults = RunConfig()
    run_ok = (
        all(
            spec.run.get(k, getattr(defaults, k))
            == (budget.limit_train if k == "limit_train" else getattr(defaults, k))
            for k in set(RUN_FIELDS)
        )
        and spec.run.get("val_fraction", defaults.val_fraction) == p.val_fraction
    )
    try:
        space = load_space(spec.method).to_dict()
    except BenchError:
        space = None
    same = (
        trials == p.trials
        and spec.epochs == budget.epochs
        and spec.seed == p.seeds[0]
        and run_ok
        and not spec.fixed
        and spec.space == space
        and spec.pruner == p.pruner
        and spec.startup() == p.startup
        and spec.sampler.get("seed") in (None, p.study_seed(spec.dataset, spec.method, spec.arch))
    )
    return p.name if same else CUSTOM


def budget_line(spec, trials: int, data_dir: str | None = None) -> str:
    """``protocol v1: 10 trials x 5 epoch(s) x 54,000 training samples`` (the real training-set size where the data
    is here), or ``custom budget (not protocol v1): ...``."""
    from bench.protocol import Budget, get_protocol, training_samples

    n = training_samples(spec.dataset, {k: v for k, v in spec.run.items() if k != "limit_train"}, data_dir)
    what = Budget(spec.epochs, spec.run.get("limit_train")).describe(n)
    name = get_protocol().name
    head = f"protocol {name}" if spec.protocol == name else f"custom budget (not protocol {name})"
    return f"{head}: {trials} trials x {what}"


def startup_trials(budget: int) -> int:
    """Sobol trials before TPE models the space for a custom budget: a third of the budget, between 3 and 10."""
    return max(3, min(10, budget // 3))


def read_spec(study) -> StudySpec:
    raw = study.user_attrs.get(SPEC_ATTR)
    if raw is None:
        raise ConfigError(f"study {study.study_name!r} was not created by `bench sweep` (no {SPEC_ATTR} attribute)")
    return StudySpec.from_dict(raw)


class PruneOnValAcc(EarlyStopping):
    """Reports each epoch's ``val/acc`` to the Optuna trial and stops the run when the pruner says so.

    It subclasses ``EarlyStopping`` only for its place in Lightning's call order: metric-monitoring
    callbacks run after the rule's ``on_train_epoch_end``, which is where the shared loop logs ``val/acc``.
    A missing metric fails loudly instead of scoring 0.
    """

    def __init__(self, trial, metric: str = METRIC):
        super().__init__(monitor=metric, mode="max", verbose=False)
        self.trial, self.metric = trial, metric
        self.values: list[float] = []
        self.pruned_epoch: int | None = None

    @property
    def state_key(self) -> str:
        return f"PruneOnValAcc[{self.metric}]"

    def on_validation_end(self, trainer, pl_module) -> None:  # EarlyStopping checks here; we check once per epoch
        return

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or getattr(pl_module, "diverged", False):
            return  # a diverged run is stopped and recorded by the shared loop; the objective prunes it
        value = trainer.callback_metrics.get(self.metric)
        if value is None:
            raise RuntimeError(
                f"metric {self.metric!r} not found (logged: {', '.join(trainer.callback_metrics)}); "
                "a sweep needs a validation split (val_fraction > 0)"
            )
        value, epoch = float(value), trainer.current_epoch + 1
        self.values.append(value)
        self.trial.report(value, step=epoch)
        if epoch < trainer.max_epochs and self.trial.should_prune():  # a finished run keeps its result
            self.pruned_epoch = epoch
            trainer.should_stop = True


class Objective:
    """``run`` one trial: sampled options + the spec's fixed ones; value = the last epoch's validation accuracy."""

    def __init__(self, spec: StudySpec, study_name: str, env: dict[str, Any] | None = None):
        from sweeps.space import Space, _parse_param

        self.spec, self.study_name, self.env = spec, study_name, dict(env or {})
        self.space = Space(
            spec.method, tuple(_parse_param(k, v, spec.space_source) for k, v in spec.space.items()), spec.space_source
        )

    def __call__(self, trial) -> float:
        import optuna

        from bench.paths import runs_root
        from bench.records import process_start
        from bench.run import run

        # first: a launcher on this host reaps the trial at once if this process dies (sweeps.launch.reap_stale)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        started = process_start(os.getpid())
        if started is not None:
            trial.set_user_attr("worker_started", started)
        # the defaults' trial sets only the options it was enqueued with (an unset default stays the rule's own)
        enqueued = trial.user_attrs.get(DEFAULTS_ATTR)
        params = self.space.suggest(trial, only=set(enqueued) if isinstance(enqueued, list) else None)
        pruning = PruneOnValAcc(trial)
        runs = str(runs_root(self.env.get("runs_dir")) / "sweeps" / safe_study_name(self.study_name))
        env = {**self.env, "runs_dir": runs}
        cfg = self.spec.run_config(
            params,
            env,
            callbacks=[pruning],
            group=f"sweep/{self.study_name}",
            job_type="sweep",
            sweep={"study": self.study_name, "trial": trial.number, "objective": f"{METRIC} (last epoch), maximised"},
            progress=False,
            evaluate_test=False,
            rule_sources={k: f"trial {trial.number}" for k in params},
        )
        t0 = time.perf_counter()
        try:
            result = run(cfg)
        except BenchError as e:  # an invalid combination of sampled options: the trial fails, the sweep goes on
            trial.set_user_attr("error", str(e))
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}")
            raise
        history = result.record["history"]
        trial.set_user_attr("run", result.name)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        trial.set_user_attr("epochs_done", len(history))
        trial.set_user_attr("val_acc_by_epoch", [row.get(METRIC) for row in history])
        if result.status == "diverged":
            reason = (
                f"diverged: loss or parameters became NaN/inf in epoch {len(history)} "
                f"(train/loss {history[-1].get('train/loss') if history else 'n/a'})"
            )
            trial.set_user_attr(PRUNE_REASON, reason)
            raise optuna.TrialPruned(reason)
        if pruning.pruned_epoch is not None:
            reason = (
                f"pruned after epoch {pruning.pruned_epoch}: val/acc {pruning.values[-1]:.4f} below the "
                f"{self.spec.pruner.get('name')} of earlier trials at that epoch"
            )
            trial.set_user_attr(PRUNE_REASON, reason)
            raise optuna.TrialPruned(reason)
        value = history[-1].get(METRIC) if history else None
        if value is None:
            raise RuntimeError(f"run {result.name} has no {METRIC}: a sweep needs a validation split")
        return float(value)


def work(storage: str, study_name: str, n_trials: int, worker: int, options: dict[str, Any]) -> dict[str, Any]:
    """One worker: load the study, run ``n_trials`` trials of it, return counts. Used by every executor
    (inline, submitit's local one, SLURM array tasks). A failing trial is recorded as FAIL and the worker goes on."""
    import optuna
    import torch

    from sweeps.storage import open_storage

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):  # one line per trial is enough
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    threads = options.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = open_storage(storage, heartbeat=options.get("heartbeat"), grace=options.get("grace"))
    probe = optuna.load_study(study_name=study_name, storage=st)
    spec = read_spec(probe)
    sampler = make_sampler(spec.seed_of_sampler() + int(options.get("sampler_seed", 0)) + worker, spec.startup())
    study = optuna.load_study(study_name=study_name, storage=st, sampler=sampler, pruner=make_pruner(spec.pruner))
    mine: list[int] = []

    def done(_study, t) -> None:
        mine.append(t.number)
        params = show_params(t.params)
        what = (
            f"val/acc {t.value:.4f}"
            if t.state.name == "COMPLETE"
            else t.user_attrs.get(PRUNE_REASON) or t.user_attrs.get("error", "")
        )
        print(f"[worker {worker}] trial {t.number} {t.state.name.lower()}: {params}: {what}", flush=True)

    study.optimize(
        Objective(spec, study_name, options.get("env")),
        n_trials=n_trials,
        catch=(Exception,),
        gc_after_trial=True,
        callbacks=[done],
    )
    states = {t.number: t.state.name for t in study.get_trials(deepcopy=False) if t.number in mine}
    return {"worker": worker, "host": socket.gethostname(), "pid": os.getpid(), "trials": states}
