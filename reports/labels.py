"""How runs are named in tables and figures: the papers' rule names, plus the options that set a run apart."""

from __future__ import annotations

import functools
import json
from typing import Any

ABLATION_SUFFIX = {
    ("loss", "euclidean"): "-Euc",
    ("loss", "euclidean_ref"): "-Euc(code)",
    ("vectors", "random"): "-Rand",
}
"""SPELA Table 6's row names for option values (±1 weights, from the arch, give -Bin)."""
UNTUNED = "†"
"""Mark of a row whose runs had no tuned settings for their dataset, rule and arch (the rule's defaults ran)."""
UNTUNED_NOTE = (
    "† untuned: no tuned settings (sweeps/best/) for this dataset, rule and architecture; the rule ran on "
    "its defaults. make bench ARGS=--tune runs the equal-budget sweeps first."
)
HIDDEN = {"align_every"}
"""Options that never set a run apart (diagnostics)."""
ARCH_LABELLED = ("act", "out_act", "bias", "init")
"""Architecture options named in a label when they differ from the rule's own."""
RUN_NAMES = {"batch_size": "batch", "limit_train": "train samples"}
"""How run options (batch size, subset) are named in a label."""


def method_name(method: str) -> str:
    """The rule's display name: as its runs' records state it (``display_name``), else the registered rule's
    ``label()`` (efficiency measurements carry no record), else the registry name (a rule no longer registered)."""
    if method in _DISPLAY:
        return _DISPLAY[method]
    return _registered_label(method)


@functools.cache
def _registered_label(method: str) -> str:
    try:
        import methods  # noqa: F401
        from methods.registry import get_rule

        return get_rule(method).label()
    except Exception:  # noqa: BLE001 - an old run of a removed rule
        return method


_DISPLAY: dict[str, str] = {}
_RULE_DEFAULTS: dict[str, dict[str, Any]] = {}
_ARCH_DEFAULTS: dict[tuple[str, str], str] = {}


def learn(method: str | None, arch_full: str | None, facts: dict[str, Any] | None) -> None:
    """Remember what a run's record says about its rule (default options, the architecture the rule builds from the
    same layers): labels are made from records, without importing the rules."""
    if not method or not facts:
        return
    if facts.get("rule_defaults") is not None:
        _RULE_DEFAULTS[method] = dict(facts["rule_defaults"])
    if facts.get("display_name"):
        _DISPLAY[method] = facts["display_name"]
    if arch_full and facts.get("arch_default"):
        _ARCH_DEFAULTS[(method, arch_full.split(",", 1)[0])] = facts["arch_default"]


def rule_defaults(method: str) -> dict[str, Any]:
    """The rule's default options as its runs' records state them (empty when no record said)."""
    return _RULE_DEFAULTS.get(method, {})


def changed_options(method: str, rule: str | dict | None) -> dict[str, Any]:
    """Options of a run that differ from its rule's defaults (diagnostics left out)."""
    opts = json.loads(rule) if isinstance(rule, str) else dict(rule or {})
    defaults = rule_defaults(method)
    return {k: v for k, v in sorted(opts.items()) if k not in HIDDEN and k in defaults and defaults[k] != v}


def changed_arch_options(method: str, arch_full: str | None) -> dict[str, str]:
    """Unit options of a run's architecture (``ARCH_LABELLED``) that differ from what the rule fills in for the
    same layers; the structure (widths, blocks, skips, ±1 weights) is the architecture column's."""
    if not arch_full or "," not in arch_full:
        return {}
    default = _ARCH_DEFAULTS.get((method, arch_full.split(",", 1)[0]))
    if default is None:
        return {}

    def options(text: str) -> dict[str, str]:
        return dict(part.split("=", 1) for part in text.split(",")[1:] if "=" in part)

    theirs = options(default)
    return {k: v for k, v in options(arch_full).items() if k in ARCH_LABELLED and theirs.get(k) != v}


def is_binary(arch_full: str | None) -> bool:
    return "binary=1" in str(arch_full or "")


def is_untuned(tuned: Any) -> bool:
    """A run the grid recorded as untuned (``"tuned": false``); runs from before the flag existed are not marked."""
    if isinstance(tuned, str):
        return tuned.lower() == "false"
    return tuned is not None and bool(tuned == False)  # noqa: E712 - numpy's bool from a DataFrame is not `False`


def mark_untuned(label: str, tuned: Any) -> str:
    return f"{label} {UNTUNED}" if is_untuned(tuned) else label


def run_label(
    method: str,
    rule: str | dict | None,
    arch_full: str | None = None,
    ablation: bool = False,
    show: tuple[str, ...] | None = None,
    run_options: str | dict | None = None,
) -> str:
    """``BP``, ``SPELA(O)-Euc``, ``BP [lr=0.01]``: the rule's name and what sets the run apart from its defaults.
    ``ablation``: SPELA Table 6's suffixes (-Euc, -Rand, -Bin); ``show``: only these options in brackets."""
    name = method_name(method)
    opts = changed_options(method, rule)
    if ablation:
        for (k, v), suffix in ABLATION_SUFFIX.items():
            if opts.get(k) == v:
                name += suffix
                opts.pop(k)
    if is_binary(arch_full):  # the papers' name for ±1 weights (SPELA Table 6: BP-Bin, SPELA(O)-Bin), in every table
        name += "-Bin"
    if show is not None:
        opts = {k: v for k, v in opts.items() if k in show}
    opts.update(changed_arch_options(method, arch_full))
    run = json.loads(run_options) if isinstance(run_options, str) else dict(run_options or {})
    opts.update({RUN_NAMES.get(k, k): v for k, v in run.items()})
    tags = []
    for tag, (recipe_method, items) in recipes().items():
        if method == recipe_method and all(k in opts and _short(opts[k]) == v for k, v in items.items()):
            tags.append(tag)
            opts = {k: v for k, v in opts.items() if k not in items}
    if tags or opts:
        name += " [" + ", ".join(tags + [f"{k}={_short(v)}" for k, v in opts.items()]) + "]"
    return name


@functools.cache
def recipes() -> dict[str, tuple[str, dict[str, str]]]:
    """Named training recipes a label shows by name instead of option by option: tag -> (rule, {option: value})
    (the loss stays spelled out: Table 6 rows differ in it)."""
    from methods.spela import AUTHORS_CODE_ARCH as SPELA_CODE_ARCH
    from methods.spela import AUTHORS_CODE_RULE as SPELA_CODE_RULE
    from methods.spela import AUTHORS_CODE_RUN as SPELA_CODE_RUN

    arch = dict(part.split("=", 1) for part in SPELA_CODE_ARCH.split(",")[1:])
    items = {
        **{k: _short(v) for k, v in SPELA_CODE_RULE.items() if k != "loss"},
        **arch,
        **{RUN_NAMES.get(k, k): _short(v) for k, v in SPELA_CODE_RUN.items()},
    }
    return {"authors' code": ("spela_o", items)}


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"  # 3 significant figures: a tuned lr reads 0.0726, not 0.07257005
    if isinstance(v, list):
        return "/".join(_short(x) for x in v)
    return str(v)
