"""``make report``: rebuild every table (and figure) from the W&B runs into reports/out/."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.collect import collect_runs, latest_per_config
from reports.tables import comparison_tables

OUT = Path(__file__).resolve().parent / "out"


def problems(df: pd.DataFrame) -> list[str]:
    """Runs that did not complete, and settings that lack seeds others have."""
    lines = []
    for _, r in df[df["status"] != "completed"].iterrows():
        lines.append(f"- {r['status']}: {r['name']} (epochs done {r['epochs_done']}/{r['epochs']})")
    for dataset, d in df.groupby("dataset"):
        all_seeds = set(d["seed"].dropna().astype(int))
        for (method, arch, setting), g in d.groupby(["method", "arch", "setting"]):
            done = set(g[g["status"] == "completed"]["seed"].dropna().astype(int))
            missing = sorted(all_seeds - done)
            if missing:
                lines.append(f"- missing seeds {missing} for {dataset} / {method} / {arch} (setting {setting})")
    return lines


def build_report(source: str | None = None, out: str | Path | None = None) -> Path:
    """Read the runs, write runs.csv, one comparison table per dataset (.tex + .md) and index.md."""
    out = Path(out) if out else OUT
    out.mkdir(parents=True, exist_ok=True)
    raw = collect_runs(source)
    df = latest_per_config(raw)
    df.drop(columns=["start_time"], errors="ignore").to_csv(out / "runs.csv", index=False)
    index = ["# Benchmark report", "", f"Source: `{source or 'runs'}`; {len(raw)} W&B runs read, "
             f"{len(df)} distinct configurations. Rows of every run: [runs.csv](runs.csv).", ""]
    standard = df[df["test_fraction"].isna()] if "test_fraction" in df else df
    for dataset in sorted(standard["dataset"].dropna().unique()):
        tex, md = comparison_tables(standard, dataset)
        (out / f"{dataset}.tex").write_text(tex)
        (out / f"{dataset}.md").write_text(md)
        index += [md, f"LaTeX: [{dataset}.tex]({dataset}.tex)", ""]
    issues = problems(df)
    index += ["## Missing or partial runs", ""] + (issues or ["None."]) + [""]
    (out / "index.md").write_text("\n".join(index))
    print(f"report: {len(df)} runs -> {out}/runs.csv, "
          f"{', '.join(f'{d}.tex' for d in sorted(standard['dataset'].dropna().unique())) or 'no tables'}, index.md")
    if issues:
        print("missing or partial runs:", *issues, sep="\n")
    return out
