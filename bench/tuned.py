"""Tuned rule options: where the sweeps leave them and how a run finds them.

One small JSON file per (dataset, rule): ``sweeps/best/<dataset>/<rule>.json`` (``$BENCH_TUNED_DIR`` moves it), keyed
by the full architecture string the options were tuned on, so an lr tuned for ``mlp:1024-C`` is never applied to
another network. ``sweeps.best`` writes the files; the grid reads them through this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.paths import PROJECT_ROOT
from bench.paths import tuned_dir as best_dir
from bench.records import ran_untuned, stated_lr  # noqa: F401 - re-exported: what a record says about its options


def best_file(dataset: str, method: str) -> Path:
    return best_dir() / dataset / f"{method}.json"


def shown(path: Path) -> str:
    """``path`` relative to the project when it is inside it."""
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def read_entries(dataset: str, method: str, section: str = "by_arch") -> dict[str, Any]:
    """One section of the rule's tuned file: ``by_arch`` (entries under a protocol) or ``custom``."""
    path = best_file(dataset, method)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise BenchError(f"tuned-parameter file {path} is unreadable ({e}); fix or delete it") from None
    entries = data.get(section, {}) if isinstance(data, dict) else {}
    return entries if isinstance(entries, dict) else {}


@dataclass(frozen=True)
class Tuned:
    """What the tuned files hold for one (dataset, rule, arch) under the active protocol."""

    params: dict[str, Any]
    """The options to apply (empty: none usable)."""
    where: str | None
    """The file and study they came from."""
    protocol: str | None
    """The protocol of the applied entry (None: nothing applied)."""
    note: str = ""
    """Why an entry there was not applied (another budget), or that a shorter budget did not transfer."""
    transferred: bool | None = None
    """The transfer check of a shorter tuning budget: True passed, False failed, None not needed or not run."""


def lookup(dataset: str, method: str, arch: str | None, protocol: str | None = None) -> Tuned:
    """The tuned entry for (dataset, rule, arch) made under ``protocol`` (default: the active one, v1; ``custom``: the
    latest custom-budget export). An entry made under another budget (an older file without a protocol, a custom
    sweep when v1 is asked for) is not used, and ``note`` says so."""
    import methods  # noqa: F401 - registers the rules
    from bench.data import get_dataset_info
    from bench.protocol import CUSTOM, get_protocol
    from methods.registry import get_rule

    name = CUSTOM if protocol == CUSTOM else get_protocol(protocol).name
    try:
        arch_text = get_rule(method).parse_arch(arch, get_dataset_info(dataset).num_classes).text
    except BenchError:
        return Tuned({}, None, None)
    entry = read_entries(dataset, method).get(arch_text)
    custom = read_entries(dataset, method, section="custom").get(arch_text)
    if name == CUSTOM:
        entry, custom = custom, entry
    if not entry or entry.get("protocol") != name:
        other = entry or custom
        if not other:
            return Tuned({}, None, None)
        made = other.get("protocol") or f"an unversioned budget ({other.get('epochs', '?')} epochs)"
        wanted = "a custom budget" if name == CUSTOM else f"protocol {name}"
        return Tuned({}, None, None, f"the tuned entry there was made under {made}, not {wanted}: not used")
    where = f"{shown(best_file(dataset, method))}, study {entry.get('study', '?')}"
    check = entry.get("transfer")
    ok = None if not isinstance(check, dict) else bool(check.get("ok"))
    note = (
        f"tuned at a shorter budget and did not transfer: {check.get('summary', '')}".rstrip(": ")
        if ok is False
        else ""
    )
    return Tuned(dict(entry["params"]), where, name, note, ok)


def tuned_params(dataset: str, method: str, arch: str | None) -> tuple[dict[str, Any], str | None]:
    """The tuned rule options for (dataset, rule, arch) under the active protocol and where they came from; ({}, None)
    when there are none (or when the arch does not parse for the rule: the grid's validation reports that)."""
    t = lookup(dataset, method, arch)
    return t.params, t.where
