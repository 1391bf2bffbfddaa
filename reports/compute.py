"""The compute a run spent, epoch by epoch (cumulative training time and FLOPs), and the time-to-target tables built on
it (AlgoPerf-style: how much compute each rule needs to first reach a validation accuracy)."""

from __future__ import annotations

import math

import pandas as pd

from reports.paper_tables import _labelled, render, standard
from reports.tables import tex_escape


def compute_frame(hist: pd.DataFrame, runs: pd.DataFrame, eff: list[dict]) -> pd.DataFrame:
    """Per-epoch rows of the main comparison runs with their cumulative training time (the records' per-epoch
    training-loop seconds) and cumulative training FLOPs (``make efficiency``'s FLOPs of one step at its batch size,
    times the epoch's samples over that batch; NaN where the rule and arch were not measured)."""
    from reports.tables import is_comparison_row

    if hist.empty or "val/acc" not in hist:
        return pd.DataFrame()
    keep = _labelled(standard(runs[runs["status"] == "completed"]))
    keep = keep[[is_comparison_row(m, a, t) for m, a, t in zip(keep["method"], keep["arch_full"], keep["tuned"])]]
    h = hist.merge(keep[["run_id", "label", "epochs"]], on="run_id").sort_values(["run_id", "epoch"])
    if h.empty:
        return h
    t = h["train/epoch_time_s"] if "train/epoch_time_s" in h else pd.Series(float("nan"), index=h.index)
    h = h.assign(time_s=t.groupby(h["run_id"]).cumsum(), acc=h["val/acc"] * 100)
    h["curve"] = h["label"] + " (" + h["arch"].astype(str) + ", " + h["epochs"].astype(int).astype(str) + " ep)"
    flops = {}
    for e in eff or []:
        if e.get("flops"):
            flops.setdefault((e["dataset"], e["method"], e["arch"]), (e["flops"], e["batch"]))
    per_step = [flops.get((d, m, a)) for d, m, a in zip(h["dataset"], h["method"], h["arch"])]
    samples = h["train/samples"] if "train/samples" in h else pd.Series(float("nan"), index=h.index)
    f = [(fb[0] * s / fb[1]) if fb else float("nan") for fb, s in zip(per_step, samples)]
    h["flops"] = pd.Series(f, index=h.index).groupby(h["run_id"]).cumsum()
    return h


def time_to_target_tables(hist: pd.DataFrame, runs: pd.DataFrame, eff: list[dict]) -> dict[str, tuple[str, str]]:
    """Per dataset and epoch budget: for targets 80%, 85% and BP's final validation accuracy minus 1 point, the
    epochs, training seconds and FLOPs each setting needs to first reach the target on validation (median over
    seeds; "not reached" when fewer than half of its seeds reach it within the budget)."""
    h = compute_frame(hist, runs, eff)
    out: dict[str, tuple[str, str]] = {}
    if h.empty:
        return out
    for (ds, budget), g in h.groupby(["dataset", "epochs"]):
        bp = g[g["method"] == "bp"]
        targets = [80.0, 85.0]
        if not bp.empty:
            final = bp[bp["epoch"] == bp.groupby("run_id")["epoch"].transform("max")]["acc"].mean()
            targets.append(round(float(final) - 1.0, 2))
        rows = []
        for curve, c in g.groupby("curve"):
            cells = [curve.rsplit(" (", 1)[0], str(c["arch"].iloc[0])]
            for t in targets:
                firsts = []
                for _, r in c.groupby("run_id"):
                    hit = r[r["acc"] >= t]
                    firsts.append(hit.iloc[0] if len(hit) else None)
                reached = [f for f in firsts if f is not None]
                if len(reached) * 2 < len(firsts) or not reached:
                    cells.append("not reached")
                    continue
                ep = pd.Series([f["epoch"] for f in reached]).median()
                sec = pd.Series([f["time_s"] for f in reached]).median()
                fl = pd.Series([f["flops"] for f in reached]).median()
                flops = "" if math.isnan(fl) else f", {fl / 1e12:.2f} TFLOP"
                cells.append(f"{ep:g} ep, {sec:.0f} s{flops}")
            rows.append(cells)
        rows.sort(key=lambda r: r[0])
        names = [f"to {t:g}%" for t in targets[:2]] + ([f"to {targets[2]:g}% (BP - 1 pt)"] if len(targets) > 2 else [])
        out[f"time_to_target_{ds}_e{int(budget)}"] = render(
            ["Method", "Architecture", *names],
            rows,
            caption=(
                f"Time to target on {tex_escape(ds)}, {int(budget)}-epoch budget: epochs, training seconds and "
                "FLOPs until the validation accuracy first reaches the target (median over seeds; not reached: "
                "fewer than half of the seeds reach it within the budget). FLOPs from make efficiency where measured."
            ),
            label=f"ttt-{ds}-{int(budget)}",
            title=f"{ds}, {int(budget)} epochs: time to target (validation accuracy)",
            bold_best=False,
            align="ll" + "r" * len(names),
            wide=True,
        )
    return out
