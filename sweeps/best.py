"""Tuned parameters, exported by sweeps and picked up by ``make bench``.

One small JSON file per (dataset, rule): ``sweeps/best/<dataset>/<rule>.json``. ``by_arch`` holds the entries tuned
under the protocol (``protocol: "v1"``), keyed by the full architecture string the parameters were tuned on, so an lr
tuned for ``mlp:1024-C`` is never applied to another network; ``custom`` holds, per arch, the latest export of a sweep
with another budget (never used as v1 settings). Each entry keeps the study's budget, protocol, the defaults' trial
and (for a shorter tuning budget) the transfer check beside the parameters. An explicit option (``--set``) always
wins over a tuned one.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.records import atomic_write_text
from bench.tuned import best_file, read_entries, shown


@dataclass
class Export:
    """What ``export_best`` did: ``path`` of the rule's file (None: no completed trial), ``written`` False when the
    entry already there was kept, ``message`` one line saying which and why."""

    path: Path | None
    written: bool
    message: str


def budget_of(entry: dict[str, Any]) -> dict[str, float]:
    """An entry's budget: epochs per trial, training samples per trial (no limit: the whole split), finished trials."""
    b = entry.get("budget") or {}
    limit = (entry.get("run") or {}).get("limit_train")
    return {
        "epochs": float(entry.get("epochs") or 0),
        "training samples": math.inf if limit is None else float(limit),
        "finished trials": float(b.get("complete", 0) + b.get("pruned", 0)),
    }


def protocol_of(entry: dict[str, Any]) -> dict[str, Any]:
    """What an entry's validation accuracy measures, beyond the budget: the run settings (batch size, split,
    normalisation, ...) and the rule options held fixed."""
    searched = set(entry.get("searched") or ())
    return {
        "run": {k: v for k, v in (entry.get("run") or {}).items() if k != "limit_train"},
        "fixed": {k: v for k, v in (entry.get("params") or {}).items() if k not in searched},
    }


def _describe(entry: dict[str, Any]) -> str:
    b = budget_of(entry)
    samples = "all" if b["training samples"] == math.inf else f"{b['training samples']:.0f}"
    return (
        f"val/acc {entry.get('val_acc', float('nan')):.4f} from {b['finished trials']:.0f} trials x "
        f"{b['epochs']:.0f} epochs x {samples} training samples (study {entry.get('study', '?')})"
    )


def keep_reason(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """Why the ``old`` entry must not be replaced by ``new`` (None: it may be): a different protocol, or a larger
    budget in any of epochs, training samples or finished trials."""
    if protocol_of(old) != protocol_of(new):
        a, b = protocol_of(old), protocol_of(new)
        diff = [
            f"{part} {k}: {a[part].get(k)!r} vs {b[part].get(k)!r}"
            for part in ("run", "fixed")
            for k in sorted(set(a[part]) | set(b[part]), key=str)
            if a[part].get(k) != b[part].get(k)
        ]
        return "it was tuned under a different protocol (" + "; ".join(diff) + ")"
    bo, bn = budget_of(old), budget_of(new)
    larger = [f"{k} {'all' if bo[k] == math.inf else f'{bo[k]:.0f}'} > {bn[k]:.0f}" for k in bo if bo[k] > bn[k]]
    if larger:
        return "it was tuned with a larger budget (" + ", ".join(larger) + ")"
    return None


def best_trial(study):
    """The completed trial with the highest validation accuracy; on a tie the earlier one (the defaults' trial, trial
    0, wins ties)."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def defaults_of(study) -> dict[str, Any] | None:
    """The defaults' trial of a study (enqueued as trial 0 under the protocol): its number, state and value."""
    from sweeps.study import DEFAULTS_ATTR

    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get(DEFAULTS_ATTR):
            return {"trial": t.number, "state": t.state.name.lower(), "val_acc": t.value, "params": dict(t.params)}
    return None


def export_best(
    study, spec, *, storage: str, force: bool = False, budget: int | None = None, transfer: dict | None = None
) -> Export:
    """Write the study's best parameters (searched + held fixed) into the rule's file: a v1 study (``spec.protocol``,
    with at least the protocol's trials finished) into ``by_arch``, any other into ``custom``. A custom entry already
    there with a larger budget or under other run settings is kept (``keep_reason``); ``force`` replaces it anyway.
    ``transfer``: the transfer check of a shorter tuning budget, stored with the entry."""
    from filelock import FileLock
    from optuna.trial import TrialState

    from bench.protocol import CUSTOM, get_protocol
    from sweeps.storage import redact

    best = best_trial(study)
    if best is None:
        return Export(None, False, "no completed trial: nothing exported")
    states = [t.state for t in study.get_trials(deepcopy=False)]
    finished = states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED)
    protocol = get_protocol()
    name = spec.protocol if spec.protocol == protocol.name and finished >= (budget or protocol.trials) else CUSTOM
    defaults = defaults_of(study)
    entry = {
        "protocol": name,
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
        "budget": {
            "complete": states.count(TrialState.COMPLETE),
            "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL),
        },
        "defaults": defaults,
        "defaults_won": bool(defaults and defaults["trial"] == best.number),
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    entry["budget"]["limit_train"] = (spec.run or {}).get("limit_train")
    if name == protocol.name:
        entry["tuning"] = "short" if protocol.is_short(spec.method) else "evaluation budget"
        entry["evaluation_epochs"] = protocol.evaluation_epochs(spec.method)
    # every finished trial (the report's learning-rate sensitivity figure reads them)
    entry["trials"] = [
        {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": dict(t.params)}
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    for t in entry["trials"]:  # a pruned trial's value: its last reported validation accuracy
        if t["value"] is None:
            tr = study.trials[t["number"]]
            t["value"] = tr.intermediate_values[max(tr.intermediate_values)] if tr.intermediate_values else None
    if transfer is not None:
        entry["transfer"] = transfer
    path = best_file(spec.dataset, spec.method)
    path.parent.mkdir(parents=True, exist_ok=True)
    # exports come from launchers (one per study); the lock only orders two launchers on one machine
    lock = (
        Path(tempfile.gettempdir()) / f"bench-best-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]}.lock"
    )
    with FileLock(str(lock)):
        entries = read_entries(spec.dataset, spec.method)
        custom = read_entries(spec.dataset, spec.method, section="custom")
        section = entries if name == protocol.name else custom
        old = section.get(spec.arch)
        if transfer is None and old and old.get("study") == entry["study"] and old.get("transfer"):
            entry["transfer"] = old["transfer"]  # a re-export (--export-only) keeps the study's transfer check
        why = keep_reason(old, entry) if old and not force and name == CUSTOM else None
        if why:
            return Export(
                path,
                False,
                f"kept {shown(path)} for {spec.arch}: {_describe(old)}, not this study's "
                f"{_describe(entry)}: {why}; --export-force replaces it",
            )
        section[spec.arch] = entry
        data = {"dataset": spec.dataset, "method": spec.method, "by_arch": dict(sorted(entries.items()))}
        if custom:
            data["custom"] = dict(sorted(custom.items()))
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    replaced = f" (replaced {_describe(old)}{', forced' if force and keep_reason(old, entry) else ''})" if old else ""
    where = (
        f"protocol {name}"
        if name == protocol.name
        else f"custom budget, not protocol {protocol.name}: stored under 'custom', not used by the grid"
    )
    won = "; the defaults won (exported as the tuned setting)" if entry["defaults_won"] else ""
    return Export(path, True, f"best parameters -> {shown(path)} ({where}): {_describe(entry)}{won}{replaced}")
