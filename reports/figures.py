"""Figures of the report (seaborn, Agg backend; PNG, used by index.md and report.tex), one function per figure.

Every curve is the mean over seeds with a ± std band; a rule keeps its colour in every figure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from bench.records import DONE
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


def learning_curves(hist: pd.DataFrame, runs: pd.DataFrame, out: Path) -> list[Path]:
    """Validation accuracy per epoch on the standard split (one curve per rule setting), per dataset. (Training
    losses are left out: every rule has its own loss, on its own scale.)"""
    plt, sns = _plt()
    if hist.empty or "val/acc" not in hist:
        return []
    keep = _labelled(standard(runs[runs["status"].isin(DONE)]))
    h = hist.merge(keep[["run_id", "label", "epochs"]], on="run_id")
    paths = []
    for ds, g in h.groupby("dataset"):
        g = g[g["val/acc"].notna()]
        if g.empty:
            continue
        g = g.assign(
            curve=g["label"] + " (" + g["arch"].astype(str) + ", " + g["epochs"].astype(int).astype(str) + " ep)",
            acc=g["val/acc"] * 100,
        )
        pal = _palette(g["curve"])
        fig, ax = plt.subplots(figsize=(8.5, 4.6))
        sns.lineplot(data=g, x="epoch", y="acc", hue="curve", palette=pal, errorbar="sd", marker="o", ax=ax)
        ax.set(
            title=f"{ds}: validation accuracy during training (mean ± std over seeds)",
            xlabel="epoch",
            ylabel="validation accuracy (%)",
        )
        ax.legend(fontsize=7, title=None, bbox_to_anchor=(1.02, 1), loc="upper left")
        _epochs_axis(ax)
        paths.append(_save(fig, out, _slug("learning", ds)))
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
        panels = [(k, p) for k, p in g.groupby(["label", "arch"]) if p[columns].notna().any().any()]
        if not panels:
            continue
        fig, axes = _grid(len(panels))
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
        fig, axes = plt.subplots(2, len(batches), figsize=(5.5 * len(batches), 6.5), squeeze=False)
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
                axes[i][j].tick_params(axis="x", rotation=30)
                axes[i][j].legend(fontsize=7, title=None)
        fig.suptitle(f"One training step on {ds} inputs ({device}): measured vs SPELA Table 2's model", y=1.01)
        fig.tight_layout()
        paths.append(_save(fig, out, _slug("efficiency", ds, arch, device)))
    return paths
