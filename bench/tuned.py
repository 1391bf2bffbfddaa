"""Tuned rule options: where the sweeps leave them and how a run finds them.

One small JSON file per (dataset, rule): ``sweeps/best/<dataset>/<rule>.json`` (``$BENCH_TUNED_DIR`` moves it), keyed
by the full architecture string the options were tuned on, so an lr tuned for ``mlp:1024-C`` is never applied to
another network. ``sweeps.best`` writes the files; the grid reads them through this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.paths import PROJECT_ROOT

BEST_DIR = PROJECT_ROOT / "sweeps" / "best"


def best_dir() -> Path:
    """$BENCH_TUNED_DIR, else sweeps/best in the project."""
    return Path(os.environ.get("BENCH_TUNED_DIR") or BEST_DIR).expanduser()


def best_file(dataset: str, method: str) -> Path:
    return best_dir() / dataset / f"{method}.json"


def shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def stated_lr(rule_sources: dict[str, str] | None) -> bool:
    """True when a profile, a claim or ``--set`` gave the run's learning rate (not a tuned file, not the default)."""
    source = (rule_sources or {}).get("lr")
    return source is not None and not str(source).startswith("tuned")


def ran_untuned(tuned: bool | None, rule_sources: dict[str, str] | None) -> bool:
    """A run on the rule's defaults: no tuned settings applied (``tuned`` False) and no stated learning rate. Records
    the grid wrote before it told the two apart stored False for a claim's or profile's own settings too."""
    return tuned is False and not stated_lr(rule_sources)


def read_entries(dataset: str, method: str) -> dict[str, Any]:
    path = best_file(dataset, method)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"tuned-parameter file {path} is unreadable ({e}); fix or delete it") from None
    return data.get("by_arch", {}) if isinstance(data, dict) else {}


def tuned_params(dataset: str, method: str, arch: str | None) -> tuple[dict[str, Any], str | None]:
    """The tuned rule options for (dataset, rule, arch) and where they came from; ({}, None) when there are none
    (or when the arch does not parse for the rule: the grid's validation reports that)."""
    import methods  # noqa: F401 - registers the rules
    from bench.data import get_dataset_info
    from methods.registry import get_rule

    try:
        arch_text = get_rule(method).parse_arch(arch, get_dataset_info(dataset).num_classes).text
    except BenchError:
        return {}, None
    entry = read_entries(dataset, method).get(arch_text)
    if not entry:
        return {}, None
    return dict(entry["params"]), f"{shown(best_file(dataset, method))}, study {entry.get('study', '?')}"
