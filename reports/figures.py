"""Figures of the report (seaborn, Agg backend; PNG, used by index.md and report.tex), one function per figure.

Every curve is the mean over seeds with a ± std band; a rule keeps its colour in every figure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from bench.records import DONE
from reports.compute import compute_frame
from reports.labels import method_name
from reports.paper_tables import _labelled, _order, standard


def _plt():
    from bench.paths import runs_root

    os.environ.setdefault("MPLCONFIGDIR", str(runs_root() / ".mplconfig"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    return plt, sns


def _palette(labels) -> dict[str, tuple]:
    """A fixed colour per label (sorted), shared by every figure of one report."""
    _, sns = _plt()
    labels = sorted(set(labels))
    return dict(zip(labels, sns.color_palette("tab10" if len(labels) <= 10 else "tab20", len(labels))))


def _grid(n: int, w: float = 4.6, h: float = 3.6, cols: int = 3):
    """A figure with ``n`` panels wrapped into rows of ``cols``; unused panels hidden. Returns (fig, flat axes)."""
    plt, _ = _plt()
    ncols = min(n, cols)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, h * nrows), squeeze=False, sharey=True)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _epochs_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    lo, hi = ax.dataLim.x0, ax.dataLim.x1
    if hi - lo < 1:  # one epoch: a window around it, not sub-epoch ticks
        ax.set_xlim(lo - 1, hi + 1)


def _wrap(text: str, width: int = 38) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _slug(*parts) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts)).strip("-")


def _save(fig, out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{name}.png"
    fig.savefig(png, dpi=160, bbox_inches="tight")
    _plt()[0].close(fig)
    return png


def fewshot_curves(df: pd.DataFrame, out: Path) -> list[Path]:
    """SPELA Fig. 5: test accuracy vs test fraction, one panel per epoch budget, per dataset."""
    plt, sns = _plt()
    d = _labelled(
        df[(df["status"] == "completed") & df["test_fraction"].notna() & ~df["dataset"].astype(str).str.contains(":")]
    )
    paths = []
    for ds, g in d.groupby("dataset"):
        g = g.assign(acc=g["test_acc"] * 100, curve=g["label"] + " (" + g["arch"].astype(str) + ")")
        budgets = sorted(g["epochs"].unique())
        fig, axes = plt.subplots(1, len(budgets), figsize=(5.2 * len(budgets), 3.8), squeeze=False, sharey=True)
        pal = _palette(g["curve"])
        for ax, ep in zip(axes[0], budgets):
            sns.lineplot(
                data=g[g["epochs"] == ep],
                x="test_fraction",
                y="acc",
                hue="curve",
                palette=pal,
                marker="o",
                errorbar="sd",
                ax=ax,
                legend=ax is axes[0][-1],
            )
            ax.set(
                title=f"{ds}, {int(ep)} epochs",
                xlabel="test fraction (rest: training data)",
                ylabel="test accuracy (%)",
            )
        axes[0][-1].legend(title=None, fontsize=8, loc="lower left")
        paths.append(_save(fig, out, _slug("fewshot", ds)))
    return paths


def transfer_curves(df: pd.DataFrame, out: Path) -> list[Path]:
    """SPELA Fig. 6: top-1 and top-5 vs test fraction per rule, one panel per dataset."""
    plt, sns = _plt()
    d = _labelled(
        df[(df["status"] == "completed") & df["test_fraction"].notna() & df["dataset"].astype(str).str.contains(":")]
    )
    if d.empty:
        return []
    long = pd.concat(
        [d.assign(acc=d["test_acc"] * 100, k="top-1"), d.assign(acc=d["test_acc5"] * 100, k="top-5")], ignore_index=True
    )
    datasets = sorted(long["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.6 * len(datasets), 3.8), squeeze=False)
    pal = _palette(long["label"])
    for ax, ds in zip(axes[0], datasets):
        sns.lineplot(
            data=long[long["dataset"] == ds],
            x="test_fraction",
            y="acc",
            hue="label",
            style="k",
            palette=pal,
            marker="o",
            errorbar="sd",
            ax=ax,
            legend=ax is axes[0][0],
        )
        ax.set(title=ds, xlabel="test fraction", ylabel="test accuracy (%)")
    return [_save(fig, out, "transfer")]


FAMILIES = (
    ("feedback alignment", ("fa", "dfa", "drtp", "sign_symmetry", "kolen_pollack", "brsf", "frsf")),
    ("forward-only", ("pepita", "ff", "spela", "spela_o", "spela_cnn")),
    ("forward gradient and local learning", ("fg", "local_learning")),
)
"""Panels of the per-rule figures: rule families (a rule not listed goes to "other"); BP is drawn in every panel as
the reference."""
MAX_LINES = 10
"""At most this many lines per panel (BP's included); beyond it, the settings of highest final validation
accuracy are kept and the panel title says how many were left out."""


def family(method: str) -> str:
    for name, members in FAMILIES:
        if method in members or any(method.startswith(m + "_") for m in members if m == "fg"):
            return name
    return "BP" if method == "bp" else "other"


def _log_ticks(ax, axis: str = "x") -> None:
    """Plain numbers on a log axis (1, 2, 5, 10, ... instead of 2x10^0)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(fmt)
    target.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _panels_by_family(g: pd.DataFrame, key: str = "curve", score: str = "final") -> list[tuple[str, pd.DataFrame, int]]:
    """(family title, rows, settings left out) per family present in ``g``, BP's rows added to each; at most
    ``MAX_LINES`` curves, the others dropped by lowest ``score`` (a validation quantity)."""
    bp = g[g["method"] == "bp"]
    out = []
    names = [n for n, _ in FAMILIES] + ["other"]
    for name in names:
        fam = g[[family(m) == name for m in g["method"]]]
        if fam.empty:
            continue
        curves = fam.groupby(key)[score].mean().sort_values(ascending=False)
        room = MAX_LINES - bp[key].nunique()
        kept = list(curves.index[:room])
        out.append((name, pd.concat([bp, fam[fam[key].isin(kept)]]), max(0, len(curves) - len(kept))))
    if not out and not bp.empty:
        out.append(("BP", bp, 0))
    return out


def learning_curves(hist: pd.DataFrame, runs: pd.DataFrame, out: Path) -> list[Path]:
    """Validation accuracy per epoch on the standard split, mean ± std over seeds, per dataset and epoch budget: one
    panel per rule family (BP in each, at most ``MAX_LINES`` lines), each panel's x axis its runs' epochs. (Training
    losses are left out: every rule has its own loss, on its own scale.)"""
    plt, sns = _plt()
    if hist.empty or "val/acc" not in hist:
        return []
    from reports.tables import is_comparison_row

    keep = _labelled(standard(runs[runs["status"].isin(DONE)]))
    keep = keep[[is_comparison_row(m, a, t) for m, a, t in zip(keep["method"], keep["arch_full"], keep["tuned"])]]
    h = hist.merge(keep[["run_id", "label", "epochs"]], on="run_id")
    paths = []
    for (ds, budget), g in h.groupby(["dataset", "epochs"]):
        g = g[g["val/acc"].notna()]
        if g.empty or g["epoch"].nunique() < 2:
            continue  # one epoch: no curve (the tables hold the numbers)
        g = g.assign(curve=g["label"] + " (" + g["arch"].astype(str) + ")", acc=g["val/acc"] * 100)
        last = g[g["epoch"] == g.groupby("run_id")["epoch"].transform("max")]
        g = g.merge(last.groupby("curve")["acc"].mean().rename("final"), left_on="curve", right_index=True)
        panels = _panels_by_family(g)
        fig, axes = _grid(len(panels), w=5.6, h=4.2, cols=3)
        for ax, (name, p, dropped) in zip(axes, panels):
            pal = dict(zip(sorted(p["curve"].unique()), sns.color_palette("tab10", p["curve"].nunique())))
            sns.lineplot(data=p, x="epoch", y="acc", hue="curve", palette=pal, errorbar="sd", marker="o", ax=ax)
            ax.set(
                title=name + (f" ({dropped} more settings not drawn)" if dropped else ""),
                xlabel="epoch",
                ylabel="validation accuracy (%)",
                xlim=(0.8, int(budget) + 0.2),
            )
            _below(ax)
            _epochs_axis(ax)
        fig.suptitle(f"{ds}, {int(budget)} epochs: validation accuracy during training (mean ± std over seeds)")
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        paths.append(_save(fig, out, _slug("learning", ds, f"e{int(budget)}")))
    return paths


def _below(ax) -> None:
    """The legend under the panel, where it hides no line."""
    ax.legend(fontsize=6.5, title=None, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)


def accuracy_vs_compute(hist: pd.DataFrame, runs: pd.DataFrame, eff: list[dict], out: Path) -> list[Path]:
    """Validation accuracy against cumulative training time and against cumulative training FLOPs, per dataset: one
    row of panels per x quantity, one panel per rule family (BP in each; a line per setting with its epoch budget:
    per epoch, the seeds' mean compute against their mean accuracy, a ± std band)."""
    plt, sns = _plt()
    h = compute_frame(hist, runs, eff)
    if h.empty:
        return []
    h = h.assign(tflop=h["flops"] / 1e12)
    paths = []
    for ds, g in h.groupby("dataset"):
        last = g[g["epoch"] == g.groupby("run_id")["epoch"].transform("max")]
        g = g.merge(last.groupby("curve")["acc"].mean().rename("final"), left_on="curve", right_index=True)
        panels = _panels_by_family(g)
        xs = [("time_s", "cumulative training time, s (log)")]
        if g["tflop"].notna().any():
            xs.append(("tflop", "cumulative training TFLOP (log; make efficiency's per-step count)"))
        fig, axes = plt.subplots(
            len(xs), len(panels), figsize=(5.6 * len(panels), 5.2 * len(xs)), squeeze=False, sharey=True
        )
        from matplotlib.lines import Line2D

        pals = [
            dict(zip(sorted(p["curve"].unique()), sns.color_palette("tab10", p["curve"].nunique())))
            for _, p, _ in panels
        ]
        for i, (x, xlabel) in enumerate(xs):
            for j, (name, p, dropped) in enumerate(panels):
                ax = axes[i][j]
                pal = pals[j]  # one colour per setting in both rows of a column
                if i == len(xs) - 1:
                    handles = [Line2D([], [], color=col, marker="o", ms=4, label=c) for c, col in pal.items()]
                    ax.legend(
                        handles=handles,
                        fontsize=6.5,
                        loc="upper center",
                        bbox_to_anchor=(0.5, -0.2),
                        frameon=False,
                    )
                p = p[p[x].notna() & (p[x] > 0)]
                if p.empty:
                    ax.text(0.5, 0.5, "not measured (make efficiency)", ha="center", transform=ax.transAxes)
                    ax.set(xticks=[], title=name, xlabel=xlabel)
                    continue
                curves = sorted(p["curve"].unique())
                for c in curves:
                    q = p[p["curve"] == c].groupby("epoch").agg(x=(x, "mean"), m=("acc", "mean"), sd=("acc", "std"))
                    ax.plot(q["x"], q["m"], marker="o", ms=4, lw=1.4, color=pal[c], label=c)
                    ax.fill_between(
                        q["x"], q["m"] - q["sd"].fillna(0), q["m"] + q["sd"].fillna(0), color=pal[c], alpha=0.2
                    )
                ax.set_xscale("log")
                _log_ticks(ax)
                ax.set(
                    title=name + (f" ({dropped} more not drawn)" if dropped else ""),
                    xlabel=xlabel,
                    ylabel="validation accuracy (%)",
                )
        fig.suptitle(f"{ds}: validation accuracy against the compute spent (mean ± std over seeds)")
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        paths.append(_save(fig, out, _slug("acc_vs_compute", ds)))
    return paths


def pareto_fronts(runs: pd.DataFrame, eff: list[dict], out: Path) -> list[Path]:
    """Final test accuracy of each rule's setting (chosen on validation accuracy) against its peak step memory
    (``make efficiency``) and against its seconds per training epoch, per dataset; the Pareto front (no other point
    both more accurate and cheaper) joined by a line, points labelled with their epoch budget."""
    from reports.tables import is_comparison_row

    plt, _ = _plt()
    d = _labelled(standard(runs[runs["status"] == "completed"]))
    d = d[[is_comparison_row(m, a, t) for m, a, t in zip(d["method"], d["arch_full"], d["tuned"])]]
    if d.empty:
        return []
    d = d.assign(
        spe=pd.to_numeric(d["train_time_s"], errors="coerce") / pd.to_numeric(d["epochs_done"], errors="coerce")
    )
    mem = {}
    for e in eff or []:
        mem.setdefault((e["dataset"], e["method"], e["arch"]), e.get("peak_bytes"))
    paths = []
    for ds, g in d.groupby("dataset"):
        per = (
            g.groupby(["method", "arch", "epochs", "setting"])
            .agg(acc=("test_acc", "mean"), val=("val_acc", "mean"), spe=("spe", "mean"), label=("label", "first"))
            .reset_index()
        )
        best = choose_on_validation(per, ["method", "arch", "epochs"])
        best = best.assign(
            acc=best["acc"] * 100,
            mem=[(mem.get((ds, m, a)) or float("nan")) / 2**20 for m, a in zip(best["method"], best["arch"])],
        )
        xs = [("spe", "seconds per training epoch (log)")]
        if best["mem"].notna().any():
            xs.insert(0, ("mem", "peak step memory, MB (batch 64; log)"))
        best = best.assign(
            point=[
                f"{method_name(m)} ({a}, {int(e)} ep)" for m, a, e in zip(best["method"], best["arch"], best["epochs"])
            ]
        )
        pal = dict(zip(sorted(best["point"]), _plt()[1].color_palette("tab20", best["point"].nunique())))
        fig, axes = plt.subplots(1, len(xs), figsize=(6.4 * len(xs) + 3.2, 5.0), squeeze=False)
        for ax, (x, xlabel) in zip(axes[0], xs):
            p = best[best[x].notna() & (best[x] > 0)].sort_values(x)
            for _, r in p.iterrows():
                ax.scatter(r[x], r["acc"], s=36, color=pal[r["point"]], zorder=3, label=r["point"])
            front, top = [], -1.0
            for _, r in p.iterrows():  # cheapest first: a point is on the front when it beats every cheaper one
                if r["acc"] > top:
                    front.append(r)
                    top = r["acc"]
            if front:
                f = pd.DataFrame(front)
                ax.plot(f[x], f["acc"], color="0.3", lw=1.2, ls="--", zorder=2)
                for k, (_, r) in enumerate(f.iterrows()):  # only the front is labelled in the panel
                    ax.annotate(
                        method_name(r["method"]),
                        (r[x], r["acc"]),
                        fontsize=7,
                        xytext=(5, -10 if k % 2 else 4),
                        textcoords="offset points",
                    )
            ax.set_xscale("log")
            _log_ticks(ax)
            ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title="dashed: Pareto front (cheaper and more accurate)")
        handles, labels = axes[0][-1].get_legend_handles_labels()
        axes[0][-1].legend(handles, labels, fontsize=6.5, bbox_to_anchor=(1.02, 1), loc="upper left", frameon=False)
        fig.suptitle(f"{ds}: accuracy against cost per rule (setting chosen on validation accuracy)")
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        paths.append(_save(fig, out, _slug("pareto", ds)))
    return paths


def lr_sensitivity(entries: list[dict], out: Path) -> list[Path]:
    """Validation accuracy of every sweep trial against its learning rate, one panel per rule family, a line per
    (rule, arch) cell, per dataset (from the tuned entries' ``trials``; protocol v1 only): a rule that trains only
    in a narrow band shows it."""
    plt, sns = _plt()
    rows = []
    for e in entries:
        for t in e.get("trials") or []:
            if t.get("value") is not None and "lr" in (t.get("params") or {}):
                rows.append(
                    {
                        "dataset": e["dataset"],
                        "method": e["method"],
                        "curve": f"{method_name(e['method'])} ({e['arch_short']})",
                        "lr": t["params"]["lr"],
                        "acc": 100 * t["value"],
                        "final": 100 * (e.get("val_acc") or 0),
                    }
                )
    if not rows:
        return []
    d = pd.DataFrame(rows)
    paths = []
    for ds, g in d.groupby("dataset"):
        panels = _panels_by_family(g.assign(method=g["method"]))
        fig, axes = _grid(len(panels), w=5.4, h=4.0, cols=3)
        for ax, (name, p, dropped) in zip(axes, panels):
            pal = dict(zip(sorted(p["curve"].unique()), sns.color_palette("tab10", p["curve"].nunique())))
            for c, q in p.sort_values("lr").groupby("curve"):
                ax.plot(q["lr"], q["acc"], marker="o", lw=1, ms=4, color=pal[c], label=c)
            ax.set_xscale("log")
            _log_ticks(ax)
            ax.set(
                title=name + (f" ({dropped} more not drawn)" if dropped else ""),
                xlabel="learning rate (log)",
                ylabel="validation accuracy (%)",
            )
            ax.legend(fontsize=6.5, title=None)
        fig.suptitle(f"{ds}: learning-rate sensitivity (every sweep trial's validation accuracy, protocol v1)")
        fig.tight_layout(rect=(0, 0, 1, 0.96))
        paths.append(_save(fig, out, _slug("lr_sensitivity", ds)))
    return paths


def layerwise_curves(hist: pd.DataFrame, runs: pd.DataFrame, out: Path) -> list[Path]:
    """SPELA Fig. 3a: validation accuracy of every exit per epoch, one panel per (rule, arch), per dataset."""
    _, sns = _plt()
    exits = [c for c in hist.columns if c.startswith("val/acc/")] if not hist.empty else []
    if not exits:
        return []

    def draw(ax, long: pd.DataFrame, title: str) -> None:
        long["acc"] = 100 * long.pop("value")
        long["exit"] = long["exit"].str.removeprefix("val/acc/")
        sns.lineplot(data=long, x="epoch", y="acc", hue="exit", marker="o", errorbar="sd", ax=ax)
        ax.set(title=title, xlabel="epoch", ylabel="validation accuracy (%)")
        ax.legend(fontsize=7, title="exit")

    keep = _labelled(standard(runs[runs["status"] == "completed"]))
    return _history_panels(
        hist,
        keep,
        exits,
        "exit",
        draw,
        out,
        "layerwise",
        "validation accuracy of every layer's read-out (mean ± std over seeds)",
    )


def alignment_curves(hist: pd.DataFrame, runs: pd.DataFrame, out: Path) -> list[Path]:
    """cos(update, BP gradient) per block over training, one panel per rule, per dataset."""
    _, sns = _plt()
    blocks = (
        sorted((c for c in hist.columns if c.startswith("align/b")), key=lambda c: int(c[7:])) if not hist.empty else []
    )
    if not blocks:
        return []

    def draw(ax, long: pd.DataFrame, title: str) -> None:
        long = long.rename(columns={"value": "cos"})
        long["block"] = "block " + long["block"].str.removeprefix("align/b")
        sns.lineplot(data=long, x="epoch", y="cos", hue="block", marker="o", errorbar="sd", ax=ax)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set(title=title, xlabel="epoch", ylabel="cos(update, BP gradient)", ylim=(-1.05, 1.05))
        ax.legend(fontsize=7, title=None)

    keep = _labelled(runs[runs["status"].isin(DONE)])
    return _history_panels(
        hist,
        keep,
        blocks,
        "block",
        draw,
        out,
        "alignment",
        "alignment of each block's update with the BP gradient (mean ± std over seeds)",
    )


def _history_panels(
    hist: pd.DataFrame, keep: pd.DataFrame, columns: list[str], var_name: str, draw, out: Path, slug: str, what: str
) -> list[Path]:
    """Per dataset, one panel per (run label, arch) of the per-epoch ``columns`` (mean ± std over seeds): the
    history is melted to long form (``var_name``, ``value``) and ``draw(ax, long, title)`` plots it."""
    h = hist.merge(keep[["run_id", "label"]], on="run_id")
    paths = []
    for ds, g in h.groupby("dataset"):
        # a panel needs a curve: at least two epochs (single-epoch runs are in the tables)
        panels = [
            (k, p)
            for k, p in g.groupby(["label", "arch"])
            if p[columns].notna().any().any() and p["epoch"].nunique() > 1
        ]
        if not panels:
            continue
        fig, axes = _grid(len(panels), w=4.2, h=3.3, cols=4)
        for ax, ((label, arch), p) in zip(axes, panels):
            cols = [c for c in columns if p[c].notna().any()]
            long = p.melt(id_vars=["epoch", "seed"], value_vars=cols, var_name=var_name, value_name="value").dropna()
            draw(ax, long, _wrap(f"{label}, {arch}"))
            _epochs_axis(ax)
        fig.suptitle(f"{ds}: {what}")
        fig.tight_layout(rect=(0, 0, 1, 0.98))  # keep the suptitle clear of the first row's titles
        paths.append(_save(fig, out, _slug(slug, ds)))
    return paths


def choose_on_validation(per: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per ``keys`` group: the setting with the highest mean validation accuracy (``val``), ties broken by the
    setting hash. Test accuracy plays no part in the choice."""
    ordered = per.assign(_val=per["val"].astype(float).fillna(-1.0)).sort_values(["_val", "setting"])
    return ordered.groupby(keys).tail(1).drop(columns="_val")


def accuracy_vs_memory(runs: pd.DataFrame, eff: list[dict], out: Path, batch: int = 64) -> list[Path]:
    """Test accuracy against the measured peak step memory (bench/efficiency.py at ``batch``, same dataset and
    arch), per dataset: one point per rule and arch, its setting of highest mean *validation* accuracy (chosen
    without looking at test data; the point shows that setting's test mean ± std over seeds); rules without a
    measurement are left out."""
    plt, sns = _plt()
    if not eff:
        return []
    e = pd.DataFrame(eff)
    e = e[e["batch"] == batch] if (e["batch"] == batch).any() else e[e["batch"] == e["batch"].max()]
    d = _labelled(standard(runs[runs["status"] == "completed"]))
    m = d.merge(e[["dataset", "method", "arch", "peak_bytes", "batch"]], on=["dataset", "method", "arch"])
    if m.empty:
        return []
    paths = []
    for ds, g in m.groupby("dataset"):
        per = (
            g.groupby(["method", "arch", "setting"])
            .agg(
                acc=("test_acc", "mean"),
                sd=("test_acc", "std"),
                val=("val_acc", "mean"),
                mem=("peak_bytes", "first"),
                b=("batch", "first"),
                label=("label", "first"),
            )
            .reset_index()
        )
        # each rule's setting on that arch chosen on validation accuracy (ties: the setting hash, never test data)
        best = choose_on_validation(per, ["method", "arch"])
        best = best.assign(
            acc=best["acc"] * 100,
            sd=best["sd"].fillna(0) * 100,
            mem=best["mem"] / 2**20,
            point=[f"{method_name(mt)} ({a})" for mt, a in zip(best["method"], best["arch"])],
        )
        best = best.sort_values("point")
        fig, ax = plt.subplots(figsize=(7.8, 4.4))
        pal = _palette(best["point"])
        for _, r in best.iterrows():
            ax.errorbar(
                r["mem"], r["acc"], yerr=r["sd"], fmt="o", color=pal[r["point"]], capsize=3, ms=8, label=r["point"]
            )
        ax.set(
            xlabel=f"peak step memory, MB (batch {int(best['b'].iloc[0])}, gradients excluded; log)",
            ylabel="test accuracy (%)",
            title=f"{ds}: accuracy vs memory of one update (best setting per rule)",
        )
        ax.set_xscale("log")
        ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
        paths.append(_save(fig, out, _slug("acc_vs_memory", ds)))
    return paths


def efficiency_bars(eff: list[dict], out: Path) -> list[Path]:
    """Measured peak step memory and FLOPs beside the theoretical model, per rule, per arch and batch size."""
    plt, sns = _plt()
    if not eff:
        return []
    e = pd.DataFrame(eff)
    paths = []
    for (ds, arch, device), g in e.groupby(["dataset", "arch", "device"]):
        g = g.assign(rule=[method_name(m) for m in g["method"]])
        long = pd.concat(
            [
                g.assign(what="memory, measured", value=g["peak_bytes"] / 2**20),
                g.assign(what="memory, theory", value=g["theory_bytes"] / 2**20),
                g.assign(what="GFLOP, measured", value=g["flops"] / 1e9),
                g.assign(what="GFLOP, theory", value=g["theory_flops"] / 1e9),
            ],
            ignore_index=True,
        )
        batches = sorted(g["batch"].unique())
        order = [method_name(m) for m in sorted(g["method"].unique(), key=_order)]
        fig, axes = plt.subplots(
            2, len(batches), figsize=(max(7.5, 0.55 * len(order)) * len(batches), 8.0), squeeze=False
        )
        for j, b in enumerate(batches):
            for i, (kind, unit) in enumerate((("memory", "peak step memory, MB (log)"), ("GFLOP", "GFLOP per step"))):
                sub = long[(long["batch"] == b) & long["what"].str.startswith(kind)]
                sns.barplot(
                    data=sub,
                    x="rule",
                    y="value",
                    hue="what",
                    ax=axes[i][j],
                    order=order,
                    palette=["#4c72b0", "#a1c9f4"] if i == 0 else ["#dd8452", "#ffb482"],
                )
                axes[i][j].set(title=f"{arch}, batch {b}", xlabel="", ylabel=unit)
                if i == 0:
                    axes[i][j].set_yscale("log")
                    _log_ticks(axes[i][j], "y")
                axes[i][j].tick_params(axis="x", rotation=45)
                for lab in axes[i][j].get_xticklabels():
                    lab.set_horizontalalignment("right")
                axes[i][j].legend(fontsize=7, title=None)
        fig.suptitle(f"One training step on {ds} inputs ({device}): measured vs SPELA Table 2's model", y=1.01)
        fig.tight_layout()
        paths.append(_save(fig, out, _slug("efficiency", ds, arch, device)))
    return paths
