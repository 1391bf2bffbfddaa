"""Turn W&B runs into one table: one row per run, the columns every report is built from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Iterable

import pandas as pd

from reports.wandb_io import WandbRun, iter_api_runs, iter_offline_runs

BASE_COLUMNS = ["dataset", "method", "arch", "seed", "epochs", "epochs_done", "status", "test_acc", "val_acc",
                "train_time_s", "peak_mem_bytes", "peak_mem_kind", "run_id", "name", "config_hash", "setting",
                "group", "test_fraction", "source"]


def _setting(config: dict) -> str:
    """Hash of everything but the seed: runs sharing it are repeats of one setting (a table cell)."""
    ident = {k: v for k, v in config.items() if k not in ("seed", "meta")}
    return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _status(run: WandbRun) -> str:
    status = run.summary.get("status")
    if run.damaged and status in (None, "running"):
        return "partial"
    if status in (None, "running"):
        return "crashed" if run.finished and run.exit_code else "partial"
    return str(status)


def run_row(run: WandbRun) -> dict:
    cfg, summ = run.config, run.summary
    meta = cfg.get("meta") or {}
    vals = [h["val/acc"] for h in run.history if "val/acc" in h]
    row = {
        "dataset": cfg.get("dataset"), "method": cfg.get("method"), "arch": meta.get("arch") or cfg.get("arch"),
        "seed": cfg.get("seed"), "epochs": cfg.get("epochs"), "epochs_done": summ.get("epochs_done", len(vals)),
        "status": _status(run), "test_acc": summ.get("test/acc"), "val_acc": vals[-1] if vals else None,
        "train_time_s": summ.get("train_time_s"), "peak_mem_bytes": summ.get("peak_mem_bytes"),
        "peak_mem_kind": summ.get("peak_mem_kind"), "run_id": run.id, "name": meta.get("name") or run.name,
        "config_hash": meta.get("config_hash"), "setting": _setting(cfg), "group": meta.get("group") or run.group,
        "test_fraction": cfg.get("test_fraction"), "source": run.path, "start_time": run.start_time,
    }
    for key, value in summ.items():  # early-exit read-outs: test/acc/<exit>
        if key.startswith("test/acc/"):
            row["test_acc_" + key.removeprefix("test/acc/")] = value
    return row


def collect_runs(source: str | Path | None = None) -> pd.DataFrame:
    """All runs of ``source``: a runs folder with offline W&B runs (default ./runs), or ``wandb:ENTITY/PROJECT``."""
    from bench.paths import runs_root

    source = str(source) if source else str(runs_root())
    runs: Iterable[WandbRun]
    if source.startswith("wandb:"):
        runs = iter_api_runs(source.removeprefix("wandb:"))
    else:
        if not Path(source).exists():
            raise FileNotFoundError(f"no runs folder at {source}; run `make bench` first or pass SOURCE=")
        runs = iter_offline_runs(source)
    rows = [run_row(r) for r in runs]
    df = pd.DataFrame(rows)
    for col in BASE_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    if len(df):
        df = df.sort_values(["dataset", "method", "arch", "seed", "start_time"], na_position="last")
    return df.reset_index(drop=True)


def latest_per_config(df: pd.DataFrame) -> pd.DataFrame:
    """One run per exact config (re-runs keep the latest that finished, else the latest)."""
    if df.empty:
        return df
    df = df.assign(_done=df["status"].isin(["completed", "diverged"]))
    df = df.sort_values(["_done", "start_time"]).groupby(df["config_hash"].fillna(df["run_id"]), dropna=False).tail(1)
    return df.drop(columns="_done").sort_values(["dataset", "method", "arch", "seed"]).reset_index(drop=True)
