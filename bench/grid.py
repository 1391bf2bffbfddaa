"""The method x dataset x seed grid behind ``make bench``: expand, validate, skip what is done, run."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError, Interrupted
from bench.executors import check_executor, executor_class
from bench.profiles import get_profile
from bench.records import DONE, STATES, CellClaim, cell_state, claim_path, load_record, read_record
from bench.run import RunConfig, resolve, run


@dataclass
class GridSpec:
    datasets: tuple[str, ...] | None = None
    """None: the profile's datasets (default fashion_mnist)."""
    methods: tuple[str, ...] | None = None
    """None or ('all',): the profile's methods (default every registered rule)."""
    arch: str | None = None
    """One arch for every method; None: each rule's default architecture."""
    seeds: tuple[int, ...] | None = None
    epochs: int | None = None
    profile: str = "quick"
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Rule options: 'key' applies to every method, 'method.key' to one."""
    run: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Other RunConfig fields (data_dir, wandb, batch_size, ...)."""
    tuned: bool = True
    """Use the tuned rule options exported by sweeps (sweeps/best/<dataset>/<rule>.json) for the run's arch;
    an explicit option (``overrides``) wins."""
    protocol: str | None = None
    """Whose tuned settings to apply: None (the default protocol, v1) or ``custom`` (the latest custom-budget sweeps,
    e.g. ``--tune --tune-epochs 3``); recorded with every run."""
    only: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Keep only the profile's variants whose field ``key`` is one of the values (e.g. test_fraction: 0.95, 0.99)."""


_VARIANT_KEYS = ("methods", "datasets", "arch", "arch_options", "rule", "seeds", "exact_dataset", "claim", "paper")
"""Variant keys that are not RunConfig fields (``seeds``: the variant's own seeds unless SEEDS is given;
``exact_dataset``: ``datasets`` names datasets exactly, not feature sources; ``claim``/``paper``: for --only)."""


def select_variants(
    variants: tuple[dict[str, Any], ...], only: dict[str, tuple[str, ...]], profile: str
) -> tuple[dict[str, Any], ...]:
    """The variants matching every ``only`` filter (values compared as numbers when both parse, else as text)."""

    def same(a: Any, b: str) -> bool:
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return str(a) == b

    if not only:
        return variants or ({},)
    if not variants:
        raise ConfigError(f"--only filters the variants of a profile, and profile {profile!r} has none")
    kept = tuple(
        v
        for v in variants
        if all(any(same(v.get(k, v.get("rule", {}).get(k)), x) for x in xs) for k, xs in only.items())
    )
    if not kept:
        have = {k: sorted({str(v.get(k, v.get("rule", {}).get(k))) for v in variants}) for k in only}
        wanted = ", ".join(f"{k} in {list(xs)}" for k, xs in only.items())
        has = "; ".join(f"{k}: {', '.join(v)}" for k, v in have.items())
        raise ConfigError(f"no variant of profile {profile!r} has {wanted}; it has {has}")
    return kept


def _dataset_in(dataset: str, variant: dict[str, Any]) -> bool:
    """A variant's ``datasets`` name datasets or feature sources (``cifar10`` covers ``resnet50:cifar10``)."""
    names = variant.get("datasets")
    if names is not None and variant.get("exact_dataset"):
        return dataset in names
    return names is None or dataset in names or dataset.partition(":")[2] in names


def _with_options(arch: str, options: dict[str, Any]) -> str:
    return ",".join([arch, *(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in options.items())])


def split_overrides(overrides: dict[str, Any], method: str, methods: Iterable[str]) -> dict[str, Any]:
    """Rule options for ``method``: global keys plus its ``method.key`` ones."""
    out: dict[str, Any] = {}
    known = set(methods)
    for key, value in overrides.items():
        scope, dot, name = key.partition(".")
        if not dot:
            out[key] = value
        elif scope not in known:
            raise ConfigError(f"option {key!r} is scoped to {scope!r}, which is not in this grid ({', '.join(known)})")
        elif scope == method:
            out[name] = value
    return out


def expand(spec: GridSpec, notes: list[str] | None = None) -> list[RunConfig]:
    """All run configs of the grid (validated later by ``validate``): datasets x methods x the profile's variants x
    seeds. A variant's own arch that a rule cannot train is skipped and explained in ``notes``."""
    import methods as _methods  # noqa: F401 - registers the rules
    from bench.data import get_dataset_info
    from bench.errors import ArchError
    from bench.tuned import Tuned, lookup, stated_lr
    from methods.registry import get_rule, list_rules

    prof = get_profile(spec.profile)
    if spec.epochs is not None and spec.epochs < 1:  # 0 is a value, never "the default"
        raise ConfigError(f"--epochs must be >= 1, got {spec.epochs}")
    if prof.exact and (spec.arch or spec.epochs is not None or spec.overrides):
        given = ", ".join(
            n for n, v in (("ARCH", spec.arch), ("EPOCHS", spec.epochs is not None), ("SET", spec.overrides)) if v
        )
        raise ConfigError(
            f"profile {prof.name!r} runs each variant's own settings; {given} would make runs that match "
            "none of them (narrow it with DATASET, METHODS, SEEDS or --only instead)"
        )
    methods = spec.methods
    if not methods or methods == ("all",):
        methods = prof.methods or tuple(m for m in list_rules() if get_rule(m).in_all)
    seeds = spec.seeds if spec.seeds is not None else prof.seeds
    variants = select_variants(prof.variants, spec.only, prof.name)
    datasets = spec.datasets or prof.datasets or ("fashion_mnist",)
    configs = []
    for dataset in datasets:
        for method in methods:
            rule_cls = get_rule(method)
            explicit = split_overrides(spec.overrides, method, methods)
            for variant in variants:
                if method not in variant.get("methods", (method,)) or not _dataset_in(dataset, variant):
                    continue
                arch = spec.arch or variant.get("arch")
                if variant.get("arch_options"):
                    arch = _with_options(arch or rule_cls.default_arch, variant["arch_options"])
                if not spec.arch and arch is not None:  # the profile chose this arch: skip a rule that cannot train it
                    try:
                        rule_cls.parse_arch(arch, get_dataset_info(dataset).num_classes)
                    except ArchError as e:
                        if notes is not None:
                            notes.append(f"skipped {dataset} / {method} / {arch}: {e}")
                        continue
                epochs = (
                    spec.epochs
                    if spec.epochs is not None
                    else (
                        variant.get("epochs") or prof.method_epochs.get(method) or prof.epochs or rule_cls.paper_epochs
                    )
                )
                found = (
                    lookup(dataset, method, arch, spec.protocol)
                    if spec.tuned and not prof.exact
                    else Tuned({}, None, None)
                )
                tuned, where = found.params, found.where
                if found.note and notes is not None:
                    notes.append(f"{dataset} / {method} / {arch or rule_cls.default_arch}: {found.note}")
                proto = dict(variant.get("rule", {}))
                origin = f"claim {variant['claim']}" if "claim" in variant else f"profile {prof.name}"
                sources = {
                    **{k: f"tuned: {where}" for k in tuned},
                    **{k: origin for k in proto},
                    **{k: "--set" for k in explicit},
                }
                run_fields = {k: v for k, v in variant.items() if k not in _VARIANT_KEYS and k != "epochs"}
                for seed in spec.seeds if spec.seeds is not None else variant.get("seeds", seeds):
                    fields = {**prof.run, **run_fields, **spec.run}
                    configs.append(
                        RunConfig(
                            dataset=dataset,
                            method=method,
                            arch=arch,
                            seed=seed,
                            epochs=epochs,
                            rule={**tuned, **proto, **explicit},
                            rule_sources=dict(sources),
                            # None: the profile, claim or --set states the lr (neither tuned nor the defaults)
                            tuned=True if tuned else (None if stated_lr(sources) else False),
                            protocol=found.protocol if tuned else None,
                            group=fields.pop("group", None) or f"{prof.name}",
                            **fields,
                        )
                    )
    return configs


def run_config(
    dataset: str,
    method: str,
    arch: str | None,
    seed: int,
    epochs: int | None,
    *,
    overrides: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    tuned: bool = True,
) -> RunConfig:
    """The config of one cell exactly as the grid builds it (``bench run`` uses it): the same tuned settings, option
    sources and UNTUNED flag. ``epochs`` None: RunConfig's default; no profile (``group`` None)."""
    spec = GridSpec(
        datasets=(dataset,),
        methods=(method,),
        arch=arch,
        seeds=(seed,),
        epochs=epochs if epochs is not None else RunConfig().epochs,
        overrides=dict(overrides or {}),
        run=dict(run or {}),
        tuned=tuned,
    )
    (cfg,) = expand(spec)
    return dataclasses.replace(cfg, group=(run or {}).get("group"))


def untuned_note(cfg: RunConfig) -> str:
    """What the grid's dry-run and per-run lines add for a run without tuned settings (empty for a tuned one)."""
    if cfg.tuned is not False:
        return ""
    return (
        f"  [UNTUNED: no tuned settings for {cfg.dataset} / {cfg.method} / this arch: rule defaults; "
        "ARGS=--tune sweeps first]"
    )


def protocol_line(configs: list[RunConfig], protocol: str | None = None) -> str:
    """How the grid's runs stand to the protocol: tuned under it, without tuned settings (UNTUNED), with stated
    options, and how many tuned runs train at another epoch budget than the protocol evaluates at."""
    from bench.protocol import get_protocol

    p = get_protocol()
    tuned = [c for c in configs if c.tuned]
    untuned = sum(c.tuned is False for c in configs)
    stated = sum(c.tuned is None for c in configs)
    if protocol == "custom":
        off = 0
        parts = [f"{len(tuned)} tuned under a custom budget (not protocol {p.name})", f"{untuned} without"]
    else:
        off = sum(c.epochs != p.evaluation_epochs(c.method) for c in tuned)
        parts = [f"{len(tuned)} tuned under protocol {p.name}", f"{untuned} without tuned settings"]
    if untuned:
        parts[-1] += " (rule defaults, marked UNTUNED)"
    if stated:
        parts.append(f"{stated} at stated options")
    line = ", ".join(parts)
    if off:
        line += (
            f"; {off} tuned run(s) train at another epoch budget than {p.name} evaluates at (its settings were "
            "chosen at the protocol's budget)"
        )
    return line


def validate(configs: list[RunConfig]):
    """Resolve every config; report every bad one at once, before anything trains."""
    resolved, problems = [], []
    for cfg in configs:
        try:
            resolved.append(resolve(cfg))
        except BenchError as e:
            problems.append(f"  {cfg.dataset} / {cfg.method} / {cfg.arch or 'default arch'}: {e}")
    if problems:
        raise ConfigError("the grid has runs that cannot work:\n" + "\n".join(dict.fromkeys(problems)))
    return resolved


@dataclass
class Launch:
    """How a grid's cells are run: the executor, its workers and where they may run."""

    executor: str = "inline"
    workers: int = 1
    workers_per_device: int = 1
    cells_per_task: int | None = None
    """SLURM: give each array task a fixed chunk of this many cells instead of every task pulling from all."""
    slurm: dict[str, Any] = dataclasses.field(default_factory=dict)
    wait: bool = True
    """False: submit the SLURM array and return (progress: ``--status``, from the records)."""
    poll: float = 2.0


def plan(spec: GridSpec, out=None) -> list[tuple[RunConfig, Any]]:
    """The grid's distinct cells (config, resolved), validated; notes on skipped variants printed to ``out``."""
    notes: list[str] = []
    configs = expand(spec, notes)
    resolved = validate(configs)
    seen: set[str] = set()  # variants may coincide (e.g. EPOCHS=5 over a 5/100-epoch profile): run each once
    cells = [(c, r) for c, r in zip(configs, resolved) if not (r.name in seen or seen.add(r.name))]
    for note in dict.fromkeys(notes):
        print(f"  {note}", file=out)
    return cells


def states(cells, runs_dir: str | None) -> list[str]:
    return [cell_state(r.name, r.config_hash, runs_dir)[0] for _, r in cells]


def state_line(st: list[str]) -> str:
    n = {s: st.count(s) for s in STATES}
    return (
        f"{len(st)} runs: {n['completed']} completed, {n['diverged']} diverged, {n['running']} running elsewhere, "
        f"{n['failed']} failed, {n['pending']} pending"
    )


def _finished_line(rec: dict[str, Any]) -> str:
    acc = f"test {100 * rec['test_acc']:.2f}%" if rec.get("test_acc") is not None else "-"
    mins = (rec.get("train_time_s") or 0) / 60
    err = f"  ({rec['error']})" if rec.get("status") not in DONE and rec.get("error") else ""
    untuned = "  [UNTUNED: rule defaults, no tuned settings]" if rec.get("tuned") is False else ""
    if rec.get("tuned") and rec.get("protocol"):
        untuned = f"  [tuned {rec['protocol']}]"
    return f"  {rec.get('status', '?'):11s} {acc:>13s} {mins:6.2f} min  {rec.get('name')}{err}{untuned}"


def run_grid(
    spec: GridSpec,
    *,
    dry_run: bool = False,
    force: bool = False,
    status: bool = False,
    launch: Launch | None = None,
    out=None,
) -> int:
    """Run the cells of the grid that are not done; returns how many problems the launch leaves: runs that crashed
    in it, cells still failed or pending when it ends (their workers died), workers that failed. 0 when every cell
    is completed or diverged (or held by a live worker of another launch, which goes on with it) and every worker
    ended well. A diverged run is a result; a failed (crashed, interrupted) one runs again; a cell claimed by a live
    worker is left to it. SIGINT/SIGTERM stop the launch (``Interrupted``, after the summary)."""
    out = out or sys.stdout  # looked up per call: a default bound at import would keep a stale stream
    launch = launch or Launch()
    check_executor(launch.executor, launch.workers)
    cells = plan(spec, out)
    runs_dir = spec.run.get("runs_dir")
    st = states(cells, runs_dir)
    todo = [cell for cell, s in zip(cells, st) if s in ("failed", "pending") or (force and s in DONE)]
    print(
        f"grid: {state_line(st)}; {len(todo)} to run"
        + (f" ({launch.executor}, {launch.workers} worker(s))" if todo and not (dry_run or status) else "")
        + f"; {protocol_line([c for c, _ in cells], spec.protocol)}",
        file=out,
    )
    if dry_run or status:
        for (cfg, res), s in zip(cells, st):
            rule = " ".join(f"{k}={v} [{cfg.rule_sources.get(k, '?')}]" for k, v in cfg.rule.items())
            split = f" test_fraction={cfg.test_fraction}" if cfg.test_fraction is not None else ""
            print(
                f"  [{s:9s}] {res.name}  epochs={cfg.epochs}{split} arch={res.arch.text}"
                + (f" rule: {rule}" if rule and dry_run else "")
                + untuned_note(cfg),
                file=out,
            )
        return 0
    if not todo:
        return 0
    for ds in dict.fromkeys(c.dataset for c, _ in todo):  # a missing data file fails before any worker starts
        from bench.data import load_split
        from bench.paths import data_root

        c0 = next(c for c, _ in todo if c.dataset == ds)
        for train in (True, False):  # cached: the inline runs reuse what this loads
            load_split(ds, str(data_root(c0.data_dir)), train, c0.download, c0.verify_data)
    started = time.time()
    options = {"force_since": started if force else None, "runs_dir": runs_dir}
    configs = [dataclasses.replace(c, progress=False) for c, _ in todo]
    finished: dict[str, dict[str, Any]] = {}
    bar = _progress(todo, out, spec.run.get("progress", True) is not False)

    def report(rec: dict[str, Any]) -> None:
        if rec["name"] in finished:
            return
        finished[rec["name"]] = rec
        bar.write(_finished_line(rec), file=out)
        bar.done(rec["name"])

    failed_workers: int | None = 0
    try:
        if executor_class(launch.executor).in_process:
            work(configs, 0, {**options, "inline": True}, on_finish=report)
        else:
            failed_workers = _fan_out(configs, launch, options, started, report, lambda line: bar.write(line, file=out))
    except Interrupted:
        bar.close()
        _summary(cells, finished, runs_dir, out)
        raise
    bar.close()
    problems = _summary(cells, finished, runs_dir, out, failed_workers or 0)
    if failed_workers is not None:
        print(rule_table(cells, runs_dir), file=out)
        print(_where(runs_dir, spec), file=out)
    return 0 if failed_workers is None else problems  # None: submitted without waiting, the cells are queued


class _Progress:
    """The grid's one progress display: a bar over the grid's work (epochs x training samples of each run, so its
    time estimate weighs a 5-epoch run five times a 1-epoch one), advanced as runs finish; off when ``out`` is not a
    terminal (a log file or CI gets the one line per finished run only)."""

    def __init__(self, units: dict[str, int], out, enabled: bool):
        from tqdm import tqdm

        self.units, self.runs, self.total_runs = units, 0, len(units)
        self.bar = tqdm(
            total=sum(units.values()),
            desc="grid",
            file=out,
            dynamic_ncols=True,
            leave=True,
            disable=not enabled,
            bar_format="{desc} {percentage:3.0f}% of the work |{bar}| {postfix} [{elapsed}<{remaining}]",
            postfix=f"0/{len(units)} runs",
        )

    def write(self, line: str, file=None) -> None:
        self.bar.write(line, file=file)

    def done(self, name: str) -> None:
        self.runs += 1
        self.bar.set_postfix_str(f"{self.runs}/{self.total_runs} runs", refresh=False)
        self.bar.update(self.units.get(name, 0))

    def close(self) -> None:
        self.bar.close()


def _progress(todo, out, wanted: bool = True) -> _Progress:
    from bench.protocol import training_samples

    sizes: dict[tuple, int] = {}
    units = {}
    for cfg, res in todo:
        key = (cfg.dataset, cfg.val_fraction, cfg.limit_train, cfg.test_fraction, cfg.data_dir)
        if key not in sizes:
            run = {"val_fraction": cfg.val_fraction, "limit_train": cfg.limit_train}
            sizes[key] = training_samples(cfg.dataset, run, cfg.data_dir) or 1
        units[res.name] = max(1, int(cfg.epochs or 1)) * sizes[key]
    tty = getattr(out, "isatty", None)
    return _Progress(units, out, bool(wanted and tty is not None and tty()))


def rule_table(cells, runs_dir: str | None) -> str:
    """Per setting of the grid (a rule at one arch, budget and options; seeds pooled): mean +- std of the completed
    runs' test accuracy, n, and whether the setting ran tuned (the protocol) or on the rule's defaults."""
    import statistics

    groups: dict[str, list[dict[str, Any]]] = {}
    for _, res in cells:
        rec = load_record(res.name, runs_dir)
        if rec is not None and rec.get("status") in DONE and rec.get("test_acc") is not None:
            groups.setdefault(rec.get("setting") or res.name, []).append(rec)
    if not groups:
        return "grid: no completed run to summarise yet"
    rows = []
    for recs in groups.values():
        r0, accs = recs[0], [100 * r["test_acc"] for r in recs]
        sd = f"{statistics.stdev(accs):5.2f}" if len(accs) > 1 else "    -"
        tuned = f"tuned {r0['protocol']}" if r0.get("tuned") and r0.get("protocol") else "UNTUNED"
        if r0.get("tuned") is None and r0.get("job_type") != "train":
            tuned = "stated"
        rows.append(
            (
                r0.get("dataset", "?"),
                r0.get("method", "?"),
                r0.get("arch", "?"),
                str(r0.get("epochs", "?")),
                f"{statistics.fmean(accs):6.2f} +- {sd}",
                str(len(accs)),
                tuned,
            )
        )
    head = ("dataset", "rule", "arch", "epochs", "test acc % (mean +- std)", "n", "settings")
    rows.sort(key=lambda r: (r[0], r[3], r[1], r[2]))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{w}s}}" for w in widths)
    lines = ["grid summary (completed runs of this grid, seeds pooled per setting):", "  " + fmt.format(*head)]
    lines += ["  " + fmt.format(*r) for r in rows]
    return "\n".join(lines)


def _where(runs_dir: str | None, spec: GridSpec) -> str:
    from bench.paths import runs_root

    root = runs_root(runs_dir)
    wandb = spec.run.get("wandb", "offline")
    lines = [f"records: {root / 'records'}/   logs: {root / 'logs'}/"]
    if wandb != "disabled":
        lines.append(f"W&B ({wandb}): {root / 'wandb'}/")
    lines.append("next: make report (tables and figures from these records)")
    return "\n".join(lines)


def _summary(cells, finished: dict[str, dict[str, Any]], runs_dir, out, failed_workers: int = 0) -> int:
    """Print the launch's results and the cells' states; returns the problems it leaves (see ``run_grid``)."""
    if finished:
        print("grid results:", *(_finished_line(r) for r in finished.values()), sep="\n", file=out)
    st = states(cells, runs_dir)
    print(f"grid: {state_line(st)}", file=out)
    bad = {n for n, r in finished.items() if r.get("status") == "crashed"}
    left = [r.name for (_, r), s in zip(cells, st) if s in ("failed", "pending")]
    if left and not bad.issuperset(left):
        print(f"grid: {len(left)} cell(s) not done; launch again to run them", file=out)
    return len(bad | set(left)) + failed_workers


def launch_folder(runs_dir: str | None) -> Path:
    """A launch's own folder (submitit's files, the workers' logs and pid files): the time, this process's pid and a
    random suffix, so two launches started in the same second (on one machine or on nodes sharing the runs folder)
    never share one."""
    import uuid

    from bench.paths import runs_root

    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    return runs_root(runs_dir) / "grid" / stamp


def _fan_out(
    configs: list[RunConfig], launch: Launch, options: dict[str, Any], started: float, report, say
) -> int | None:
    """Submit the workers, then follow the cells through their records until every job is over. Returns how many
    workers failed (None: submitted without waiting)."""
    folder = launch_folder(options.get("runs_dir"))
    ex = executor_class(launch.executor)(folder, launch.slurm)
    n = launch.workers
    if ex.fixed_chunks and launch.cells_per_task:
        k = launch.cells_per_task
        shares = [configs[i : i + k] for i in range(0, len(configs), k)]
    else:  # every worker pulls from the whole list, starting at its own offset (fewer claim collisions)
        n = min(n, len(configs))
        shares = [configs[i * len(configs) // n :] + configs[: i * len(configs) // n] for i in range(n)]
    calls = [
        (share, i, ex.worker_options(i, len(shares), options, launch.workers_per_device))
        for i, share in enumerate(shares)
    ]
    jobs = ex.submit(work, calls, name="bench-grid")
    say(
        f"  {len(jobs)} {launch.executor} worker(s): jobs {', '.join(str(j.job_id) for j in jobs)}; "
        f"worker logs in {folder}/"
    )
    if not launch.wait:
        say("  submitted; follow with `make bench ... ARGS=--status` (the records tell the progress)")
        return None
    names = sorted({resolve(c).name for c in configs})

    def scan() -> None:  # progress comes from the records (no sacct): report attempts that ended in this launch
        for name in names:
            rec = _newest_attempt(name, options.get("runs_dir"))
            if rec is not None and (rec.get("finished_ts") or 0) >= started:
                report(rec)

    try:
        while True:
            over = all(ex.poll(j) for j in jobs)
            scan()
            if over:
                break
            time.sleep(launch.poll)
    except Interrupted:
        ex.stop(jobs)  # each worker records its running cell ``interrupted``
        scan()
        raise
    failed = 0
    for i, j in enumerate(jobs):
        err = ex.exit_reason(j)
        if err:
            failed += 1
            say(f"  worker {i} (job {j.job_id}) {err}")
    return failed


@contextlib.contextmanager
def _output_to(log: Path):
    """Send everything this process writes to stdout/stderr (Python, Lightning, W&B, C libraries) to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "a") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def work(configs: list[RunConfig], worker: int, options: dict[str, Any], on_finish=None) -> dict[str, str]:
    """One worker (inline, a local process or a SLURM array task): take each cell that is not done and not held by
    a live worker, claim it, run it with its output in ``<runs>/logs/<run name>.log``, release it. Returns
    {run name: status} of the runs it made. ``Interrupted`` stops it after the current run is recorded."""
    from bench.errors import install_signal_handlers
    from bench.executors import claim_resources
    from bench.paths import runs_root

    if not options.get("inline"):
        install_signal_handlers()
        if options.get("pid_dir"):
            Path(options["pid_dir"], f"worker-{worker}.pid").write_text(str(os.getpid()))
        claim_resources(options.get("cpus"), options.get("gpu"))
        for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
            logging.getLogger(name).setLevel(logging.WARNING)
    since = options.get("force_since")
    made: dict[str, str] = {}
    for cfg in configs:
        res = resolve(cfg)
        state, rec = cell_state(res.name, res.config_hash, cfg.runs_dir)
        if state == "running" or (state in DONE and (since is None or (rec.get("finished_ts") or 0) >= since)):
            continue
        claim = CellClaim.acquire(claim_path(res.name, cfg.runs_dir))
        if claim is None:
            continue
        try:  # another worker may have finished the cell between the look and the claim
            rec = load_record(res.name, cfg.runs_dir)
            if (
                rec is not None
                and rec.get("config_hash") == res.config_hash
                and rec.get("status") in DONE
                and (since is None or (rec.get("finished_ts") or 0) >= since)
            ):
                continue
            log = runs_root(cfg.runs_dir) / "logs" / f"{res.name}.log"
            try:
                with _output_to(log):
                    print(
                        f"== attempt of {res.name} by {socket.gethostname()} pid {os.getpid()} worker {worker} at "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')}",
                        flush=True,
                    )
                    result = run(cfg, res, claim=claim)
                rec = result.record
            except BenchError:
                raise
            except Interrupted:
                if on_finish is not None:
                    on_finish(_last_attempt(res.name, cfg.runs_dir, "interrupted"))
                raise
            except Exception:  # noqa: BLE001 - the run recorded its crash; the worker goes on
                rec = _last_attempt(res.name, cfg.runs_dir, "crashed")
            made[res.name] = rec.get("status", "?")
            if on_finish is not None:
                on_finish(rec)
        finally:
            claim.release()
    return made


def _newest_attempt(name: str, runs_dir: str | None) -> dict[str, Any] | None:
    """The record of the cell's latest attempt: the record itself, or one kept beside a result (``attempts/``)."""
    from bench.paths import runs_root

    found = [read_record(p) for p in (runs_root(runs_dir) / "records" / "attempts").glob(f"{name}.*.json")]
    found = [r for r in [load_record(name, runs_dir), *found] if r is not None]
    return max(found, key=lambda r: r.get("finished_ts") or 0) if found else None


def _last_attempt(name: str, runs_dir: str | None, status: str) -> dict[str, Any]:
    """The record an attempt that raised left behind (a stub when it could not write one)."""
    rec = _newest_attempt(name, runs_dir)
    return rec if rec is not None and rec.get("status") == status else {"name": name, "status": status}
