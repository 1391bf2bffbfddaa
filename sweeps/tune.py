"""``--tune``: from a new dataset to a fair table in one command.

Before the grid runs, every (dataset, rule, arch) cell of the grid without tuned settings (``sweeps/best/``) gets the
equal-budget sweep every tuned rule got: the same trials, epochs, training subset, pruner and sampler (``TUNE_BUDGET``,
the budget of the committed Fashion-MNIST files), scored on validation accuracy only. The sweep exports its best
options; the grid then applies them like any tuned settings, and the report follows. Cells that already have tuned
settings are not swept again, so a second call runs no sweep.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

TUNE_BUDGET = {"trials": 8, "epochs": 2, "limit_train": 10000}
"""The budget behind the committed tuned files (sweeps/best/fashion_mnist/*.json: 8 trials x 2 epochs on 10k training
samples); every rule swept by --tune gets the same one."""


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
    trials: int = TUNE_BUDGET["trials"],
    epochs: int = TUNE_BUDGET["epochs"],
    limit_train: int | None = TUNE_BUDGET["limit_train"],
    workers: int = 1,
    storage: str | None = None,
    dry_run: bool = False,
    out=None,
) -> list[Cell]:
    """Sweep every untuned cell of the grid ``spec`` with the same budget; returns the cells swept (or, with
    ``dry_run``, that would be). Runs in this process with one worker (``workers`` > 1: local worker processes, which
    see the datasets of $BENCH_MODULES but not ones registered only in this process)."""
    out = out or sys.stdout
    cells = untuned_cells(spec)
    if not cells:
        print("tune: every cell of the grid has tuned settings; no sweep", file=out)
        return []
    print(
        f"tune: {len(cells)} cell(s) without tuned settings; each gets {trials} trials x {epochs} epochs"
        + (f" on {limit_train} training samples" if limit_train else "")
        + " (validation accuracy)",
        file=out,
    )
    for c in cells:
        print(f"  sweep {c.dataset} / {c.method} / {c.arch}" + (f" fixed {dict(c.fixed)}" if c.fixed else ""), file=out)
    if dry_run:
        return cells
    from bench.paths import data_root, runs_root
    from sweeps.launch import run_sweep
    from sweeps.space import load_space
    from sweeps.storage import normalise
    from sweeps.study import StudySpec

    url = normalise(storage)
    # trials write their records under <runs>/sweeps/<study>/ (W&B off): the report of the grid never reads them
    env = {k: v for k, v in spec.run.items() if k in ("data_dir", "download", "verify_data", "accelerator")}
    env["data_dir"] = str(data_root(env.get("data_dir")).resolve())
    env["runs_dir"] = str(runs_root(spec.run.get("runs_dir")).resolve())
    run = {k: v for k, v in spec.run.items() if k in ("batch_size", "norm", "val_fraction")}
    if limit_train:
        run["limit_train"] = limit_train
    failed = []
    for c in cells:
        fixed = dict(c.fixed)
        space = load_space(c.method, None, fixed)
        study = StudySpec(
            dataset=c.dataset,
            method=c.method,
            arch=c.arch,
            epochs=epochs,
            seed=0,
            run=run,
            fixed=fixed,
            space=space.to_dict(),
            space_source=space.source,
        )
        result = run_sweep(
            study,
            budget=trials,
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

    options = {
        "trials": a.tune_trials or TUNE_BUDGET["trials"],
        "epochs": a.tune_epochs or TUNE_BUDGET["epochs"],
        "limit_train": TUNE_BUDGET["limit_train"] if a.tune_limit_train is None else (a.tune_limit_train or None),
        "workers": a.tune_workers,
    }
    if a.dry_run:
        tune_missing(spec, dry_run=True, **options)
        run_grid(spec, dry_run=True, force=a.force, launch=launch)
        return 0
    return 1 if tune_grid_report(spec, force=a.force, tune_options=options, launch=launch) else 0
