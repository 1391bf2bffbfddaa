"""Command line: ``python -m bench {list,run,grid,report,data,perf,doctor,efficiency,sweep,claims}``.

User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import sys

from bench.errors import ConfigError, exit_status
from bench.executors import executor_class, executor_help, executor_names
from bench.options import (
    add_run_options as _add_run_options,
)
from bench.options import (
    csv_list as _csv,
)
from bench.options import (
    parse_only as _only,
)
from bench.options import (
    parse_pairs as _pairs,
)
from bench.options import (
    refuse_empty as _nonempty,
)
from bench.options import (
    run_fields as _run_fields,
)
from bench.options import (
    seed_list as _seeds,
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description="Backprop-free learning rules, one harness.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("list", help="registered rules, architectures, datasets and profiles")
    p.add_argument("--options", action="store_true", help="also list every rule's options with defaults")

    p = sub.add_parser("run", help="one run (dataset x method x arch x seed)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--method", default="bp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-tuned",
        action="store_true",
        help="ignore the tuned options exported by sweeps (sweeps/best/); rule defaults + --set only",
    )
    _add_run_options(p)

    p = sub.add_parser("grid", help="the dataset x method x seed grid (make bench)")
    p.add_argument(
        "--datasets",
        type=_csv,
        default=None,
        help="comma-separated (default: the profile's datasets, else fashion_mnist)",
    )
    p.add_argument("--methods", type=_csv, default=("all",), help="comma-separated rule names, or all")
    p.add_argument(
        "--seeds", default=None, help="comma-separated, ranges low-high included (0-19); default: the profile's"
    )
    p.add_argument("--profile", default="quick")
    p.add_argument("--force", action="store_true", help="re-run runs already completed with the same config")
    p.add_argument(
        "--no-tuned",
        action="store_true",
        help="ignore the tuned options exported by sweeps (sweeps/best/); rule defaults + --set only",
    )
    p.add_argument(
        "--tune",
        action="store_true",
        help="first sweep (equal budget, validation accuracy) every rule without tuned settings for its "
        "dataset and arch, then run the grid, then write the report; a second call sweeps nothing",
    )
    p.add_argument(
        "--tune-trials",
        type=int,
        default=None,
        help="trials per sweep of --tune (default: the protocol's; else custom)",
    )
    p.add_argument(
        "--tune-epochs", type=int, default=None, help="epochs per trial of --tune (default: the protocol's budget)"
    )
    p.add_argument(
        "--tune-limit-train",
        type=int,
        default=None,
        help="training samples per trial of --tune (default: the protocol's budget; 0: all)",
    )
    p.add_argument(
        "--tune-workers", type=int, default=1, help="worker processes per sweep of --tune (1: in this process)"
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="run only the profile's variants with KEY in the values, e.g. --only test_fraction=0.95,0.99",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="print each cell's state (completed, diverged, running elsewhere, failed, pending); run nothing",
    )
    p.add_argument(
        "--executor",
        choices=executor_names(),
        default="inline",
        help=executor_help(),
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes (local) or array tasks (slurm)")
    p.add_argument(
        "--workers-per-device",
        type=int,
        default=1,
        help="local with GPUs: workers sharing one GPU (small runs leave a GPU mostly idle)",
    )
    p.add_argument(
        "--cells-per-task",
        type=int,
        default=None,
        help="slurm: each array task runs a fixed chunk of this many cells (default: tasks pull cells)",
    )
    p.add_argument(
        "--slurm",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="submitit parameters, e.g. --slurm 'slurm_partition=gpu gpus_per_node=1 timeout_min=600'",
    )
    p.add_argument("--no-wait", action="store_true", help="slurm: submit the array and return")
    _add_run_options(p)

    for name, ep in sorted(plugins().items()):  # commands other packages bring (sweep, report, ...)
        sub.add_parser(name, help=f"see python -m bench {name} --help ({ep.value})", add_help=False)
    p = sub.add_parser("data", help="make sure a dataset's files are present (Debian package or download)")
    p.add_argument(
        "--datasets",
        type=_csv,
        default=None,
        help="comma-separated (default: the profile's, else "
        "fashion_mnist); resnet50:<name> computes and caches backbone features",
    )
    p.add_argument("--profile", default=None, help="take the datasets of this profile")
    p.add_argument("--data-dir", default=None)

    sub.add_parser("perf", help="harness vs plain PyTorch seconds per epoch", add_help=False)
    sub.add_parser(
        "doctor",
        help="every rule for a few dozen steps on this machine's accelerator: eager, compiled, two workers per "
        "device, DDP (make doctor)",
        add_help=False,
    )
    sub.add_parser(
        "perf-grid", help="wall time of a small grid inline vs local workers vs SLURM (make perf-grid)", add_help=False
    )
    sub.add_parser(
        "efficiency",
        help="memory, FLOPs, samples/s of one step per rule beside the theory (make efficiency)",
        add_help=False,
    )
    sub.add_parser(
        "claims",
        help="list the paper claims (reports/claims); --check validates them, --write rewrites their resolved settings",
        add_help=False,
    )
    return ap


def cmd_list(a: argparse.Namespace) -> int:
    import methods  # noqa: F401
    from bench.data import DATASETS, _import_modules
    from bench.profiles import PROFILES
    from methods.arch import ACTIVATIONS, INITS
    from methods.registry import get_rule, list_rules

    print("rules:")
    for name in list_rules():
        cls = get_rule(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"  {name:18s} archs={','.join(cls.arch_kinds):20s} default={cls.default_arch:22s} {doc}")
        if a.options:
            import textwrap

            for opt, desc in cls.Config.options().items():
                print(
                    textwrap.fill(f"{opt}: {desc}", width=118, initial_indent="      ", subsequent_indent="          ")
                )
    print("architectures (the string lists every layer after the input, C = class count):")
    for ex, what in [
        ("mlp:1024-C", "784-1024-10 on MNIST"),
        ("mlp:1000-34", "SPELA's 784-1000-34"),
        ("mlp:1000-1000-1000", "Forward-Forward's 3x1000"),
        ("cnn:32", "conv 32 5x5 s1 p2 (+act, 2x2 max-pool), Linear head to C"),
        ("cnn:32-32", "two conv layers"),
        ("resnet18", "ResNet-18 (32x32 inputs) in 8 blocks"),
        ("resnet18,blocks=16,skip=0", "skip-free ResNet-18 in 16 blocks"),
    ]:
        print(f"  {ex:28s} {what}")
    print(
        f"  options: act/out_act={'|'.join(ACTIVATIONS)} bias=0|1 init={'|'.join(INITS)}; "
        "cnn: fc=W-W kernel=K pool=max2|avg2|none head=0|1; mlp/cnn: binary=0|1; resnet18: blocks=8|16 skip=0|1"
    )
    _import_modules()  # datasets registered by $BENCH_MODULES
    print("datasets:")
    for d in DATASETS.values():
        print(f"  {d.name:14s} {d.shape[0]}x{d.shape[1]}x{d.shape[2]}, {d.num_classes} classes ({d.what})")
    from bench.features import BACKBONES, SOURCES

    print(
        f"  {'|'.join(BACKBONES)}:<{'|'.join(SOURCES)}>  frozen backbone features (transfer learning; "
        "computed once, cached under data/features)"
    )
    print("profiles:")
    for p in PROFILES.values():
        print(f"  {p.name:10s} {p.description}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    from bench.grid import run_config, untuned_note
    from bench.paths import check_writable, runs_root
    from bench.run import resolve, run

    pairs = _pairs(a.set)
    for key in pairs:  # --set pepita.lr=0.01 scopes lr to pepita: it is this run's option only when it runs pepita
        scope, dot, _ = key.partition(".")
        if dot and scope != a.method:
            raise ConfigError(
                f"option {key!r} is scoped to rule {scope!r}, but this run trains {a.method!r}; "
                f"use --method {scope} or --set {key.partition('.')[2]}=..."
            )
    # the grid's own cell: the same tuned settings (--no-tuned refuses them), sources and UNTUNED flag
    cfg = run_config(
        a.dataset, a.method, a.arch, a.seed, a.epochs, overrides=pairs, run=_run_fields(a), tuned=not a.no_tuned
    )
    res = resolve(cfg)
    if not a.dry_run:
        check_writable(runs_root(cfg.runs_dir))
    if a.dry_run:
        print(
            f"would run {res.name}: epochs={cfg.epochs} arch={res.arch.text} rule={res.canonical['rule']}"
            + untuned_note(cfg)
            + (f"  [tuned {cfg.protocol}: {cfg.rule_sources.get('lr', '')}]" if cfg.tuned else "")
        )
        return 0
    if cfg.tuned is False:
        print(untuned_note(cfg).strip(), file=sys.stderr)
    result = run(cfg, res)
    acc = f"{100 * result.test_acc:.2f}%" if result.test_acc is not None else "-"
    print(f"{result.status}: {result.name} test acc {acc}; record {result.record_path}")
    return 0 if result.status == "completed" else 1


def cmd_grid(a: argparse.Namespace) -> int:
    from bench.grid import GridSpec, Launch, run_grid
    from bench.paths import check_writable, runs_root

    if a.seeds is not None:
        a.seeds = _seeds(a.seeds)
    _nonempty(a, "datasets", "methods", "seeds")
    ex = executor_class(a.executor)
    if a.no_wait and not ex.detaches:
        raise ConfigError(f"--no-wait is for an executor whose workers outlive the launch (not {a.executor})")
    if a.cells_per_task is not None and (not ex.fixed_chunks or a.cells_per_task < 1):
        raise ConfigError("--cells-per-task takes a positive number of cells per SLURM array task (--executor slurm)")
    if a.workers_per_device < 1:
        raise ConfigError(f"--workers-per-device must be >= 1, got {a.workers_per_device}")
    if not a.dry_run and not a.status:
        check_writable(runs_root(a.runs_dir))
    spec = GridSpec(
        datasets=a.datasets,
        methods=a.methods,
        arch=a.arch,
        seeds=a.seeds,
        epochs=a.epochs,
        profile=a.profile,
        overrides=_pairs(a.set),
        run=_run_fields(a),
        tuned=not a.no_tuned,
        only=_only(a.only),
    )
    launch = Launch(
        executor=a.executor,
        workers=a.workers,
        workers_per_device=a.workers_per_device,
        cells_per_task=a.cells_per_task,
        slurm=_pairs(a.slurm),
        wait=not a.no_wait,
    )
    if a.tune:  # the sweeps package brings the tuning step (entry point bench.grid_hooks: tune)
        return plugin("bench.grid_hooks", "tune")(spec, a, launch)
    crashed = run_grid(spec, dry_run=a.dry_run, force=a.force, status=a.status, launch=launch)
    return 1 if crashed else 0


def cmd_data(a: argparse.Namespace) -> int:
    from bench.data import ensure_data
    from bench.profiles import get_profile

    _nonempty(a, "datasets")
    datasets = a.datasets or (get_profile(a.profile).datasets if a.profile else None) or ("fashion_mnist",)
    for name in datasets:
        print(ensure_data(name, a.data_dir))
    return 0


def rule_options_text(names: list[str]) -> str:
    """Every option of the named rules with its type, default and docstring (the config's field docstrings)."""
    import textwrap

    import methods  # noqa: F401
    from methods.registry import get_rule

    lines = []
    for name in names:
        cls = get_rule(name)
        lines.append(f"options of {name} (--set key=value, or {name}.key=value in a grid):")
        for opt, desc in cls.Config.options().items():
            lines += textwrap.wrap(f"{opt}: {desc}", width=118, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def _rule_help(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``run --method M --help`` / ``grid --methods M1,M2 --help``: the rules' options below the usual help."""
    names: list[str] = []
    for flag in ("--method", "--methods"):
        for i, tok in enumerate(argv):
            if tok == flag and i + 1 < len(argv):
                names += _csv(argv[i + 1])
            elif tok.startswith(flag + "="):
                names += _csv(tok.partition("=")[2])
    if not names or names == ["all"] or not argv:
        return
    try:
        text = rule_options_text(names)
    except ConfigError as e:
        text = f"({e})"
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = sub.choices.get(argv[0])
    if p is not None:
        p.epilog = text
        p.formatter_class = argparse.RawDescriptionHelpFormatter


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["perf"]:
        from bench.perf import main as perf_main

        return perf_main(argv[1:])
    if argv[:1] == ["doctor"]:
        from bench.doctor import main as doctor_main

        return doctor_main(argv[1:])
    if argv[:1] == ["perf-grid"]:
        from bench.perf_grid import main as perf_grid_main

        return exit_status(perf_grid_main, argv[1:])
    if argv[:1] == ["efficiency"]:
        from bench.efficiency import main as efficiency_main

        return efficiency_main(argv[1:])
    if argv[:1] == ["claims"]:
        from bench.claims import main as claims_main

        return claims_main(argv[1:])
    commands = plugins()
    if argv[:1] and argv[0] in commands:
        return commands[argv[0]].load()(argv[1:])
    parser = build_parser()
    if {"-h", "--help"} & set(argv):
        _rule_help(parser, argv)
    a = parser.parse_args(argv)
    own = {"list": cmd_list, "run": cmd_run, "grid": cmd_grid, "data": cmd_data}
    return exit_status(own[a.cmd], a)


def plugins(group: str = "bench.commands") -> dict:
    """Commands (and hooks) other packages of the project bring, declared as entry points in pyproject.toml: the
    harness runs them without importing the packages that build on it (``sweep``: sweeps.cli, ``report``:
    reports.cli)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def plugin(group: str, name: str):
    found = plugins(group).get(name)
    if found is None:
        raise ConfigError(f"{name!r} ({group}) is not installed: reinstall the project (pip install -e .; make does)")
    return found.load()
