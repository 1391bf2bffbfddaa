"""``--tune``: from a new dataset to a fair table in one command.

Before the grid runs, every (dataset, rule, arch) cell of the grid without tuned settings under the protocol
(``sweeps/best/``, ``bench.protocol``: v1) gets the protocol's sweep: its trials, its tuning budget for the rule (the
evaluation budget on the whole training split, or the rule's stated shorter one with the transfer check), its
pruner and sampler, scored on validation accuracy only. The sweep exports its best options; the grid then applies
them like any tuned settings, and the report follows. Cells that already have tuned settings are not swept again, so
a second call runs no sweep. ``--tune-trials``/``--tune-epochs``/``--tune-limit-train`` make the sweeps custom: they
are stored as such and the grid does not apply them as v1 settings (it says so).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cell:
    dataset: str
    method: str
    arch: str
    """Full architecture string (what tuned settings are keyed by)."""
    fixed: tuple[tuple[str, Any], ...] = ()
    """Rule options given explicitly (--set, the profile's): held fixed in the sweep."""


def untuned_cells(spec) -> list[Cell]:
    """The grid's (dataset, rule, arch) cells that have no tuned settings, once each, in grid order."""
    from bench.grid import expand, validate

    if not spec.tuned:
        from bench.errors import ConfigError

        raise ConfigError("--tune and --no-tuned contradict each other: --tune sweeps to use tuned settings")
    configs = expand(spec)
    resolved = validate(configs)
    cells = {}
    for cfg, res in zip(configs, resolved):
        if cfg.tuned is False:
            fixed = tuple(sorted((k, v) for k, v in cfg.rule.items()))
            cells.setdefault(
                (cfg.dataset, cfg.method, res.arch.text), Cell(cfg.dataset, cfg.method, res.arch.text, fixed)
            )
    return list(cells.values())


def tune_missing(
    spec,
    *,
    trials: int | None = None,
    epochs: int | None = None,
    limit_train: int | None = None,
    workers: int = 1,
    storage: str | None = None,
    dry_run: bool = False,
    out=None,
) -> list[Cell]:
    """Sweep every untuned cell of the grid ``spec`` under the protocol (``trials``/``epochs``/``limit_train``: a
    custom budget instead; ``limit_train`` 0 is the whole split); returns the cells swept (or, with ``dry_run``, that
    would be). Runs in this process with one worker (``workers`` > 1: local worker processes, which see the datasets
    of $BENCH_MODULES but not ones registered only in this process)."""
    from bench.paths import data_root, runs_root
    from bench.protocol import get_protocol
    from sweeps.space import load_space
    from sweeps.study import StudySpec, budget_line, classify, startup_trials

    out = out or sys.stdout
    protocol = get_protocol()
    if any(v is not None for v in (trials, epochs, limit_train)) and spec.protocol != "custom":
        import dataclasses

        spec = dataclasses.replace(spec, protocol="custom")  # a custom budget: its cells are looked up as custom
    cells = untuned_cells(spec)
    under = "a custom budget" if spec.protocol == "custom" else f"protocol {protocol.name}"
    if not cells:
        print(f"tune: every cell of the grid has tuned settings under {under}; no sweep", file=out)
        return []
    n_trials = trials if trials is not None else protocol.trials
    run = {k: v for k, v in spec.run.items() if k in ("batch_size", "norm", "val_fraction")}
    data_dir = spec.run.get("data_dir")
    studies = []
    for c in cells:
        fixed = dict(c.fixed)
        space = load_space(c.method, None, fixed)
        budget = protocol.tuning_budget(c.method)
        cell_run = dict(run)
        limit = budget.limit_train if limit_train is None else (limit_train or None)
        if limit:
            cell_run["limit_train"] = limit
        study = StudySpec(
            dataset=c.dataset,
            method=c.method,
            arch=c.arch,
            epochs=epochs if epochs is not None else budget.epochs,
            seed=protocol.seeds[0],
            run=cell_run,
            fixed=fixed,
            space=space.to_dict(),
            space_source=space.source,
            sampler={"startup": protocol.startup if trials is None else startup_trials(n_trials)},
        )
        study.protocol = classify(study, n_trials)
        studies.append((c, study))
    print(f"tune: {len(cells)} cell(s) without tuned settings under {under}", file=out)
    for c, study in studies:
        print(
            f"  sweep {c.dataset} / {c.method} / {c.arch}: {budget_line(study, n_trials, data_dir)}"
            + (f" fixed {dict(c.fixed)}" if c.fixed else ""),
            file=out,
        )
    if dry_run:
        return cells
    from sweeps.launch import run_sweep
    from sweeps.storage import normalise

    url = normalise(storage)
    # trials write their records under <runs>/sweeps/<study>/: the report of the grid never reads them
    env = {k: v for k, v in spec.run.items() if k in ("data_dir", "download", "verify_data", "accelerator", "wandb")}
    env["data_dir"] = str(data_root(env.get("data_dir")).resolve())
    env["runs_dir"] = str(runs_root(spec.run.get("runs_dir")).resolve())
    failed = []
    for c, study in studies:
        result = run_sweep(
            study,
            budget=n_trials,
            workers=workers,
            storage=url,
            executor="inline" if workers == 1 else "local",
            env=env,
            figures=False,
            out=out,
        )
        if result.exported is None:
            failed.append(f"{c.dataset} / {c.method} / {c.arch}")
    if failed:
        print("tune: no completed trial (nothing exported) for: " + "; ".join(failed), file=out)
    return cells


def tune_grid_report(
    spec,
    *,
    force: bool = False,
    tune_options: dict[str, Any] | None = None,
    report: bool = True,
    report_out: str | None = None,
    launch=None,
    out=None,
) -> int:
    """``--tune``: the sweeps the grid lacks, then the grid (with the tuned settings), then the report."""
    from bench.grid import run_grid

    out = out or sys.stdout
    tune_missing(spec, out=out, **(tune_options or {}))
    crashed = run_grid(spec, force=force, launch=launch, out=out)
    if report:
        from bench.paths import runs_root
        from reports.build import build_report

        build_report(source=str(runs_root(spec.run.get("runs_dir"))), out=report_out)
    return crashed


def grid_hook(spec, a, launch) -> int:
    """``make bench ... ARGS=--tune`` (entry point bench.grid_hooks: tune): sweeps where tuned settings are missing,
    the grid, the report; with --dry-run, what would be swept and the grid as it stands."""
    from bench.grid import run_grid

    if any(v is not None for v in (a.tune_trials, a.tune_epochs, a.tune_limit_train)):
        import dataclasses

        from bench.protocol import get_protocol

        print(
            f"tune: --tune-trials/--tune-epochs/--tune-limit-train set a custom budget (not protocol "
            f"{get_protocol().name}): the sweeps are stored as custom and the grid applies custom settings"
        )
        spec = dataclasses.replace(spec, protocol="custom")
    options = {
        "trials": a.tune_trials,
        "epochs": a.tune_epochs,
        "limit_train": a.tune_limit_train,
        "workers": a.tune_workers,
    }
    if a.dry_run:
        tune_missing(spec, dry_run=True, **options)
        run_grid(spec, dry_run=True, force=a.force, launch=launch)
        return 0
    return 1 if tune_grid_report(spec, force=a.force, tune_options=options, launch=launch) else 0
