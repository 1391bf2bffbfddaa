"""The papers' tables (LaTeX booktabs + markdown): every protocol's results in the layout its paper prints them.

* ``wide_comparison``: SPELA Table 3/8: rules (and their early exits) x datasets, standard split;
* ``fewshot_tables``: SPELA Table 4: dataset x test fraction rows, one column per rule, per epoch budget;
* ``ablation_table``: SPELA Table 6: SPELA(O), -Euc, -Rand, -Bin and BP / BP-Bin x datasets;
* ``fg_grid_tables``: Fournier et al. Tables 2-4: guess (+ auxiliary head) x target x space, BP's row on top;
* ``transfer_tables``: SPELA Tables 9-16: top-1 / top-5 per rule x test fraction, one table per dataset;
* ``layerwise_table``: final test accuracy of every exit;
* ``efficiency_tables``: SPELA Table 2 beside the measurements (memory, FLOPs, samples/s per step).
Every accuracy is mean ± std over the completed seeds, with n; the best of each column in bold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pandas as pd

from bench.fmt import gflop, mb, pm
from bench.ids import slug
from reports.labels import UNTUNED, UNTUNED_NOTE, mark_untuned, method_name, run_label
from reports.tables import mean_std, tell_apart, tex_escape

PREAMBLE = "% booktabs table written by `make report`; needs \\usepackage{booktabs,graphicx}\n"


@dataclass
class Stat:
    mean: float
    std: float
    n: int

    def md(self, bold: bool = False, n: bool = True) -> str:
        if math.isnan(self.mean):
            return "--"
        s = pm(self.mean, self.std)
        s = f"**{s}**" if bold else s
        return s + (f" ({self.n})" if n and self.n else "")

    def tex(self, bold: bool = False, n: bool = True) -> str:
        if math.isnan(self.mean):
            return "--"
        s = pm(self.mean, self.std, sign=r"\pm")
        s = f"\\mathbf{{{s}}}" if bold else s
        return f"${s}$" + (f" ({self.n})" if n and self.n > 1 else "")


def stat(values: pd.Series) -> Stat:
    return Stat(*mean_std(values))


def render(
    columns: list[str],
    rows: list[list],
    *,
    caption: str,
    label: str,
    title: str,
    align: str | None = None,
    groups: list[tuple[str, int]] | None = None,
    bold_best: bool | str = True,
    wide: bool = False,
    notes: str = "",
) -> tuple[str, str]:
    """(LaTeX, markdown) of a table whose cells are text or ``Stat``; ``groups`` = a header row above ``columns``.
    ``bold_best``: the best mean of each column in bold (``"row"``: of each row; False: none)."""
    best: dict[tuple[int, int], bool] = {}
    if bold_best:
        cells = [
            (i, j, c.mean)
            for i, r in enumerate(rows)
            for j, c in enumerate(r)
            if isinstance(c, Stat) and not math.isnan(c.mean)
        ]
        key = (lambda t: t[0]) if bold_best == "row" else (lambda t: t[1])
        for k in {key(t) for t in cells}:
            group = [t for t in cells if key(t) == k]
            if len(group) > 1:
                top = max(t[2] for t in group)
                best.update({(i, j): True for i, j, m in group if m == top})
    align = align or "l" * sum(not isinstance(c, Stat) for c in (rows[0] if rows else [])) + "r" * len(columns)
    align = align[: len(columns)].ljust(len(columns), "r")
    tex = [PREAMBLE + r"\begin{table}[ht]", r"\centering", f"\\caption{{{caption}}}", f"\\label{{tab:{label}}}"]
    if wide:
        tex.append(r"\resizebox{\linewidth}{!}{%")
    tex += [f"\\begin{{tabular}}{{{align}}}", r"\toprule"]
    md_cols = list(columns)
    if groups:
        tex.append(
            " & ".join(
                f"\\multicolumn{{{span}}}{{c}}{{{tex_escape(g)}}}" if span > 1 else tex_escape(g) for g, span in groups
            )
            + r" \\"
        )
        start, rules, heads = 0, [], []
        for g, span in groups:
            if g:
                rules.append(f"\\cmidrule(lr){{{start + 1}-{start + span}}}")
            heads += [g] * span
            start += span
        tex.append(" ".join(rules))
        md_cols = [f"{h} · {c}" if h else c for h, c in zip(heads, columns)]
    tex += [" & ".join(tex_escape(c) for c in columns) + r" \\", r"\midrule"]
    md = [
        f"### {title}",
        "",
        "| " + " | ".join(md_cols) + " |",
        "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
    ]
    for i, r in enumerate(rows):
        tcells, mcells = [], []
        for j, c in enumerate(r):
            if isinstance(c, Stat):
                b = best.get((i, j), False)
                tcells.append(c.tex(b))
                mcells.append(c.md(b))
            else:
                tcells.append(tex_escape(c))
                mcells.append(str(c))
        tex.append(" & ".join(tcells) + r" \\")
        md.append("| " + " | ".join(mcells) + " |")
    if any(isinstance(c, str) and UNTUNED in c for r in rows for c in r):  # rows run on untuned defaults
        notes = f"{notes} {UNTUNED_NOTE}".strip()
    tex += [r"\bottomrule", r"\end{tabular}"] + (["}"] if wide else [])
    if notes and UNTUNED_NOTE in notes:
        tex.append(f"\\par\\footnotesize {tex_escape(UNTUNED_NOTE)}")
    tex += [r"\end{table}", ""]
    if notes:
        md += ["", notes]
    return "\n".join(tex), "\n".join(md) + "\n"


def _done(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["status"] == "completed"]


def _labelled(df: pd.DataFrame, ablation: bool = False) -> pd.DataFrame:
    if df.empty:
        return df.assign(label=pd.Series(dtype=object))
    opts = df["run_options"] if "run_options" in df else [None] * len(df)
    tuned = df["tuned"] if "tuned" in df else [None] * len(df)
    df = df.assign(
        label=[
            mark_untuned(run_label(m, r, a, ablation=ablation, run_options=o), t)
            for m, r, a, o, t in zip(df["method"], df["rule"], df["arch_full"], opts, tuned)
        ]
    )
    return df.assign(label=tell_apart(df, ["dataset", "label", "arch", "epochs", "test_fraction"]))


def standard(df: pd.DataFrame) -> pd.DataFrame:
    """Runs on the official split (no few-shot re-split), image datasets only."""
    return df[df["test_fraction"].isna() & ~df["dataset"].astype(str).str.contains(":")]


def exit_columns(df: pd.DataFrame) -> list[str]:
    return sorted(c for c in df.columns if c.startswith("test_acc_") and c != "test_acc5" and df[c].notna().any())


# --------------------------------------------------------------------------- SPELA Table 3 / 8
def wide_comparisons(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """SPELA Table 3's layout (rules and their early exits x datasets), one table per epoch budget of the main
    comparison rows (``reports.tables.is_comparison_row``): ``comparison_e<epochs>``."""
    from reports.tables import is_comparison_row

    d = _done(standard(df))
    if d.empty:
        return {}
    d = d[[is_comparison_row(m, a, t) for m, a, t in zip(d["method"], d["arch_full"], d["tuned"])]]
    out = {}
    for epochs in sorted(d["epochs"].dropna().unique(), reverse=True):
        tm = wide_comparison(d[d["epochs"] == epochs], epochs=int(epochs))
        if tm is not None:
            out[f"comparison_e{int(epochs)}"] = tm
    return out


def wide_comparison(df: pd.DataFrame, caption: str | None = None, epochs: int | None = None) -> tuple[str, str] | None:
    d = _labelled(_done(standard(df)))
    if d.empty:
        return None
    datasets = sorted(d["dataset"].unique())
    rows = []
    for (label, arch, epochs), g in d.groupby(["label", "arch", "epochs"], sort=True):
        rows.append([label, str(arch), str(epochs), *(stat(g[g["dataset"] == ds]["test_acc"]) for ds in datasets)])
        for col in exit_columns(g):
            if (g[col] - g["test_acc"]).abs().max() < 1e-12:
                continue  # the exit that is the prediction itself
            rows.append(
                [
                    f"{label} (exit {col.removeprefix('test_acc_')})",
                    str(arch),
                    str(epochs),
                    *(stat(g[g["dataset"] == ds][col]) for ds in datasets),
                ]
            )
    from reports.tables import protocol_note, tex_escape

    caption = caption or (
        "Test accuracy (\\%) on the standard split: mean $\\pm$ std over seeds (n completed seeds in "
        "brackets); early exits are the rule's per-layer read-outs (SPELA Table 3 layout). "
        + tex_escape(protocol_note(d))
    )
    budget = f", {epochs} epochs" if epochs is not None else ""
    return render(
        ["Model", "Architecture", "Epochs", *datasets],
        rows,
        caption=caption,
        label=f"comparison{epochs or ''}",
        title=f"Standard split{budget}: test accuracy (%) per dataset",
        wide=len(datasets) > 3,
    )


# --------------------------------------------------------------------------- SPELA Table 4 (few-shot)
def fewshot_tables(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """One table per epoch budget: rows (dataset, test fraction), one column per rule setting."""
    d = df[df["test_fraction"].notna() & ~df["dataset"].astype(str).str.contains(":")]
    d = _labelled(_done(d))
    out = {}
    for epochs, e in d.groupby("epochs"):
        cols = sorted(e.groupby(["label", "arch"]).groups)
        rows = []
        for (ds, tf), g in e.groupby(["dataset", "test_fraction"]):
            rows.append(
                [ds, f"{tf:g}", *(stat(g[(g["label"] == lab) & (g["arch"] == arch)]["test_acc"]) for lab, arch in cols)]
            )
        columns = ["Task", "Test size", *(lab for lab, _ in cols)]
        groups = [("", 2), *((f"{a}", 1) for _, a in cols)]
        out[f"fewshot_{int(epochs)}ep"] = render(
            columns,
            rows,
            groups=groups,
            label=f"fewshot-{int(epochs)}",
            bold_best="row",
            title=f"Few-shot: test accuracy (%) after {int(epochs)} epochs, train and test merged and re-split",
            caption=(
                f"Few-shot regime (SPELA Table 4 layout): train and test sets merged, the given fraction held out "
                f"for testing; {int(epochs)} epochs; mean $\\pm$ std over seeds (n). The architecture of each "
                "column is above its name."
            ),
        )
    return out


# --------------------------------------------------------------------------- SPELA Table 6 (ablation)
def ablation_table(df: pd.DataFrame) -> tuple[str, str] | None:
    d = _done(standard(df))
    d = _labelled(d[d["method"].isin(["spela_o", "spela", "bp"])], ablation=True)
    if d.empty or not d["label"].str.contains("-Euc|-Rand|-Bin").any():
        return None
    # BP only as the baseline of BP-Bin: its ±1 runs and the real-weight runs of the same arch and dataset
    base = [(ds, str(a).replace("/bin", "")) for ds, a in zip(d["dataset"], d["arch"])]
    bin_keys = {k for k, m, lab in zip(base, d["method"], d["label"]) if m == "bp" and "-Bin" in lab}
    d = d[(d["method"] != "bp").to_numpy() | [k in bin_keys for k in base]]
    datasets = sorted(d["dataset"].unique())
    order = {"SPELA(O)": 0, "SPELA(O)-Euc": 1, "SPELA(O)-Rand": 2, "SPELA(O)-Bin": 3, "BP": 4, "BP-Bin": 5}
    rows = []
    for (label, arch, epochs), g in sorted(
        d.groupby(["label", "arch", "epochs"]), key=lambda kv: (order.get(kv[0][0], 9), kv[0])
    ):
        rows.append([label, str(arch), str(epochs), *(stat(g[g["dataset"] == ds]["test_acc"]) for ds in datasets)])
    return render(
        ["Model", "Architecture", "Epochs", *datasets],
        rows,
        label="ablation",
        title="Ablation (SPELA Table 6): test accuracy (%)",
        caption="Ablations of SPELA(O) (SPELA Table 6 layout): -Euc Euclidean loss, -Rand Gaussian class "
        "vectors, -Bin $\\pm 1$ weights (biases real); BP-Bin the matching baseline. Mean $\\pm$ "
        "std over seeds (n).",
    )


# --------------------------------------------------------------------------- Fournier Tables 2-4 (forward gradient)
GUESS_NAMES = {
    "local": "Local",
    "ntk": "NTK",
    "fixed_ntk": "Fixed NTK",
    "gaussian": "Gaussian",
    "rademacher": "Rademacher",
}


def _fg_cell(rule: str) -> tuple[str, str, str, str] | None:
    r = json.loads(rule) if isinstance(rule, str) else rule
    if not isinstance(r, dict) or not {"guess", "target", "space"} <= set(r):
        return None
    head = r.get("aux", "mlp") if (r["guess"] not in ("gaussian", "rademacher") or r["target"] == "local") else ""
    return r["guess"], head, r["target"], r["space"]


def fg_grid_tables(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    d = _done(standard(df))
    cells = [_fg_cell(r) for r in d["rule"]]
    d = d.assign(cell=cells)
    fg = d[d["cell"].notna()]
    out = {}
    cols = [("global", "activity"), ("global", "weight"), ("local", "activity"), ("local", "weight")]
    for (ds, arch, epochs), g in fg.groupby(["dataset", "arch", "epochs"]):
        rows = []
        bp = d[(d["method"] == "bp") & (d["dataset"] == ds) & (d["arch"] == arch) & (d["epochs"] == epochs)]
        if len(bp):
            e2e = stat(bp["test_acc"])
            rows.append(["End-to-end (BP)", "", e2e, e2e, e2e, e2e])
        keys = sorted({(c[0], c[1]) for c in g["cell"]}, key=lambda k: (list(GUESS_NAMES).index(k[0]), k[1]))
        for guess, head in keys:
            row = [GUESS_NAMES.get(guess, guess), head.upper() if head in ("mlp", "cnn") else head.title()]
            for target, space in cols:
                both = (guess, target) == ("local", "local")  # local learning: the same update in both spaces
                sel = g[[c[:2] == (guess, head) and c[2] == target and (c[3] == space or both) for c in g["cell"]]]
                row.append(stat(sel["test_acc"]))
            rows.append(row)
        groups = [("", 2), ("Global target", 2), ("Local target", 2)]
        key = slug(f"fg_grid_{ds}_{arch}_{int(epochs)}ep").replace(",", "_")
        out[key] = render(
            ["Guess", "Aux. head", "Activity", "Weight", "Activity", "Weight"],
            rows,
            groups=groups,
            label=key.replace("_", "-"),
            title=f"Forward-gradient grid on {ds}, {arch}, {int(epochs)} epochs: test accuracy (%)",
            caption=(
                f"Forward gradient on {tex_escape(ds)} with {tex_escape(arch)}, {int(epochs)} "
                "epochs (Fournier et al. "
                "Tables 2-4 layout): guess (and the auxiliary head that makes it) x target x space "
                "(activity or weight perturbation); local guess with local target is greedy local "
                "learning, the same update in both spaces. Mean $\\pm$ std over seeds (n)."
            ),
        )
    return out


# --------------------------------------------------------------------------- SPELA Tables 9-16 (transfer)
def transfer_tables(df: pd.DataFrame) -> dict[str, tuple[str, str]]:
    d = _labelled(_done(df[df["dataset"].astype(str).str.contains(":") & df["test_fraction"].notna()]))
    out = {}
    for ds, g in d.groupby("dataset"):
        fracs = sorted(g["test_fraction"].unique())
        rows = []
        for (label, arch, epochs), h in g.groupby(["label", "arch", "epochs"]):
            for col, name in (("test_acc", "top-1"), ("test_acc5", "top-5")):
                rows.append(
                    [f"{label} {name}", str(arch), str(epochs), *(stat(h[h["test_fraction"] == f][col]) for f in fracs)]
                )
        key = f"transfer_{ds}".replace(":", "_")
        out[key] = render(
            ["Model", "Head", "Epochs", *(f"{100 * f:g}" for f in fracs)],
            rows,
            label=key.replace("_", "-"),
            groups=[("", 3), ("Test size (%)", len(fracs))],
            bold_best=False,
            wide=len(fracs) > 5,
            title=f"Transfer learning, {ds}: top-1 / top-5 test accuracy (%) vs test size",
            caption=(
                f"Transfer learning on {tex_escape(ds)} (SPELA Tables 9-16 layout): frozen backbone "
                "features, an MLP head trained by each rule; top-1 and top-5 test accuracy for each "
                "test-set size; mean $\\pm$ std over seeds (n)."
            ),
        )
    return out


# --------------------------------------------------------------------------- layer-wise read-outs
def layerwise_table(df: pd.DataFrame) -> tuple[str, str] | None:
    d = _labelled(_done(standard(df)))
    exits = exit_columns(d)
    if d.empty or not exits:
        return None
    rows = []
    for (ds, label, arch, epochs), g in d.groupby(["dataset", "label", "arch", "epochs"]):
        mine = [c for c in exits if g[c].notna().any()]
        if not mine:
            continue
        rows.append(
            [
                ds,
                label,
                str(arch),
                str(epochs),
                *(stat(g[c]) if c in mine else Stat(math.nan, math.nan, 0) for c in exits),
                stat(g["test_acc"]),
            ]
        )
    if not rows:
        return None
    names = [c.removeprefix("test_acc_") for c in exits]
    return render(
        ["Dataset", "Model", "Architecture", "Epochs", *names, "prediction"],
        rows,
        label="layerwise",
        bold_best=False,
        wide=len(names) > 3,
        title="Layer-wise read-outs: test accuracy (%) of every exit",
        caption="Test accuracy (\\%) of every exit (per-layer read-out) at the end of training, beside the "
        "rule's prediction (SPELA Fig. 3a's last epoch); mean $\\pm$ std over seeds (n).",
    )


# --------------------------------------------------------------------------- SPELA Table 2 + measurements
def efficiency_tables(eff: list[dict]) -> dict[str, tuple[str, str]]:
    if not eff:
        return {}
    e = pd.DataFrame(eff)
    out = {}
    for (ds, arch, device), g in e.groupby(["dataset", "arch", "device"]):
        batches = sorted(g["batch"].unique())
        rows, unmodelled = [], []
        for method, h in sorted(g.groupby("method"), key=lambda kv: _order(kv[0])):
            th = next((t for t in h["theory"] if isinstance(t, dict)), None)
            if th is None:  # said so in the table, never left out
                note = next(
                    (n for n in h.get("theory_note", pd.Series(dtype=object)) if isinstance(n, str) and n),
                    "no cost model",
                )
                unmodelled.append(f"{method_name(method)}: {note}")
                row = [method_name(method) + "*", "n/m", "n/m", "n/m"]
            else:
                row = [
                    method_name(method),
                    _num(th["forward_passes"]),
                    _num(th["backward_passes"]),
                    _num(sum(th["matvecs"])),
                ]
            for b in batches:
                m = h[h["batch"] == b]
                if m.empty:
                    row += ["--"] * 5
                    continue
                m = m.iloc[-1]
                row += [
                    mb(m["peak_bytes"]),
                    mb(m.get("theory_bytes")),
                    gflop(m["flops"]),
                    gflop(m.get("theory_flops")),
                    f"{m['samples_per_s']:.0f}",
                ]
            rows.append(row)
        groups = [("", 1), ("per update", 3), *((f"batch {b}", 5) for b in batches)]
        columns = [
            "Rule",
            "Fwd",
            "Bwd",
            "MV",
            *(c for _ in batches for c in ("Mem. MB", "theory", "GFLOP", "theory", "samples/s")),
        ]
        key = slug(f"efficiency_{ds}_{arch}_{device}")
        out[key] = render(
            columns,
            rows,
            groups=groups,
            align="l" + "r" * (len(columns) - 1),
            bold_best=False,
            wide=True,
            label=key.replace("_", "-"),
            title=f"Efficiency of one training step, {arch} on {ds} ({device}): measured beside SPELA Table 2's model",
            caption=(
                f"Cost of one update of {tex_escape(arch)} ({tex_escape(ds)} inputs, {device}). Theory (SPELA "
                "Table 2, per sample): forward and backward passes and weight-sized matrix-vector products per "
                "update (MV). Measured per step: peak memory the step holds beyond parameters, input and the "
                "gradients it leaves (MB), FLOPs (torch's counter) and samples/s; theory columns: activations "
                "that must be stored x batch x 4 bytes, and 2 x batch x multiply-adds."
            ),
            notes="Mem. = peak bytes allocated by the step and still held, parameter gradients excluded (see "
            "bench/efficiency.py); theory = the activations the update must keep (a lower bound); each rule's "
            "model is its cost_model." + ("".join(f" *n/m (not modelled) {u}." for u in unmodelled)),
        )
    return out


def _order(method: str) -> tuple[int, str]:
    order = ["bp", "fa", "dfa", "drtp", "pepita", "ff", "spela_o", "spela"]
    return (order.index(method) if method in order else len(order), method)


def _num(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "--"
    return f"{v:g}"
