"""The method x dataset x seed grid behind ``make bench``: expand, validate, skip what is done, run."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any, Iterable

from bench.errors import BenchError, ConfigError
from bench.profiles import get_profile
from bench.run import RunConfig, load_record, resolve, run


@dataclass
class GridSpec:
    datasets: tuple[str, ...] = ("fashion_mnist",)
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


def expand(spec: GridSpec) -> list[RunConfig]:
    """All run configs of the grid (validated later by ``validate``)."""
    import methods as _methods  # noqa: F401 - registers the rules
    from methods.registry import get_rule, list_rules
    from sweeps.best import tuned_params

    prof = get_profile(spec.profile)
    methods = spec.methods
    if not methods or methods == ("all",):
        methods = prof.methods or tuple(m for m in list_rules() if get_rule(m).in_all)
    seeds = spec.seeds if spec.seeds is not None else prof.seeds
    configs = []
    for dataset in spec.datasets:
        for method in methods:
            rule_cls = get_rule(method)
            epochs = spec.epochs or prof.epochs or rule_cls.paper_epochs
            explicit = split_overrides(spec.overrides, method, methods)
            tuned, where = tuned_params(dataset, method, spec.arch) if spec.tuned else ({}, None)
            sources = {**{k: f"tuned: {where}" for k in tuned}, **{k: "--set" for k in explicit}}
            for seed in seeds:
                fields = {**prof.run, **spec.run}
                configs.append(RunConfig(dataset=dataset, method=method, arch=spec.arch, seed=seed, epochs=epochs,
                                         rule={**tuned, **explicit}, rule_sources=dict(sources),
                                         group=fields.pop("group", None) or f"{prof.name}", **fields))
    return configs


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


def is_done(res, runs_dir: str | None) -> bool:
    rec = load_record(res.name, runs_dir)
    return bool(rec) and rec.get("config_hash") == res.config_hash and rec.get("status") in ("completed", "diverged")


def run_grid(spec: GridSpec, *, dry_run: bool = False, force: bool = False, out=None) -> int:
    """Run the grid; returns the number of runs that crashed. A diverged run is recorded and the grid goes on."""
    out = out or sys.stdout  # looked up per call: a default bound at import would keep a stale stream
    from tqdm import tqdm

    configs = expand(spec)
    resolved = validate(configs)
    runs_dir = spec.run.get("runs_dir")
    todo = [(c, r) for c, r in zip(configs, resolved) if force or not is_done(r, runs_dir)]
    print(f"grid: {len(configs)} runs ({len(configs) - len(todo)} already completed with the same config, "
          f"{len(todo)} to run)", file=out)
    if dry_run:
        for cfg, res in zip(configs, resolved):
            state = "run " if (cfg, res) in todo else "done"
            rule = " ".join(f"{k}={v} [{cfg.rule_sources.get(k, '?')}]" for k, v in cfg.rule.items())
            print(f"  [{state}] {res.name}  epochs={cfg.epochs} arch={res.arch.text}" + (f" rule: {rule}" if rule else ""),
                  file=out)
        return 0
    if todo:  # load each dataset once up front: a missing file fails before the first run
        from bench.data import TensorDataModule

        for ds in dict.fromkeys(c.dataset for c, _ in todo):
            c0 = next(c for c, _ in todo if c.dataset == ds)
            TensorDataModule(ds, root=c0.data_dir, download=c0.download, verify=c0.verify_data).prepare_data()
            TensorDataModule(ds, root=c0.data_dir, verify=c0.verify_data).setup()
    crashed, summary = 0, []
    bar = tqdm(todo, desc="grid", unit="run", file=out, position=0, leave=True, dynamic_ncols=True)
    for cfg, res in bar:
        bar.set_postfix_str(res.name)
        try:
            result = run(cfg, res)
            acc = f"{100 * result.test_acc:.2f}%" if result.test_acc is not None else "-"
            summary.append(f"  {result.status:9s} {acc:>8s}  {res.name}")
        except BenchError:
            raise
        except Exception as e:  # noqa: BLE001 - one crashed run must not stop the grid
            crashed += 1
            summary.append(f"  crashed   {'-':>8s}  {res.name}: {type(e).__name__}: {e}")
    bar.close()
    if summary:
        print("grid results:", *summary, sep="\n", file=out)
    return crashed
