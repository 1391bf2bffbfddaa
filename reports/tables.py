"""LaTeX (booktabs) and markdown tables: mean ± std over seeds, n shown, best in bold."""

from __future__ import annotations

import math

import pandas as pd

from bench.fmt import pm


def tex_escape(s: object) -> str:
    out = str(s)
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("$", r"\$"),
        ("#", r"\#"),
        ("_", r"\_"),
        ("{", r"\{"),
        ("}", r"\}"),
        ("~", r"\textasciitilde{}"),
        ("^", r"\^{}"),
    ):
        out = out.replace(a, b)
    return out.replace("†", r"$^\dagger$")


def protocol_note(df: pd.DataFrame) -> str:
    """The caption's statement of the tuning protocol of the tuned rows in ``df`` (bench.protocol; the record's
    ``protocol`` field): e.g. "Tuned rows: protocol v1 (10 trials ...)"; rows tuned before the protocol existed are
    said to be so."""
    from bench.protocol import PROTOCOLS

    if df.empty or "tuned" not in df:
        return ""
    tuned = df[df["tuned"].fillna(False).astype(bool)]
    if tuned.empty:
        return ""
    names = sorted({str(p) for p in tuned.get("protocol", pd.Series(dtype=object)).dropna()})
    legacy = int(tuned.get("protocol", pd.Series([None] * len(tuned))).isna().sum())
    parts = [PROTOCOLS[n].describe() if n in PROTOCOLS else f"protocol {n} (a custom tuning budget)" for n in names]
    if legacy:
        parts.append(f"{legacy} tuned run(s) from before the protocol (an unversioned 8-trial x 2-epoch budget)")
    return "Tuned rows: " + "; ".join(parts) + "."


def mean_std(values: pd.Series, scale: float = 100.0) -> tuple[float, float, int]:
    v = pd.to_numeric(values, errors="coerce").dropna() * scale
    n = len(v)
    if n == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if n > 1 else math.nan, n


def tell_apart(df: pd.DataFrame, keys: list) -> pd.Series:
    """``df``'s labels, with `` #<setting hash>`` added where rows alike in ``keys`` (the label among them) hold more
    than one setting: settings the label cannot tell apart (a field it does not show)."""
    clash = df.groupby(keys, dropna=False)["setting"].transform("nunique") > 1
    return df["label"].where(~clash, df["label"] + " #" + df["setting"].astype(str))


def summarise(df: pd.DataFrame, value: str = "test_acc") -> pd.DataFrame:
    """One row per (method, arch, epochs, setting): mean/std/n of ``value`` over the completed seeds."""
    done = df[df["status"] == "completed"]
    rows = []
    for (method, arch, epochs, setting), g in df.groupby(["method", "arch", "epochs", "setting"], dropna=False):
        ok = done[(done["setting"] == setting) & (done["method"] == method)]
        mean, std, n = mean_std(ok[value])
        first = g.iloc[0]
        label = method
        if "rule" in g:  # the papers' rule name and the options that set this setting apart
            from reports.labels import mark_untuned, run_label

            label = mark_untuned(
                run_label(method, first.get("rule"), first.get("arch_full"), run_options=first.get("run_options")),
                first.get("tuned"),
            )
        rows.append(
            {
                "method": method,
                "label": label,
                "arch": arch,
                "epochs": epochs,
                "setting": setting,
                "mean": mean,
                "std": std,
                "n": n,
                "runs": len(g),
                "diverged": int((g["status"] == "diverged").sum()),
                "seeds": sorted(int(s) for s in ok["seed"].dropna()),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        out["label"] = tell_apart(out, ["label", "arch", "epochs"])
        out = out.sort_values(["mean", "method"], ascending=[False, True], na_position="last").reset_index(drop=True)
    return out


def comparison_tables(df: pd.DataFrame, dataset: str, caption: str | None = None) -> tuple[str, str]:
    """(LaTeX, markdown) comparison table of one dataset: Method | Architecture | Epochs | Test acc. | n."""
    s = summarise(df[df["dataset"] == dataset])
    best = s["mean"].max() if len(s) else math.nan
    caption = caption or (
        f"Test accuracy (\\%) on {tex_escape(dataset)}: mean $\\pm$ std over seeds; n = completed seeds; best in bold. "
        + tex_escape(protocol_note(df[df["dataset"] == dataset]))
    )
    tex = [
        r"\begin{table}[ht]",
        r"\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{tab:{dataset}}}",
        r"\begin{tabular}{llrrr}",
        r"\toprule",
        r"Method & Architecture & Epochs & Test acc. (\%) & n \\",
        r"\midrule",
    ]
    md = [
        f"### {dataset}: test accuracy (%), mean ± std over seeds",
        "",
        "| Method | Architecture | Epochs | Test acc. (%) | n |",
        "|---|---|---:|---:|---:|",
    ]
    for _, r in s.iterrows():
        cell = pm(r["mean"], r["std"], sign=r"\pm")
        is_best = not math.isnan(r["mean"]) and r["mean"] == best
        cell_tex = f"$\\mathbf{{{cell}}}$" if is_best and cell != "--" else (f"${cell}$" if cell != "--" else "--")
        note = f" ({r['diverged']} diverged)" if r["diverged"] else ""
        tex.append(
            f"{tex_escape(r['label'])} & {tex_escape(r['arch'])} & {r['epochs']} & {cell_tex} & "
            f"{r['n']}{tex_escape(note)} \\\\"
        )
        md_cell = pm(r["mean"], r["std"])
        md.append(
            f"| {r['label']} | {r['arch']} | {r['epochs']} | {'**' + md_cell + '**' if is_best else md_cell} | "
            f"{r['n']}{note} |"
        )
    tex += [r"\bottomrule", r"\end{tabular}"]
    if len(s) and s["label"].str.contains("†", regex=False).any():
        from reports.labels import UNTUNED_NOTE

        tex.append(f"\\par\\footnotesize {tex_escape(UNTUNED_NOTE)}")
        md += ["", UNTUNED_NOTE]
    tex += [r"\end{table}", ""]
    return "\n".join(tex), "\n".join(md) + "\n"
