"""``python -m bench sweep`` (``make sweep`` / ``make sweep-all``): tune rules with Optuna on validation accuracy.

By default every cell is tuned under the protocol (``bench.protocol``, v1): its trials, tuning budget per rule,
pruner and sampler. A sweep given another budget (``--trials``, ``--epochs``, ``--limit-train``, ``--pruner`` ...)
says so and is stored as ``custom``, never as v1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from bench.errors import BenchError, ConfigError, exit_status
from bench.executors import executor_class, executor_help, executor_names


def build_parser() -> argparse.ArgumentParser:
    from bench.options import add_run_options

    ap = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument(
        "--method",
        required=True,
        help="rule name, comma-separated names, or all (every registered rule, one study each)",
    )
    ap.add_argument(
        "--trials", type=int, default=None, help="finished trials per rule (default: the protocol's, the equal budget)"
    )
    ap.add_argument("--workers", type=int, default=1, help="parallel workers sharing each study")
    ap.add_argument(
        "--storage",
        default=None,
        help="sqlite:///file.db (default sweeps/studies/optuna.db), journal:/shared/file.log, or a "
        "database URL such as postgresql://user:pw@host/db ($BENCH_SWEEP_STORAGE)",
    )
    ap.add_argument(
        "--executor",
        choices=executor_names(),
        default="local",
        help=executor_help(),
    )
    ap.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="submitit parameters, e.g. --slurm 'slurm_partition=gpu timeout_min=120 gpus_per_node=1'",
    )
    ap.add_argument("--study-name", default=None, help="default: <dataset>__<rule>__<arch>__e<epochs>__<protocol hash>")
    ap.add_argument("--space", default=None, help="search-space TOML file (default sweeps/spaces/<rule>.toml)")
    ap.add_argument(
        "--seed", type=int, default=None, help="seed of every trial's run (default: the protocol's first seed)"
    )
    ap.add_argument(
        "--sampler-seed", type=int, default=None, help="the study's sampler seed (default: derived from the cell)"
    )
    ap.add_argument("--pruner", choices=("median", "none"), default=None, help="default: the protocol's (median)")
    ap.add_argument("--prune-startup", type=int, default=None, help="trials completed before the pruner acts")
    ap.add_argument("--prune-warmup", type=int, default=None, help="epochs of a trial before it can be pruned")
    ap.add_argument(
        "--prune-margin", type=float, default=None, help="prune only this far (accuracy) below the median (0.01)"
    )
    ap.add_argument(
        "--heartbeat",
        type=int,
        default=30,
        help="seconds between a running trial's heartbeats (database storages; 0: off)",
    )
    ap.add_argument("--grace", type=int, default=None, help="seconds without heartbeat before a trial counts as dead")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores / workers)")
    ap.add_argument("--no-wait", action="store_true", help="submit the workers and return (SLURM)")
    ap.add_argument("--export-only", action="store_true", help="run nothing: export best parameters and figures")
    ap.add_argument("--no-export", action="store_true", help="do not write sweeps/best/")
    ap.add_argument(
        "--export-force",
        action="store_true",
        help="replace the tuned entry even when it was made with a larger budget or another protocol",
    )
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--poll", type=float, default=10.0, help="seconds between progress lines")
    add_run_options(ap)
    return ap


def build_specs(a: argparse.Namespace, out=None) -> list:
    """One StudySpec per rule; a rule that cannot train --arch falls back to its default arch (said so)."""
    out = out or sys.stdout
    import methods  # noqa: F401 - registers the rules
    from bench.data import get_dataset_info
    from bench.grid import split_overrides
    from bench.options import parse_pairs, run_fields
    from bench.protocol import get_protocol
    from bench.run import resolve
    from methods.registry import get_rule, list_rules
    from sweeps.space import load_space
    from sweeps.study import RUN_FIELDS, StudySpec, classify, startup_trials

    names = [m.strip() for m in a.method.split(",") if m.strip()]
    if not names:
        raise ConfigError(f"--method needs a rule name, comma-separated names or all, got {a.method!r}")
    if names == ["all"]:  # the same set as `make bench METHODS=all` (variants such as grid cells by name only)
        names = [m for m in list_rules() if getattr(get_rule(m), "in_all", True)]
    for m in names:
        get_rule(m)
    if len(names) > 1 and (a.space or a.study_name):
        raise ConfigError("--space and --study-name need a single --method")
    if a.study_name is not None:
        from sweeps.study import safe_study_name

        safe_study_name(a.study_name)  # it becomes a folder name (runs/sweeps/<name>/, the figures' folder)
    num_classes = get_dataset_info(a.dataset).num_classes
    fields = run_fields(a)
    if (
        str(fields.get("devices", "1")) != "1"
        or fields.get("strategy", "auto") != "auto"
        or fields.get("num_nodes", 1) > 1
    ):
        raise ConfigError(
            "sweep trials run in one process each; parallelism comes from --workers (one trial per "
            "worker, each on its own device), not from --devices/--strategy/--num-nodes"
        )
    run = {k: v for k, v in fields.items() if k in RUN_FIELDS}
    overrides = parse_pairs(a.set)
    protocol = get_protocol()
    pruner = dict(protocol.pruner)
    if a.pruner is not None:
        pruner["name"] = a.pruner
    for key, value in (("startup", a.prune_startup), ("warmup", a.prune_warmup), ("margin", a.prune_margin)):
        if value is not None:
            pruner[key] = value
    trials = a.trials if a.trials is not None else protocol.trials
    if trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {trials}")
    if a.epochs is not None and a.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1, got {a.epochs}")
    a.trials = trials
    specs = []
    for m in names:
        rule_cls = get_rule(m)
        try:
            arch = rule_cls.parse_arch(a.arch, num_classes)
        except BenchError as e:
            if len(names) == 1:
                raise
            arch = rule_cls.parse_arch(None, num_classes)
            print(f"note: {m} cannot train {a.arch} ({e}); tuning it on its default arch {arch.short}", file=out)
        fixed = split_overrides(overrides, m, names)
        space = load_space(m, a.space, fixed)
        budget = protocol.tuning_budget(m)
        cell_run = dict(run)
        if "limit_train" not in cell_run and budget.limit_train is not None:
            cell_run["limit_train"] = budget.limit_train
        if cell_run.get("limit_train") == 0:  # --limit-train 0: the whole split, also for a rule tuned on a subset
            cell_run.pop("limit_train")
        spec = StudySpec(
            dataset=a.dataset,
            method=m,
            arch=arch.text,
            epochs=a.epochs if a.epochs is not None else budget.epochs,
            seed=a.seed if a.seed is not None else protocol.seeds[0],
            run=cell_run,
            fixed=fixed,
            space=space.to_dict(),
            space_source=space.source,
            pruner=pruner,
            sampler={"startup": protocol.startup if a.trials is None else startup_trials(trials)}
            | ({"seed": a.sampler_seed} if a.sampler_seed is not None else {}),
        )
        spec.protocol = classify(spec, trials)
        if spec.run.get("val_fraction", 0.1) <= 0:
            raise ConfigError("a sweep scores validation accuracy: --val-fraction must be > 0")
        resolve(spec.run_config({}))  # dataset, arch and fixed options are valid before any worker starts
        specs.append((spec, space))
    return specs


def _env(a: argparse.Namespace) -> dict[str, Any]:
    from bench.options import run_fields
    from bench.paths import data_root, runs_root
    from sweeps.study import RUN_FIELDS

    env = {k: v for k, v in run_fields(a).items() if k not in RUN_FIELDS and k != "progress"}
    # absolute paths: workers may start elsewhere (SLURM nodes, submitit's folder)
    env["data_dir"] = str(data_root(env.get("data_dir")).resolve())
    env["runs_dir"] = str(runs_root(env.get("runs_dir")).resolve())
    return env


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # a SIGTERM (scancel, kill) cancels the workers like Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    a = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    return exit_status(_storage_errors, a)


def _storage_errors(a: argparse.Namespace) -> int:
    """A study storage that fails mid-sweep (a damaged database, a lost server) is one line, not a traceback."""
    import optuna

    try:
        return _main(a)
    except optuna.exceptions.StorageInternalError as e:
        cause = e.__cause__ or e.__context__
        detail = str(cause).strip().splitlines()[0] if cause else str(e).strip().splitlines()[0]
        raise BenchError(
            f"the study storage {a.storage or 'default'} failed: {detail}; if it is a damaged SQLite "
            "file, restore it from a backup or move it aside and re-run"
        ) from None


def _main(a: argparse.Namespace) -> int:
    from bench.options import parse_pairs
    from sweeps.launch import run_sweep
    from sweeps.storage import normalise, redact
    from sweeps.study import budget_line, show_params

    storage = normalise(a.storage)
    if not a.dry_run:
        from sweeps.storage import check_sqlite

        check_sqlite(storage)  # a damaged study file: one line, before any data loads
    if a.no_wait and not executor_class(a.executor).detaches:
        raise ConfigError(f"--no-wait is for an executor whose workers outlive the launch (not {a.executor})")
    specs = build_specs(a)
    slurm = parse_pairs(a.slurm)
    if a.dry_run:
        for spec, space in specs:
            print(
                f"would sweep {a.study_name or spec.study_name()}: {spec.dataset} / {spec.method} / {spec.arch}, "
                f"{budget_line(spec, a.trials, a.data_dir)} on {a.workers} {a.executor} worker(s); storage "
                f"{redact(storage)}\n  space ({space.source}): {space.describe()}"
                + (f"\n  fixed: {spec.fixed}" if spec.fixed else "")
                + (f"\n  run: {spec.run}" if spec.run else "")
            )
        return 0
    if a.export_only:
        return _export_only(a, specs, storage)
    from bench.data import load_split
    from bench.paths import check_writable, data_root, runs_root

    check_writable(runs_root(a.runs_dir))  # trial records and the workers' logs go there
    load_split(a.dataset, str(data_root(a.data_dir)), True, bool(a.download), True)  # a missing file fails here
    results = []
    for spec, _space in specs:
        results.append(
            run_sweep(
                spec,
                budget=a.trials,
                workers=a.workers,
                storage=storage,
                executor=a.executor,
                study_name=a.study_name,
                env=_env(a),
                slurm=slurm,
                heartbeat=a.heartbeat or None,
                grace=a.grace,
                threads=a.threads,
                sampler_seed=0,  # the study seed is in the spec (sampler.seed); this offsets top-ups only
                wait=not a.no_wait,
                export=not a.no_export,
                figures=not a.no_figures,
                poll=a.poll,
                export_force=a.export_force,
            )
        )
    if len(results) > 1:
        print("\nsweep summary (validation accuracy of the best trial; equal budget per rule):")
        for (spec, _), r in zip(specs, results):
            c = r.counts
            best = f"{r.best_value:.4f}" if r.best_value is not None else "-"
            params = show_params(r.best_params)
            print(
                f"  {spec.method:16s} {best:>7s}  {params:40s} complete {c['COMPLETE']}, pruned {c['PRUNED']}, "
                f"failed {c['FAIL']}"
            )
    bad = any(
        r.worker_errors or (r.counts["COMPLETE"] + r.counts["PRUNED"] < a.trials and not r.submitted) for r in results
    )
    return 1 if bad else 0


def _export_only(a: argparse.Namespace, specs: list, storage: str) -> int:
    import optuna

    from sweeps.best import export_best
    from sweeps.figures import write_figures
    from sweeps.storage import open_storage
    from sweeps.study import read_spec

    for spec, _ in specs:
        name = a.study_name or spec.study_name()
        try:
            study = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat=None, check=True))
        except KeyError:
            raise ConfigError(f"no study {name!r} in {storage}") from None
        exported = export_best(study, read_spec(study), storage=storage, force=a.export_force)
        files, _ = write_figures(study) if not a.no_figures else ([], [])
        print(f"{name}: {exported.message}" + (f"; figures -> {files[0].parent}" if files else ""))
    return 0
