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
    only: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Keep only the profile's variants whose field ``key`` is one of the values (e.g. test_fraction: 0.95, 0.99)."""


_VARIANT_KEYS = ("methods", "datasets", "arch", "arch_options", "rule")


def select_variants(variants: tuple[dict[str, Any], ...], only: dict[str, tuple[str, ...]], profile: str
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
    kept = tuple(v for v in variants if all(any(same(v.get(k, v.get("rule", {}).get(k)), x) for x in xs)
                                             for k, xs in only.items()))
    if not kept:
        have = {k: sorted({str(v.get(k, v.get("rule", {}).get(k))) for v in variants}) for k in only}
        wanted = ", ".join(f"{k} in {list(xs)}" for k, xs in only.items())
        has = "; ".join(f"{k}: {', '.join(v)}" for k, v in have.items())
        raise ConfigError(f"no variant of profile {profile!r} has {wanted}; it has {has}")
    return kept


def _dataset_in(dataset: str, variant: dict[str, Any]) -> bool:
    """A variant's ``datasets`` name datasets or feature sources (``cifar10`` covers ``resnet50:cifar10``)."""
    names = variant.get("datasets")
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
    from methods.registry import get_rule, list_rules
    from sweeps.best import tuned_params

    prof = get_profile(spec.profile)
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
                epochs = spec.epochs or variant.get("epochs") or prof.epochs or rule_cls.paper_epochs
                tuned, where = tuned_params(dataset, method, arch) if spec.tuned else ({}, None)
                proto = dict(variant.get("rule", {}))
                sources = {**{k: f"tuned: {where}" for k in tuned}, **{k: f"profile {prof.name}" for k in proto},
                           **{k: "--set" for k in explicit}}
                run_fields = {k: v for k, v in variant.items() if k not in _VARIANT_KEYS and k != "epochs"}
                for seed in seeds:
                    fields = {**prof.run, **run_fields, **spec.run}
                    configs.append(RunConfig(dataset=dataset, method=method, arch=arch, seed=seed, epochs=epochs,
                                             rule={**tuned, **proto, **explicit}, rule_sources=dict(sources),
                                             tuned=bool(tuned), group=fields.pop("group", None) or f"{prof.name}",
                                             **fields))
    return configs


def untuned_note(cfg: RunConfig) -> str:
    """What the grid's dry-run and per-run lines add for a run without tuned settings (empty for a tuned one)."""
    if cfg.tuned is not False:
        return ""
    return (f"  [UNTUNED: no tuned settings for {cfg.dataset} / {cfg.method} / this arch: rule defaults; "
            "ARGS=--tune sweeps first]")


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

    notes: list[str] = []
    configs = expand(spec, notes)
    resolved = validate(configs)
    seen: set[str] = set()  # variants may coincide (e.g. EPOCHS=5 over a 5/100-epoch profile): run each once
    pairs = [(c, r) for c, r in zip(configs, resolved) if not (r.name in seen or seen.add(r.name))]
    configs, resolved = [c for c, _ in pairs], [r for _, r in pairs]
    for note in dict.fromkeys(notes):
        print(f"  {note}", file=out)
    runs_dir = spec.run.get("runs_dir")
    todo = [(c, r) for c, r in zip(configs, resolved) if force or not is_done(r, runs_dir)]
    untuned = sum(c.tuned is False for c in configs)
    print(f"grid: {len(configs)} runs ({len(configs) - len(todo)} already completed with the same config, "
          f"{len(todo)} to run)" + (f"; {untuned} without tuned settings (rule defaults, marked UNTUNED)"
                                    if untuned else ""), file=out)
    if dry_run:
        for cfg, res in zip(configs, resolved):
            state = "run " if (cfg, res) in todo else "done"
            rule = " ".join(f"{k}={v} [{cfg.rule_sources.get(k, '?')}]" for k, v in cfg.rule.items())
            split = f" test_fraction={cfg.test_fraction}" if cfg.test_fraction is not None else ""
            print(f"  [{state}] {res.name}  epochs={cfg.epochs}{split} arch={res.arch.text}"
                  + (f" rule: {rule}" if rule else "") + untuned_note(cfg), file=out)
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
            summary.append(f"  {result.status:9s} {acc:>8s}  {res.name}{untuned_note(cfg)}")
        except BenchError:
            raise
        except Exception as e:  # noqa: BLE001 - one crashed run must not stop the grid
            crashed += 1
            summary.append(f"  crashed   {'-':>8s}  {res.name}: {type(e).__name__}: {e}")
    bar.close()
    if summary:
        print("grid results:", *summary, sep="\n", file=out)
    return crashed
