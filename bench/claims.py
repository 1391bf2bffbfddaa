"""Paper claims as data: ``reports/claims/<paper>.toml``, one entry per number a paper reports that the harness can run.

A claims file holds the paper's name, title and source, ``[defaults]`` for every claim of the file, then
``[[group]]`` tables (fields shared by a table's numbers) each with a ``claims`` list of inline tables::

    paper = "spela"
    title = "Learning Using a Single Forward Pass (SPELA)"
    source = "arXiv 2402.09769, later revision"

    [defaults]
    seeds = [0, 1, 2, 3, 4]
    val_fraction = 0.0

    [[group]]
    where = "Table 3"
    method = "spela_o"
    arch = "mlp:1000-34"
    epochs = 100
    claims = [
      { id = "t3-fmnist-out", dataset = "fashion_mnist", metric = "test/acc", value = 89.77, std = 0.24 },
    ]

A claim's fields are the file's defaults, then its group's, then its own (``rule`` tables are merged key by key).
Loading (``load_claims``) needs no torch: it checks the schema only. ``validate_claims`` resolves every claim to the
run config ``make bench PROFILE=claims`` runs (known dataset and rule, arch parses, rule options valid); its canonical
settings are kept in ``reports/claims/resolved.json`` (``python -m bench claims --write``) so reports match run records
to claims without importing the training code.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.fmt import pm
from bench.paths import PROJECT_ROOT

CLAIMS_DIR = PROJECT_ROOT / "reports" / "claims"
RESOLVED = "resolved.json"
"""File (in the claims folder) with every claim's canonical settings (``python -m bench claims --write``)."""

RUN_KEYS = ("test_fraction", "val_fraction", "batch_size", "norm", "augment")
"""Run-level settings (RunConfig fields) a claim may fix; the rest are RunConfig defaults."""
_TEXT_KEYS = ("where", "label", "paper_hparams", "source", "note")
_KEYS = {
    "id",
    "dataset",
    "method",
    "arch",
    "epochs",
    "seeds",
    "metric",
    "value",
    "std",
    "n_paper",
    "rule",
    *RUN_KEYS,
    *_TEXT_KEYS,
}
_REQUIRED = ("id", "where", "dataset", "method", "arch", "epochs", "seeds", "metric", "value", "source")
METRICS = ("test/acc", "test/acc5")
"""Metrics of a claim: the prediction's top-1 or top-5 test accuracy, or ``test/acc/<exit>`` (an early-exit read-out,
e.g. ``test/acc/layer1``); all in percent in the claims files, as fractions in run records."""


@dataclass(frozen=True)
class Claim:
    """One number a paper reports, with the settings that reproduce it in this harness."""

    paper: str
    id: str
    where: str
    """Table or figure (and row) of the paper."""
    dataset: str
    method: str
    arch: str
    epochs: int
    seeds: tuple[int, ...]
    metric: str
    value: float
    """The paper's number, in percent."""
    source: str
    std: float | None = None
    n_paper: int | None = None
    """How many runs the paper averaged (when it says)."""
    rule: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    """RunConfig fields of RUN_KEYS the claim fixes (test_fraction, val_fraction, batch_size, norm, augment)."""
    label: str = ""
    paper_hparams: str = ""
    """The paper's stated hyperparameters, in its words."""
    note: str = ""
    title: str = ""

    @property
    def key(self) -> str:
        """``<paper>/<id>``: unique over all claims files; ``--only claim=<key>`` selects it."""
        return f"{self.paper}/{self.id}"

    @property
    def protocol(self) -> str:
        tf, vf = self.run.get("test_fraction"), self.run.get("val_fraction")
        if tf is not None:
            text = f"train+test merged, {100 * tf:g}% test"
        else:
            text = "standard split"
            if vf is not None:
                text += ", all training images" if vf == 0 else f", {100 * vf:g}% of training held out"
        return text + (", augmented" if self.run.get("augment") else "")

    def describe(self) -> str:
        """Short text for a table row."""
        what = self.label or f"{self.method} {self.arch}"
        exit_ = self.metric.removeprefix("test/acc/") if self.metric.startswith("test/acc/") else ""
        metric = {"test/acc": "", "test/acc5": ", top-5"}.get(self.metric, f", read-out {exit_}")
        return f"{self.where}: {what}, {self.dataset}{metric}, {self.epochs} ep., {self.protocol}"

    def command(self) -> str:
        """The exact ``make bench`` command that runs this claim's settings."""
        return f"make bench PROFILE=claims DATASET={self.dataset} METHODS={self.method} ARGS='--only claim={self.key}'"

    def variant(self) -> dict[str, Any]:
        """This claim as a variant of the ``claims`` grid profile (see bench/profiles.py)."""
        return {
            "claim": self.key,
            "paper": self.paper,
            "methods": (self.method,),
            "datasets": (self.dataset,),
            "exact_dataset": True,
            "arch": self.arch,
            "rule": dict(self.rule),
            "epochs": self.epochs,
            "seeds": self.seeds,
            **self.run,
        }


def _fail(where: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {msg}")


def _claim(raw: dict[str, Any], paper: str, title: str, where: str) -> Claim:
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(where, f"unknown field(s) {', '.join(unknown)}; fields are {', '.join(sorted(_KEYS))}")
    missing = [k for k in _REQUIRED if raw.get(k) in (None, "")]
    if missing:
        raise _fail(where, f"missing {', '.join(missing)}")
    for k in ("id", "dataset", "method", "arch", "metric", *_TEXT_KEYS):
        if k in raw and not isinstance(raw[k], str):
            raise _fail(where, f"{k} must be text, got {raw[k]!r}")
    if not isinstance(raw["epochs"], int) or raw["epochs"] < 1:
        raise _fail(where, f"epochs must be an integer >= 1, got {raw['epochs']!r}")
    seeds = raw["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and s >= 0 for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise _fail(where, f"seeds must be a non-empty list of distinct integers >= 0, got {seeds!r}")
    metric = raw["metric"]
    if metric not in METRICS and not (metric.startswith("test/acc/") and len(metric) > len("test/acc/")):
        raise _fail(
            where, f"metric {metric!r}; choose one of {', '.join(METRICS)} or test/acc/<exit> (e.g. test/acc/layer1)"
        )
    value, std = raw["value"], raw.get("std")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 100.0:
        raise _fail(where, f"value is an accuracy in percent in [0, 100], got {value!r}")
    if std is not None and (isinstance(std, bool) or not isinstance(std, (int, float)) or not 0.0 <= std <= 100.0):
        raise _fail(where, f"std is in percent points in [0, 100], got {std!r}")
    n_paper = raw.get("n_paper")
    if n_paper is not None and (not isinstance(n_paper, int) or n_paper < 1):
        raise _fail(where, f"n_paper must be an integer >= 1, got {n_paper!r}")
    rule = raw.get("rule", {})
    if not isinstance(rule, dict):
        raise _fail(where, f"rule must be a table of rule options, got {rule!r}")
    tf = raw.get("test_fraction")
    if tf is not None and not (isinstance(tf, (int, float)) and 0.0 < tf < 1.0):
        raise _fail(where, f"test_fraction must be in (0, 1), got {tf!r}")
    return Claim(
        paper=paper,
        id=raw["id"],
        where=raw["where"],
        dataset=raw["dataset"],
        method=raw["method"],
        arch=raw["arch"],
        epochs=raw["epochs"],
        seeds=tuple(seeds),
        metric=metric,
        value=float(value),
        std=None if std is None else float(std),
        n_paper=n_paper,
        source=raw["source"],
        rule=dict(rule),
        run={k: raw[k] for k in RUN_KEYS if k in raw},
        label=raw.get("label", ""),
        paper_hparams=raw.get("paper_hparams", ""),
        note=raw.get("note", ""),
        title=title,
    )


def parse_claims(text: str, name: str = "<claims>") -> list[Claim]:
    """The claims of one file's text (schema checks only; see ``validate_claims``)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{name}: not valid TOML: {e}") from None
    paper = doc.get("paper")
    if not isinstance(paper, str) or not paper or "/" in paper:
        raise ConfigError(f"{name}: needs paper = \"<short name>\" (no '/')")
    unknown = sorted(set(doc) - {"paper", "title", "source", "defaults", "group"})
    if unknown:
        raise ConfigError(
            f"{name}: unknown top-level key(s) {', '.join(unknown)}; use paper, title, source, [defaults] and [[group]]"
        )
    base = {"source": doc.get("source", ""), **doc.get("defaults", {})}
    claims: list[Claim] = []
    for g, group in enumerate(doc.get("group", [])):
        entries = group.get("claims")
        if not isinstance(entries, list) or not entries:
            raise ConfigError(f"{name}: group {g + 1} ({group.get('where', '?')}) has no claims list")
        shared = {k: v for k, v in group.items() if k != "claims"}
        for entry in entries:
            raw = {**base, **shared, **entry}
            raw["rule"] = {**base.get("rule", {}), **shared.get("rule", {}), **entry.get("rule", {})}
            claims.append(_claim(raw, paper, doc.get("title", ""), f"{name}: claim {entry.get('id', '?')!r}"))
    if not claims:
        raise ConfigError(f"{name}: no claims")
    return claims


def claim_files(folder: str | Path | None = None) -> list[Path]:
    return sorted(Path(folder or CLAIMS_DIR).glob("*.toml"))


def load_claims(folder: str | Path | None = None) -> list[Claim]:
    """Every claim of ``folder`` (default reports/claims), in file order; ids must be unique per paper."""
    claims: list[Claim] = []
    for path in claim_files(folder):
        claims += parse_claims(path.read_text(), path.name)
    seen: set[str] = set()
    for c in claims:
        if c.key in seen:
            raise ConfigError(f"claim {c.key!r} is defined twice")
        seen.add(c.key)
    return claims


def run_configs(claim: Claim, seeds: tuple[int, ...] | None = None) -> list:
    """The RunConfigs ``PROFILE=claims`` runs for ``claim`` (its own seeds unless ``seeds`` is given)."""
    from bench.run import RunConfig

    return [
        RunConfig(
            dataset=claim.dataset,
            method=claim.method,
            arch=claim.arch,
            seed=s,
            epochs=claim.epochs,
            rule=dict(claim.rule),
            group="claims",
            **claim.run,
        )
        for s in (seeds or claim.seeds)
    ]


def setting(canonical: dict[str, Any]) -> dict[str, Any]:
    """A canonical run config without its seed: what the runs of one claim share."""
    return {k: v for k, v in canonical.items() if k != "seed"}


def validate_claims(claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """Resolve every claim (dataset, rule, arch, options; imports the rules); returns key -> canonical setting.
    Every problem is reported at once."""
    from bench.errors import BenchError
    from bench.run import resolve

    out, problems = {}, []
    for c in claims:
        try:
            out[c.key] = setting(resolve(run_configs(c, c.seeds[:1])[0]).canonical)
        except BenchError as e:
            problems.append(f"  {c.key}: {e}")
    if problems:
        raise ConfigError("claims that cannot run:\n" + "\n".join(problems))
    return out


def _jsonable(settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def write_resolved(folder: str | Path | None = None) -> Path:
    """Validate every claim and write their canonical settings to ``<folder>/resolved.json``."""
    folder = Path(folder or CLAIMS_DIR)
    settings = validate_claims(load_claims(folder))
    path = folder / RESOLVED
    rows = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(_jsonable(settings).items())]
    path.write_text("{\n" + ",\n".join(rows) + "\n}\n")  # one claim per line: a settings change is a one-line diff
    return path


def load_resolved(folder: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The canonical settings written by ``write_resolved`` (empty when the file is missing)."""
    path = Path(folder or CLAIMS_DIR) / RESOLVED
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def stale_resolved(folder: str | Path | None = None) -> list[str]:
    """Claims whose stored settings differ from what they resolve to now (empty: resolved.json is up to date)."""
    folder = Path(folder or CLAIMS_DIR)
    now = _jsonable(validate_claims(load_claims(folder)))
    stored = load_resolved(folder)
    return sorted(k for k in set(now) | set(stored) if now.get(k) != stored.get(k))


def main(argv: list[str] | None = None) -> int:
    """``python -m bench claims``: list the claims; ``--check`` validates them and resolved.json; ``--write``
    rewrites it."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bench claims", description=main.__doc__)
    ap.add_argument("--dir", default=None, help="claims folder (default reports/claims)")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--check", action="store_true", help="validate every claim; fail if resolved.json is stale")
    what.add_argument("--write", action="store_true", help="validate every claim and rewrite resolved.json")
    a = ap.parse_args(argv)
    from bench.errors import exit_status

    def run(_: Any) -> int:
        claims = load_claims(a.dir)
        if a.write:
            print(f"{len(claims)} claims valid; wrote {write_resolved(a.dir)}")
            return 0
        if a.check:
            stale = stale_resolved(a.dir)
            if stale:
                raise ConfigError(
                    f"{RESOLVED} is out of date for {', '.join(stale)}; run python -m bench claims --write"
                )
            print(f"{len(claims)} claims valid; {RESOLVED} up to date")
            return 0
        for c in claims:
            print(f"{c.key:32s} {pm(c.value, c.std, 'g')}  {c.describe()}")
        print(f"{len(claims)} claims in {len(claim_files(a.dir))} files")
        return 0

    return exit_status(run, a)
