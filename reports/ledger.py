"""The claims ledger: every paper claim (reports/claims/*.toml) beside what the harness measured at its settings.

A run belongs to a claim when its recorded settings (the run record's canonical config without the seed: dataset,
method, arch, epochs, split, batch size, normalisation and every rule option) equal the claim's resolved settings
(reports/claims/resolved.json); its name plays no part. Verdicts: ``reproduced`` when |measured mean - paper value|
is within the larger of the two stds, else ``below`` or ``above``; ``not run`` (with why) when no completed run has
the claim's settings. Reads run records only: nothing here imports the training code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.claims import Claim
from bench.fmt import pm
from reports.tables import tex_escape

VERDICTS = ("reproduced", "below", "above", "not run")


# --------------------------------------------------------------------------- reading run records
def record_view(record: dict[str, Any]) -> dict[str, Any] | None:
    """What the ledger reads from one run record (the JSON ``bench/run.py`` writes to ``<runs>/records/``): its
    settings (canonical config without the seed), seed, status, name and test metrics (fractions). None when the
    record has no config. The one place that knows the record format."""
    config = record.get("config")
    if not isinstance(config, dict):
        return None
    return {
        "setting": {k: v for k, v in config.items() if k != "seed"},
        "seed": config.get("seed", record.get("seed")),
        "status": record.get("status"),
        "name": record.get("name"),
        "test": dict(record.get("test") or {}),
    }


def load_records(source: str | Path) -> list[dict[str, Any]]:
    """Every readable run record of a runs folder (``<source>/records/*.json``, not the kept failed attempts);
    [] when there is none."""
    from bench.records import read_record, records_dir

    recs = (read_record(p) for p in sorted(records_dir(source).glob("*.json")))
    return [r for r in recs if r is not None]


def setting_key(setting: dict[str, Any]) -> str:
    """Canonical text of a setting: numbers compared as numbers (0 == 0.0), tuples as lists, keys sorted."""

    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        return str(v)

    return json.dumps(norm(setting), sort_keys=True)


# --------------------------------------------------------------------------- the ledger
@dataclass
class Entry:
    """One claim's row: the paper's number, what was measured at its settings, and the verdict."""

    claim: Claim
    values: list[float] = field(default_factory=list)
    """Measured metric of every completed matching run (percent), one per seed."""
    runs: list[str] = field(default_factory=list)
    verdict: str = "not run"
    why: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / self.n if self.n else math.nan

    @property
    def std(self) -> float:
        """Sample std (ddof 1) over the seeds; nan for fewer than two runs."""
        if self.n < 2:
            return math.nan
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def diff(self) -> float:
        return self.mean - self.claim.value if self.n else math.nan


def judge(claim: Claim, values: list[float]) -> str:
    """reproduced: |mean - value| <= the larger of the paper's std and the measured one (0 when neither is known);
    else below / above. ``not run`` without values."""
    if not values:
        return "not run"
    e = Entry(claim, list(values))
    tol = max(claim.std or 0.0, 0.0 if math.isnan(e.std) else e.std)
    if abs(e.diff) <= tol + 1e-9:
        return "reproduced"
    return "below" if e.diff < 0 else "above"


def ledger(
    claims: Iterable[Claim],
    settings: dict[str, dict[str, Any]],
    records: Iterable[dict[str, Any]],
    source: str = "the runs folder",
) -> list[Entry]:
    """One entry per claim, in order. ``settings``: claim key -> resolved canonical setting; ``records``: run
    records."""
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        view = record_view(rec)
        if view is not None:
            by_setting.setdefault(setting_key(view["setting"]), []).append(view)
    out = []
    for claim in claims:
        entry = Entry(claim)
        out.append(entry)
        if claim.key not in settings:
            entry.why = "its settings are not resolved (python -m bench claims --write)"
            continue
        matched = by_setting.get(setting_key(settings[claim.key]), [])
        per_seed: dict[Any, dict[str, Any]] = {}
        for view in matched:  # one run per seed; a completed one wins
            if view["seed"] not in per_seed or view["status"] == "completed":
                per_seed[view["seed"]] = view
        done = [v for _, v in sorted(per_seed.items(), key=lambda kv: str(kv[0])) if v["status"] == "completed"]
        with_metric = [v for v in done if isinstance(v["test"].get(claim.metric), (int, float))]
        entry.values = [100.0 * v["test"][claim.metric] for v in with_metric]
        entry.runs = [str(v["name"]) for v in with_metric]
        entry.verdict = judge(claim, entry.values)
        if entry.verdict != "not run":
            continue
        if not per_seed:
            entry.why = f"no run with these settings in {source}"
        elif done:
            entry.why = f"{len(done)} completed run(s) recorded no {claim.metric}"
        else:
            states: dict[str, int] = {}
            for v in per_seed.values():
                states[str(v["status"])] = states.get(str(v["status"]), 0) + 1
            entry.why = "runs with these settings: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    return out


# --------------------------------------------------------------------------- tables
def _num(x: float | None, signed: bool = False) -> str:
    if x is None or math.isnan(x):
        return "--"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _paper(c: Claim) -> str:
    return pm(c.value, c.std)


def _measured(e: Entry) -> str:
    if not e.n:
        return "--"
    return pm(e.mean, e.std) + f" (n={e.n})"


def _verdict(e: Entry) -> str:
    return f"not run: {e.why}" if e.verdict == "not run" else e.verdict


def summary(entries: list[Entry]) -> str:
    counts = {v: sum(e.verdict == v for e in entries) for v in VERDICTS}
    return f"{len(entries)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items())


def breakable(tex: str) -> str:
    """A long command in a narrow column: allow a line break after commas, slashes, ``=`` and spaces."""
    for ch in (",", "/", "=", " "):
        tex = tex.replace(ch, ch + r"\allowbreak{}")
    return tex


def claims_summary(entries: list[Entry]) -> str:
    """The claims as index.md shows them: every measured claim in full (paper, measured, difference, verdict);
    the not-run ones as a count per paper with the one command that runs them (tables/claims.md keeps every row)."""
    if not entries:
        return ""
    run = [e for e in entries if e.verdict != "not run"]
    md = [f"{summary(entries)}. Every claim, with its command: [tables/claims.md](tables/claims.md).", ""]
    if run:
        md += ["| Claim | Paper | Measured (mean ± std, n) | Difference | Verdict |", "|---|---:|---:|---:|---|"]
        for e in run:
            c = e.claim
            md.append(
                f"| {c.key}: {c.describe()} | {_paper(c)} | {_measured(e)} | {_num(e.diff, True)} | {e.verdict} |"
            )
        md.append("")
    missing: dict[str, list[Entry]] = {}
    for e in entries:
        if e.verdict == "not run":
            missing.setdefault(e.claim.paper, []).append(e)
    if missing:
        md += ["Not run here:", ""]
        for paper, rows in missing.items():
            title = rows[0].claim.title or paper
            datasets = ", ".join(sorted({e.claim.dataset for e in rows}))
            md.append(
                f"- {title} ({paper}): {len(rows)} claim(s) on {datasets}; run them with "
                f"`make bench PROFILE=claims ARGS='--only paper={paper}'`"
            )
        md.append("")
    return "\n".join(md)


def claims_tables(entries: list[Entry]) -> tuple[str, str] | None:
    """(LaTeX, markdown) of the ledger: one block per paper, every claim listed (not run ones with the reason)."""
    if not entries:
        return None
    cols = ["Claim", "Paper", "Measured (mean ± std, n)", "Difference", "Verdict", "Command"]
    md = [
        "### Paper claims beside the runs at their settings",
        "",
        f"{summary(entries)}. Reproduced: the difference is within the larger of the paper's std and ours. "
        "A run counts for a claim when its recorded settings equal the claim's (reports/claims/resolved.json).",
        "",
    ]
    tex = [
        r"% longtable written by `make report`; needs \usepackage{booktabs,longtable}",
        r"{\scriptsize",
        r"\begin{longtable}{p{0.34\linewidth}rrrp{0.12\linewidth}p{0.2\linewidth}}",
        f"\\caption{{{tex_escape(summary(entries))}. Reproduced: within the larger of the two stds.}}"
        r"\label{tab:claims}\\",
        r"\toprule",
        " & ".join(tex_escape(c) for c in cols) + r" \\",
        r"\midrule",
        r"\endhead",
    ]
    papers = list(dict.fromkeys(e.claim.paper for e in entries))
    for paper in papers:
        rows = [e for e in entries if e.claim.paper == paper]
        first = rows[0].claim
        md += [
            f"#### {first.title or paper} ({paper})",
            "",
            f"Source: {first.source}. {summary(rows)}.",
            "",
            "| " + " | ".join(cols) + " |",
            "|---|---:|---:|---:|---|---|",
        ]
        tex.append(
            f"\\multicolumn{{6}}{{l}}{{\\textbf{{{tex_escape(first.title or paper)}}} "
            f"({tex_escape(summary(rows))})}} \\\\"
        )
        for e in rows:
            c = e.claim
            md.append(
                f"| {c.key}: {c.describe()} | {_paper(c)} | {_measured(e)} | {_num(e.diff, True)} | "
                f"{_verdict(e)} | `{c.command()}` |"
            )
            tex.append(
                " & ".join(
                    [
                        tex_escape(f"{c.key}: {c.describe()}"),
                        tex_escape(_paper(c)).replace("±", r"$\pm$"),
                        tex_escape(_measured(e)).replace("±", r"$\pm$"),
                        tex_escape(_num(e.diff, True)),
                        tex_escape(_verdict(e)),
                        r"\texttt{" + breakable(tex_escape(c.command())) + "}",
                    ]
                )
                + r" \\"
            )
        md.append("")
        tex.append(r"\midrule")
    tex[-1] = r"\bottomrule"
    tex += [r"\end{longtable}", "}", ""]
    return "\n".join(tex), "\n".join(md) + "\n"
