"""Tuned parameters, exported by sweeps and picked up by ``make bench``.

One small JSON file per (dataset, rule): ``sweeps/best/<dataset>/<rule>.json``, keyed by the full
architecture string the parameters were tuned on, so an lr tuned for ``mlp:1024-C`` is never applied to
another network. Each entry keeps the study's budget and protocol beside the parameters (provenance).
An option given explicitly (``--set``) always wins over a tuned one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
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


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


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
    return dict(entry["params"]), f"{_show(best_file(dataset, method))}, study {entry.get('study', '?')}"


def export_best(study, spec, *, storage: str) -> Path | None:
    """Write the study's best parameters (searched + held fixed) into the rule's file; None without a completed trial."""
    from filelock import FileLock
    from optuna.trial import TrialState

    from sweeps.storage import redact

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        return None
    best = max(done, key=lambda t: t.value)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    entry = {
        "params": {**spec.fixed, **best.params},
        "searched": sorted(best.params),
        "val_acc": best.value,
        "trial": best.number,
        "study": study.study_name,
        "storage": redact(storage),
        "arch": spec.arch,
        "epochs": spec.epochs,
        "seed": spec.seed,
        "run": spec.run,
        "space": spec.space,
        "budget": {"complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
                   "failed": states.count(TrialState.FAIL)},
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = best_file(spec.dataset, spec.method)
    path.parent.mkdir(parents=True, exist_ok=True)
    # exports come from launchers (one per study); the lock only orders two launchers on one machine
    lock = Path(tempfile.gettempdir()) / f"bench-best-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    with FileLock(str(lock)):
        entries = read_entries(spec.dataset, spec.method)
        entries[spec.arch] = entry
        data = {"dataset": spec.dataset, "method": spec.method, "by_arch": dict(sorted(entries.items()))}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        tmp.replace(path)
    return path
