"""``make report``: rebuild every table (and figure) from the W&B runs into reports/out/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from reports.collect import collect_runs, history_frame, latest_per_config, load_runs
from reports.tables import comparison_tables

OUT = Path(__file__).resolve().parent / "out"


BUILT = ".dataset-tables"
"""The per-dataset tables a build wrote (one file name a line), removed by the next build."""


def previous_dataset_tables(out: Path) -> list[Path]:
    """The ``<dataset>.tex/.md`` files the previous build wrote into ``out``: those ``BUILT`` lists, and (for a folder
    built before that list existed) every ``<name>.md`` that starts with this module's table heading, with its
    ``.tex``."""
    found = []
    try:
        found = [
            out / line
            for line in (out / BUILT).read_text().splitlines()
            if line and "/" not in line and line.endswith((".tex", ".md"))
        ]
    except OSError:
        pass
    for md in out.glob("*.md"):
        try:
            with open(md, encoding="utf-8") as f:
                head = f.readline()
        except (OSError, UnicodeDecodeError):
            continue
        if head.startswith((f"### {md.stem}: test accuracy (%)", f"## {md.stem}: one table per budget")):
            found += [md, md.with_suffix(".tex")]
    return list(dict.fromkeys(found))


def problems(df: pd.DataFrame) -> list[str]:
    """Runs that did not complete, and settings that lack seeds other settings of the same protocol (grid profile)
    and dataset have."""
    lines = []
    for _, r in df[df["status"] != "completed"].iterrows():
        lines.append(f"- {r['status']}: {r['name']} (epochs done {r['epochs_done']}/{r['epochs']})")
    for (dataset, group), d in df.groupby(["dataset", df["group"].fillna("")]):
        all_seeds = set(d["seed"].dropna().astype(int))
        for (method, arch, setting), g in d.groupby(["method", "arch", "setting"]):
            done = set(g[g["status"] == "completed"]["seed"].dropna().astype(int))
            missing = sorted(all_seeds - done)
            if missing:
                lines.append(
                    f"- missing seeds {missing} for {dataset} / {method} / {arch} (setting {setting}"
                    + (f", {group}" if group else "")
                    + ")"
                )
    return lines


def build_report(
    source: str | None = None, out: str | Path | None = None, figures: bool = True, claims_dir: str | Path | None = None
) -> Path:
    """Read the runs and write everything into ``out`` (default reports/out): runs.csv, one comparison table per
    dataset (<dataset>.tex + .md), the protocols' tables (tables/*.tex + .md), the figures (figures/*.png), the
    claims ledger (tables/claims.tex + .md: every paper claim of ``claims_dir``, default reports/claims, beside the
    runs at its settings), report.tex (every table and figure in one compilable document) and index.md (all of it on
    one page)."""
    from bench.claims import load_claims, load_resolved
    from bench.measurements import load_efficiency as load_all
    from bench.paths import runs_root
    from reports import figures as figs
    from reports import paper_tables as pt
    from reports.compute import time_to_target_tables
    from reports.ledger import claims_summary, claims_tables, ledger, load_records

    out = Path(out) if out else OUT
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("tables", "figures"):  # generated only: a rebuild leaves no stale table or figure behind
        shutil.rmtree(out / folder, ignore_errors=True)
    for stale in previous_dataset_tables(out):  # nor the per-dataset tables of datasets no longer in the runs
        stale.unlink(missing_ok=True)
    runs = load_runs(source)
    raw = collect_runs(runs=runs)
    df = latest_per_config(raw)
    df.drop(columns=["start_time"], errors="ignore").to_csv(out / "runs.csv", index=False)
    hist = history_frame(runs, df["run_id"]) if len(df) else pd.DataFrame()
    local = source is not None and not str(source).startswith("wandb:")
    eff = load_all(source if local else None)  # measurements of `make efficiency`: <runs>/efficiency/*.json
    index = [
        "# Benchmark report",
        "",
        f"Source: `{source or 'runs'}`; {len(raw)} runs read, "
        f"{len(df)} distinct configurations. Rows of every run: [runs.csv](runs.csv); every table and figure in "
        "one LaTeX document: [report.tex](report.tex); this page as HTML: [index.html](index.html). Every "
        "comparison table holds one budget (dataset, epochs, tuning protocol); accuracies are mean ± std over "
        "seeds with a 95% Student-t interval and n; vs BP: Welch's test, Holm-corrected per table.",
        "",
    ]
    written: list[tuple[str, str]] = []  # (section, tex path) for report.tex
    fig_paths: list[tuple[str, Path]] = []

    def table(section: str, name: str, tm: tuple[str, str] | None, folder: str = "tables") -> None:
        if tm is None:
            return
        tex, md = tm
        (out / folder).mkdir(exist_ok=True)
        (out / folder / f"{name}.tex").write_text(tex)
        (out / folder / f"{name}.md").write_text(md)
        index.extend([md, f"LaTeX: [{folder}/{name}.tex]({folder}/{name}.tex)", ""])
        written.append((section, f"{folder}/{name}.tex"))

    def figures_of(section: str, paths: list[Path]) -> None:
        for path in paths:
            rel = path.relative_to(out)
            index.extend([f"![{figure_caption(path.stem)}]({rel.as_posix()})", ""])
            fig_paths.append((section, rel))

    standard = df[df["test_fraction"].isna()] if "test_fraction" in df else df
    datasets = sorted(standard["dataset"].dropna().unique())
    built: list[str] = []
    index += ["## Standard split", ""]
    for dataset in datasets:
        parts = comparison_tables(standard, dataset)
        (out / f"{dataset}.tex").write_text(pt.PREAMBLE + "\n".join(tex for _, _, tex, _ in parts))
        (out / f"{dataset}.md").write_text(
            f"## {dataset}: one table per budget (each its own ranking)\n\n" + "\n".join(md for *_, md in parts)
        )
        built.append(dataset)
        for _key, _title, _tex, md in parts:
            index += [md, ""]
        index += [f"LaTeX: [{dataset}.tex]({dataset}.tex)", ""]
        written.append(("Standard split", f"{dataset}.tex"))
    if len(df):
        for name, tm in pt.wide_comparisons(df).items():
            table("Standard split", name, tm)
    fig_dir = out / "figures"
    if figures and len(df):
        figures_of("Standard split", figs.learning_curves(hist, df, fig_dir))
    if len(df):
        sections = [
            (
                "Accuracy against compute",
                time_to_target_tables(hist, standard, eff),
                lambda: (
                    figs.accuracy_vs_compute(hist, standard, eff, fig_dir) + figs.pareto_fronts(standard, eff, fig_dir)
                ),
            ),
            (
                "Learning-rate sensitivity (sweep trials)",
                {},
                lambda: figs.lr_sensitivity(tuned_entries(datasets), fig_dir),
            ),
            ("Few-shot / data fraction", pt.fewshot_tables(df), lambda: figs.fewshot_curves(df, fig_dir)),
            (
                "Layer-wise accuracy / early exit",
                {"layerwise": pt.layerwise_table(df)},
                lambda: figs.layerwise_curves(hist, df, fig_dir),
            ),
            ("SPELA ablations", {"ablation": pt.ablation_table(df)}, lambda: []),
            ("Forward-gradient grid", pt.fg_grid_tables(df), lambda: []),
            ("Transfer learning", pt.transfer_tables(df), lambda: figs.transfer_curves(df, fig_dir)),
            ("Alignment with backprop", {}, lambda: figs.alignment_curves(hist, df, fig_dir)),
        ]
    else:
        sections = []
    sections.append(
        (
            "Efficiency: memory and compute per update",
            pt.efficiency_tables(eff),
            lambda: (
                figs.efficiency_bars(eff, fig_dir) + figs.accuracy_vs_memory(df, eff, fig_dir)
                if len(df)
                else figs.efficiency_bars(eff, fig_dir)
            ),
        )
    )
    for section, tables, make_figs in sections:
        tables = {k: v for k, v in tables.items() if v is not None}
        paths = make_figs() if figures else []
        if not tables and not paths:
            continue
        index += [f"## {section}", ""]
        for name, tm in tables.items():
            table(section, name, tm)
        figures_of(section, paths)
    # the claims of the report's datasets (a report on a dataset no paper reports has no claims section)
    claims = [c for c in load_claims(claims_dir) if c.dataset in set(df["dataset"].dropna())] if len(df) else []
    if claims:  # every claim is listed in tables/claims.md, run or not; index.md summarises
        wandb = source is not None and str(source).startswith("wandb:")
        records = [] if wandb else load_records(source or runs_root())
        entries = ledger(
            claims,
            load_resolved(claims_dir),
            records,
            source=f"{source or 'runs'}" + (" (W&B runs carry no run records)" if wandb else ""),
        )
        index += ["## Paper claims", ""]
        tm = claims_tables(entries)
        if tm is not None:
            (out / "tables").mkdir(exist_ok=True)
            (out / "tables" / "claims.tex").write_text(tm[0])
            (out / "tables" / "claims.md").write_text(tm[1])
            written.append(("Paper claims", "tables/claims.tex"))
        index += [claims_summary(entries), "LaTeX: [tables/claims.tex](tables/claims.tex)", ""]
    notes = Path(source) / "notes.md" if local else None
    if notes is not None and notes.is_file():  # a results set's own notes (e.g. why a rule is unstable on a shape)
        index += ["## Notes on this results set", "", notes.read_text().strip(), ""]
    issues = problems(df) if len(df) else []
    index += ["## Missing or partial runs", ""] + (issues or ["None."]) + [""]
    (out / "index.md").write_text("\n".join(index))
    from reports.html import page

    (out / "index.html").write_text(page("\n".join(index).replace("(index.md)", "(index.html)")))
    (out / BUILT).write_text("".join(f"{d}.tex\n{d}.md\n" for d in built))
    (out / "report.tex").write_text(report_tex(written, fig_paths))
    print(
        f"report: {len(df)} runs -> {out}/: runs.csv, {len(written)} tables, {len(fig_paths)} figures, "
        "index.md, index.html, report.tex"
    )
    if issues:
        print("missing or partial runs:", *issues, sep="\n")
    return out


CAPTIONS = (
    ("learning_", "Validation accuracy per epoch (mean ± std over seeds), one panel per rule family with BP in each"),
    (
        "acc_vs_compute_",
        "Validation accuracy against cumulative training time and training FLOPs (mean ± std over seeds)",
    ),
    (
        "pareto_",
        "Test accuracy against peak step memory and seconds per epoch, Pareto front joined (settings chosen on "
        "validation accuracy)",
    ),
    ("lr_sensitivity_", "Validation accuracy of every sweep trial against its learning rate (protocol v1)"),
    ("fewshot_", "Few-shot: test accuracy against the held-out test fraction (SPELA Fig. 5)"),
    ("layerwise_", "Validation accuracy of every layer's read-out per epoch (SPELA Fig. 3a)"),
    ("alignment_", "Alignment of each block's update with the BP gradient"),
    ("transfer", "Transfer learning: top-1 and top-5 against the test fraction (SPELA Fig. 6)"),
    ("efficiency_", "Measured peak step memory and FLOPs of one update beside the theoretical model"),
    ("acc_vs_memory_", "Test accuracy against peak step memory (setting chosen on validation accuracy)"),
)


def figure_caption(stem: str) -> str:
    """A figure's caption from its file name: what it shows, then the dataset / budget the name carries."""
    for prefix, text in CAPTIONS:
        if stem.startswith(prefix):
            rest = stem[len(prefix) :].replace("_", ", ").replace("-", " ")
            return f"{text}: {rest}." if rest else f"{text}."
    return stem


def tuned_entries(datasets: list[str]) -> list[dict]:
    """The v1 tuned entries (with their sweep trials) of ``datasets``, for the learning-rate sensitivity figure."""
    import json

    from bench.paths import tuned_dir as best_dir

    out = []
    for ds in datasets:
        for f in sorted((best_dir() / ds).glob("*.json")):
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            for arch, e in (data.get("by_arch") or {}).items():
                if isinstance(e, dict) and e.get("protocol") == "v1" and e.get("trials"):
                    short = arch.split(",", 1)[0]
                    out.append({**e, "dataset": ds, "method": data.get("method", f.stem), "arch_short": short})
    return out


def report_tex(tables: list[tuple[str, str]], figures: list[tuple[str, Path]]) -> str:
    """A standalone LaTeX document holding every table and figure, by section (compiles with pdflatex)."""
    from reports.tables import tex_escape

    doc = [
        r"\documentclass{article}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs,graphicx,longtable}",
        r"\usepackage{float}",
        r"\begin{document}",
        r"\section*{Benchmark report}",
    ]
    sections = list(dict.fromkeys([s for s, _ in tables] + [s for s, _ in figures]))
    for section in sections:
        doc.append(f"\\subsection*{{{tex_escape(section)}}}")
        doc += [f"\\input{{{path}}}" for s, path in tables if s == section]
        for s, path in figures:
            if s == section:
                doc += [
                    r"\begin{figure}[H]",
                    r"\centering",
                    f"\\includegraphics[width=\\linewidth,height=0.4\\textheight,keepaspectratio]{{{path.as_posix()}}}",
                    f"\\caption{{{tex_escape(figure_caption(path.stem))}}}",
                    r"\end{figure}",
                ]
        doc.append(r"\clearpage")
    doc.append(r"\end{document}")
    return "\n".join(doc) + "\n"
