"""Command-line options shared by every command that runs training (``run``, ``grid``, ``sweep``): parsing of
lists, ``key=value`` pairs and the run fields."""

from __future__ import annotations

import argparse
from typing import Any

from bench.errors import ConfigError


def csv_list(s: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in s.split(",") if p.strip())


def seed_list(s: str) -> tuple[int, ...]:
    """``0,1,2``, ``0-19`` (a range, both ends included) or both (``0-4,10``); anything else is one ``ConfigError``
    line (range checks of each seed come later, with the run's)."""
    seeds: list[int] = []
    for part in csv_list(s):
        lo, dash, hi = part.partition("-")
        try:  # a range lo-hi; a leading '-' is a negative seed, refused later as out of range
            ends = (int(lo), int(hi)) if dash and lo else (int(part), int(part))
        except ValueError:
            raise ConfigError(
                f"--seeds takes comma-separated integers or ranges low-high (e.g. 0,1,2 or 0-19), got {s!r}"
            ) from None
        if ends[1] < ends[0]:
            raise ConfigError(f"--seeds range {part!r} is empty (write it low-high)")
        seeds += range(ends[0], ends[1] + 1)
    return tuple(seeds)


def refuse_empty(a: argparse.Namespace, *names: str) -> None:
    """A list option given but empty (``--methods ""``) would silently mean 'all' or 'nothing': refuse it."""
    for name in names:
        if getattr(a, name, None) == ():
            raise ConfigError(
                f"--{name} is empty; give comma-separated values" + (" (or all)" if name == "methods" else "")
            )


def parse_pairs(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        for tok in item.split():
            key, eq, value = tok.partition("=")
            if not eq or not key:
                raise ConfigError(f"--set takes key=value (or method.key=value), got {tok!r}")
            out[key] = value
    return out


def parse_only(items: list[str]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for item in items or []:
        key, eq, values = item.partition("=")
        if not eq or not key or not csv_list(values):
            raise ConfigError(f"--only takes key=value[,value...] (e.g. test_fraction=0.95,0.99), got {item!r}")
        out[key.strip()] = csv_list(values)
    return out


def run_fields(a: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in (
        "batch_size",
        "data_dir",
        "runs_dir",
        "wandb",
        "limit_train",
        "limit_eval",
        "val_fraction",
        "norm",
        "test_fraction",
        "accelerator",
        "devices",
        "strategy",
        "num_nodes",
        "steps_per_call",
    ):
        v = getattr(a, name, None)
        if v is not None:
            fields[name] = v
    if getattr(a, "download", False):
        fields["download"] = True
    if getattr(a, "augment", False):
        fields["augment"] = True
    if getattr(a, "compile", False):
        fields["compile"] = True
    if getattr(a, "no_progress", False):
        fields["progress"] = False
    return fields


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", default=None, help="architecture string, e.g. mlp:1024-C (default: each rule's own)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="rule option, e.g. --set lr=0.01 or --set pepita.lr=0.01 (repeatable); a rule's options: "
        "--method M --help, or python -m bench list --options",
    )
    p.add_argument("--data-dir", default=None, help="dataset folder (default $BENCH_DATA_DIR or ./data)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets")
    p.add_argument("--runs-dir", default=None, help="run records and W&B files (default $BENCH_RUNS_DIR or ./runs)")
    p.add_argument(
        "--wandb",
        choices=("offline", "online", "disabled"),
        default=None,
        help="W&B mode (default offline; $BENCH_WANDB)",
    )
    p.add_argument("--limit-train", type=int, default=None, help="train on only this many samples")
    p.add_argument("--limit-eval", type=int, default=None, help="validate/test on only this many samples")
    p.add_argument("--val-fraction", type=float, default=None, help="share of the training set held out (0.1)")
    p.add_argument("--test-fraction", type=float, default=None, help="few-shot protocol: merged test share")
    p.add_argument("--norm", choices=("standard", "unit"), default=None)
    p.add_argument("--augment", action="store_true", help="random crop + flip (32x32 colour datasets)")
    p.add_argument("--accelerator", default=None, help="Lightning accelerator (auto, cpu, gpu)")
    p.add_argument("--devices", default=None, help="devices per node")
    p.add_argument("--strategy", default=None, help="Lightning strategy (auto, ddp, ...)")
    p.add_argument("--num-nodes", type=int, default=None, help="nodes of a multi-node run (DDP; e.g. under SLURM)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the rule's step (SPELA, SPELA(O), PEPITA) or its network (others); off by default",
    )
    p.add_argument(
        "--steps-per-call",
        type=int,
        default=None,
        help="optimiser steps per call of the training loop (default 8; same results for any value)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
