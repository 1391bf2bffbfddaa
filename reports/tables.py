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
    out = out.replace("--", "-{}-")  # a command's --flag stays two hyphens (not an en dash) when copied from the PDF
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
    """One row per (method, arch, epochs, setting): mean/std/n of ``value`` over the completed seeds, its 95%
    Student-t interval (``lo``/``hi``) and the per-seed values (``values``)."""
    from reports.stats import t_interval

    done = df[df["status"] == "completed"]
    rows = []
    for (method, arch, epochs, setting), g in df.groupby(["method", "arch", "epochs", "setting"], dropna=False):
        ok = done[(done["setting"] == setting) & (done["method"] == method)]
        mean, std, n = mean_std(ok[value])
        ci = t_interval(list(pd.to_numeric(ok[value], errors="coerce").dropna() * 100))
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
                "lo": ci.lo,
                "hi": ci.hi,
                "n": n,
                "values": list(pd.to_numeric(ok[value], errors="coerce").dropna() * 100),
                "runs": len(g),
                "diverged": int((g["status"] == "diverged").sum()),
                "seeds": sorted(int(s) for s in ok["seed"].dropna()),
                "sec_per_epoch": _sec_per_epoch(ok),
            }
        )
    out = pd.DataFrame(rows)
    if len(out):
        out["label"] = tell_apart(out, ["label", "arch", "epochs"])
        out = out.sort_values(["mean", "method"], ascending=[False, True], na_position="last").reset_index(drop=True)
    return out


def _sec_per_epoch(ok: pd.DataFrame) -> float:
    if "train_time_s" not in ok or "epochs_done" not in ok or ok.empty:
        return math.nan
    t = pd.to_numeric(ok["train_time_s"], errors="coerce") / pd.to_numeric(ok["epochs_done"], errors="coerce")
    return float(t.mean()) if t.notna().any() else math.nan


def versus_bp(s: pd.DataFrame) -> pd.DataFrame:
    """Add the "vs BP" columns to a summary of ONE table (one budget): for every row but the BP reference, the
    difference of means to BP (on the same architecture when the table has that BP row, else BP's row with the most
    seeds) with its Welch 95% interval, Welch's p and the Holm-corrected p over the table's rows; ``same_as_bp``: not
    distinguishable from BP at 0.05 after the correction."""
    from reports.stats import ALPHA, holm, welch

    s = s.copy()
    for col in ("d", "d_lo", "d_hi", "p", "p_holm"):
        s[col] = math.nan
    s["same_as_bp"] = pd.Series([None] * len(s), dtype=object)
    s["bp_ref"] = pd.Series([None] * len(s), dtype=object)
    bps = s[(s["method"] == "bp") & s["label"].eq("BP")]
    if bps.empty:
        bps = s[s["method"] == "bp"]
    if bps.empty:
        return s
    fallback = bps.sort_values(["n", "mean"], ascending=False).index[0]
    idx = []
    for i, r in s.iterrows():
        if i in bps.index:
            continue
        same = bps[bps["arch"] == r["arch"]]
        ref = same.index[0] if len(same) else fallback
        w = welch(r["values"], s.at[ref, "values"])
        s.at[i, "d"], s.at[i, "d_lo"], s.at[i, "d_hi"], s.at[i, "p"] = w.diff, w.lo, w.hi, w.p
        s.at[i, "bp_ref"] = f"{s.at[ref, 'label']} ({s.at[ref, 'arch']})"
        idx.append(i)
    adjusted = holm([s.at[i, "p"] for i in idx])
    for i, q in zip(idx, adjusted):
        s.at[i, "p_holm"] = q
        s.at[i, "same_as_bp"] = None if math.isnan(q) else bool(q >= ALPHA)
    return s


def is_comparison_row(method: str, arch_full: object, tuned: object) -> bool:
    """A row of the main comparison: a rule of METHODS=all (not a grid cell), real weights (not ±1: BP-Bin and
    SPELA(O)-Bin are ablations), trained at tuned settings or at the rule's defaults (not at options a profile or
    claim states: an authors' recipe, an ablation)."""
    from reports.labels import is_binary

    try:
        import methods  # noqa: F401
        from methods.registry import get_rule

        in_all = bool(getattr(get_rule(method), "in_all", True))
    except Exception:  # noqa: BLE001 - a rule no longer registered: keep it with the others
        in_all = True
    stated = tuned is None or (isinstance(tuned, float) and math.isnan(tuned))
    return in_all and not is_binary(arch_full) and not stated


def budget_of(df: pd.DataFrame) -> pd.Series:
    """Each run's budget within a dataset: ``<epochs> epochs`` plus the tuning protocol of its tuned settings (v1,
    custom, or pre-v1 for tuned records from before the protocol); untuned rows join the budget of their epochs."""
    tuned = df["tuned"].map(lambda t: t is True or t == True)  # noqa: E712
    proto = df.get("protocol", pd.Series([None] * len(df), index=df.index))
    tag = [(str(p) if isinstance(p, str) else "pre-v1") if t else None for t, p in zip(tuned, proto)]
    out = []
    epochs = df["epochs"].astype(int)
    for e, t in zip(epochs, tag):
        if t is None:  # untuned: the protocol of the tuned rows at these epochs, when there is exactly one
            others = {x for x, ee in zip(tag, epochs) if ee == e and x is not None}
            t = others.pop() if len(others) == 1 else "defaults"
        unit = "epoch" if e == 1 else "epochs"
        out.append(f"{e} {unit}, {'protocol ' + t if t not in ('defaults', 'pre-v1') else t}")
    return pd.Series(out, index=df.index)


def comparison_tables(df: pd.DataFrame, dataset: str, caption: str | None = None) -> list[tuple[str, str, str, str]]:
    """The comparison tables of one dataset, one per budget (``budget_of``): ``(key, title, LaTeX, markdown)``.
    Main rows (``is_comparison_row``) first, each budget its own table and its own ranking; other rows (authors'
    recipes, ablations, grid cells, ±1 weights) in tables of their own, also one per budget. Columns: Method,
    Architecture, test accuracy mean ± std, its 95% Student-t interval, n, vs BP (difference and Welch 95%
    interval; ≈ when Holm-corrected p >= 0.05), seconds per epoch."""
    d = df[df["dataset"] == dataset]
    if d.empty:
        return []
    main = [is_comparison_row(m, a, t) for m, a, t in zip(d["method"], d["arch_full"], d["tuned"])]
    d = d.assign(_main=main, _budget=budget_of(d))
    out = []
    for is_main in (True, False):
        part = d[d["_main"] == is_main]
        order = sorted(part["_budget"].unique(), key=lambda b: (-int(b.split()[0]), b))
        for budget in order:
            g = part[part["_budget"] == budget]
            key = f"{dataset}_{'' if is_main else 'other_'}e{budget.split()[0]}"
            if "protocol" in budget:
                key += "_" + budget.split("protocol ")[1]
            elif budget.endswith("pre-v1"):
                key += "_prev1"
            title = f"{dataset}, {budget}" + ("" if is_main else ": other settings (recipes, ablations, grid cells)")
            out.append((key, title, *_comparison_table(g, dataset, title, key, caption)))
    return out


def _fmt_d(r) -> str:
    if r.get("d") is None or (isinstance(r.get("d"), float) and math.isnan(r["d"])):
        return "--"
    if math.isnan(r["d_lo"]):
        return f"{r['d']:+.2f}"
    mark = " ≈" if r["same_as_bp"] else ""
    return f"{r['d']:+.2f} [{r['d_lo']:+.2f}, {r['d_hi']:+.2f}]{mark}"


def _fmt_ci(r) -> str:
    return "--" if math.isnan(r["lo"]) else f"[{r['lo']:.2f}, {r['hi']:.2f}]"


def _comparison_table(g: pd.DataFrame, dataset: str, title: str, key: str, caption: str | None) -> tuple[str, str]:
    s = versus_bp(summarise(g))
    best = s["mean"].max() if len(s) else math.nan
    has_bp = s["method"].eq("bp").any()
    note = (
        "95% CI: Student-t interval over seeds. vs BP: difference of means to BP on the same architecture (else BP's "
        "row) with Welch's 95% interval; ≈: not distinguishable from BP at 0.05 (Welch's t-test, Holm-corrected over "
        "the rows of this table)."
        if has_bp
        else "95% CI: Student-t interval over seeds. No BP run at this budget: no vs-BP column."
    )
    caption = caption or (
        f"Test accuracy (\\%) on {tex_escape(title)}: mean $\\pm$ std over n completed seeds. "
        + tex_escape(note.replace("≈", "~")).replace("\\textasciitilde{}", "$\\approx$")
        + " "
        + tex_escape(protocol_note(g))
    )
    cols = (
        ["Method", "Architecture", "Test acc. (%)", "95% CI", "n"] + (["vs BP (pts)"] if has_bp else []) + ["s/epoch"]
    )
    md = [f"### {title}: test accuracy (%)", "", "| " + " | ".join(cols) + " |"]
    md.append("|---|---|" + "---:|" * (len(cols) - 2))
    body = []
    for _, r in s.iterrows():
        cell = pm(r["mean"], r["std"])
        is_best = not math.isnan(r["mean"]) and r["mean"] == best
        note_div = f" ({r['diverged']} diverged)" if r["diverged"] else ""
        spe = "--" if math.isnan(r["sec_per_epoch"]) else f"{r['sec_per_epoch']:.1f}"
        vals = [
            r["label"],
            str(r["arch"]),
            ("**" + cell + "**") if is_best else cell,
            _fmt_ci(r),
            f"{r['n']}{note_div}",
        ]
        vals += [_fmt_d(r)] if has_bp else []
        vals += [spe]
        md.append("| " + " | ".join(vals) + " |")
        tex_cell = (
            f"$\\mathbf{{{pm(r['mean'], r['std'], sign=chr(92) + 'pm')}}}$"
            if is_best and cell != "--"
            else (f"${pm(r['mean'], r['std'], sign=chr(92) + 'pm')}$" if cell != "--" else "--")
        )
        tvals = [
            tex_escape(r["label"]),
            tex_escape(r["arch"]),
            tex_cell,
            tex_escape(_fmt_ci(r)),
            tex_escape(f"{r['n']}{note_div}"),
        ]
        tvals += [tex_escape(_fmt_d(r)).replace("≈", "$\\approx$")] if has_bp else []
        tvals += [spe]
        body.append(" & ".join(tvals) + r" \\")
    untuned = len(s) and s["label"].str.contains("†", regex=False).any()
    md += ["", note]
    if untuned:
        from reports.labels import UNTUNED_NOTE

        md += ["", UNTUNED_NOTE]
    pn = protocol_note(g)
    if pn:
        md += ["", pn]
    tex = longtable(cols, body, caption, f"tab:{key}", "ll" + "r" * (len(cols) - 2))
    if untuned:
        from reports.labels import UNTUNED_NOTE

        tex += f"\\par\\footnotesize {tex_escape(UNTUNED_NOTE)}\n"
    return tex, "\n".join(md) + "\n"


def longtable(columns: list[str], body: list[str], caption: str, label: str, align: str) -> str:
    """A booktabs ``longtable`` (breaks across pages: a long comparison never overflows one), small type."""
    head = " & ".join(tex_escape(c) for c in columns) + r" \\"
    return "\n".join(
        [
            r"{\footnotesize",
            r"\setlength{\tabcolsep}{4pt}",
            f"\\begin{{longtable}}{{{align}}}",
            f"\\caption{{{caption}}}\\label{{{label}}}\\\\",
            r"\toprule",
            head,
            r"\midrule",
            r"\endfirsthead",
            r"\toprule",
            head,
            r"\midrule",
            r"\endhead",
            r"\bottomrule",
            r"\endlastfoot",
            *body,
            r"\end{longtable}",
            r"}",
            "",
        ]
    )
