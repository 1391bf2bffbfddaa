"""Turn W&B runs into one table: one row per run, the columns every report is built from."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.ids import config_hash
from bench.records import DONE, RUN_META, RUN_SUMMARY, iter_records, ran_untuned
from bench.wandb_io import WandbRun, iter_api_runs, iter_offline_runs
from reports import labels

BASE_COLUMNS = [
    "dataset",
    "method",
    "arch",
    "seed",
    "epochs",
    "epochs_done",
    "status",
    "test_acc",
    "test_acc5",
    "val_acc",
    "train_time_s",
    "peak_mem_bytes",
    "peak_mem_kind",
    "run_id",
    "name",
    "config_hash",
    "setting",
    "group",
    "test_fraction",
    "val_fraction",
    "batch_size",
    "arch_full",
    "rule",
    "source",
    "tuned",
    "protocol",
]


RUN_OPTIONS = {"batch_size": 64, "limit_train": None, "norm": "standard", "augment": False}
"""Run-level settings (and their defaults) that set a run apart in labels when they differ."""


def _setting(config: dict) -> str:
    """Hash of everything but the seed: runs sharing it are repeats of one setting (a table cell)."""
    ident = {k: v for k, v in config.items() if k not in ("seed", "meta", *W_AND_B_KEYS)}
    return config_hash(ident)


W_AND_B_KEYS = ("profile", "protocol", "setting", "job_type", "sweep")
"""Top-level keys a run's W&B config carries beside its identity (bench.run._make_logger): not part of its setting."""


def is_training_run(run: WandbRun) -> bool:
    """A grid or ``bench run`` run, not a sweep trial, transfer check or perf run (W&B job type / record field)."""
    job = run.config.get("job_type") or (run.config.get("meta") or {}).get("job_type")
    return job in (None, "train")


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
    labels.learn(meta.get("method") or cfg.get("method"), cfg.get("arch"), meta.get("labels"))
    vals = [h["val/acc"] for h in run.history if "val/acc" in h]
    row = {
        "dataset": cfg.get("dataset"),
        "method": cfg.get("method"),
        "arch": meta.get("arch") or cfg.get("arch"),
        "seed": cfg.get("seed"),
        "epochs": cfg.get("epochs"),
        "epochs_done": summ.get("epochs_done", len(vals)),
        "status": _status(run),
        "test_acc": summ.get("test/acc"),
        "val_acc": vals[-1] if vals else None,
        "train_time_s": summ.get("train_time_s"),
        "peak_mem_bytes": summ.get("peak_mem_bytes"),
        "peak_mem_kind": summ.get("peak_mem_kind"),
        "run_id": run.id,
        "name": meta.get("name") or run.name,
        "config_hash": meta.get("config_hash"),
        "setting": _setting(cfg),
        "group": meta.get("group") or run.group,
        "test_fraction": cfg.get("test_fraction"),
        "source": run.path,
        "start_time": run.start_time,
        "test_acc5": summ.get("test/acc5"),
        "val_fraction": cfg.get("val_fraction"),
        "batch_size": cfg.get("batch_size"),
        "arch_full": cfg.get("arch"),
        "rule": json.dumps(cfg.get("rule") or {}, sort_keys=True),
        "tuned": meta.get("tuned"),
        "protocol": meta.get("protocol"),
        "run_options": json.dumps({k: cfg[k] for k in RUN_OPTIONS if k in cfg and cfg[k] != RUN_OPTIONS[k]}),
    }
    for key, value in summ.items():  # early-exit read-outs: test/acc/<exit>
        if key.startswith("test/acc/"):
            row["test_acc_" + key.removeprefix("test/acc/")] = value
    return row


def record_run(record: dict, path: str = "") -> WandbRun:
    """A run record (``<runs>/records/<name>.json``) seen as a W&B run."""
    import time

    meta = {k: record.get(k) for k in RUN_META}
    if meta["tuned"] is False and not ran_untuned(False, record.get("rule_sources")):
        meta["tuned"] = None  # a claim's or profile's own learning rate: not the rule's defaults
    summary = {k: record.get(k) for k in RUN_SUMMARY}
    summary.update(record.get("test") or {})
    try:
        start = time.mktime(time.strptime(record.get("started", ""), "%Y-%m-%dT%H:%M:%S%z"))
    except (TypeError, ValueError):
        start = 0.0
    status = record.get("status")
    return WandbRun(
        id=record.get("id") or record.get("name", ""),
        name=record.get("name", ""),
        group=record.get("group") or "",
        config={**(record.get("config") or {}), "meta": meta},
        summary=summary,
        history=list(record.get("history") or []),
        finished=status != "running",
        exit_code=0 if status in DONE else 1,
        start_time=start,
        path=path,
    )


def _skipped(path: Path, why: str) -> None:
    print(f"note: skipped {path}: not a run record ({why})", file=sys.stderr)


def iter_record_runs(root: str | Path) -> Iterable[WandbRun]:
    for f, rec in iter_records(root, on_skip=_skipped):
        yield record_run(rec, str(f))


def _hash(run: WandbRun) -> str | None:
    return (run.config.get("meta") or {}).get("config_hash")


def load_runs(source: str | Path | None = None) -> list[WandbRun]:
    """All runs of ``source``: a runs folder (default ./runs), or ``wandb:ENTITY/PROJECT`` (the W&B API).

    In a runs folder the run records are the truth. A W&B run file is read only for a configuration whose record
    does not hold a result: a finished W&B run then stands in for it (its record could not be written, e.g. on a
    full disk). W&B files without a configuration (a run killed before W&B wrote its config) are ignored."""
    from bench.paths import runs_root

    source = str(source) if source else str(runs_root())
    if source.startswith("wandb:"):  # sweep trials and perf runs live in the same project: only training runs
        return [r for r in iter_api_runs(source.removeprefix("wandb:")) if is_training_run(r)]
    if not Path(source).is_dir():
        raise BenchError(f"no runs folder at {source}; run `make bench` first or pass SOURCE=")
    records = list(iter_record_runs(source))
    done = {_hash(r) for r in records if r.summary.get("status") in DONE}
    stand_ins = {}
    for r in iter_offline_runs(source):
        if not is_training_run(r):
            continue
        h = _hash(r)
        if h and h not in done and r.finished and r.summary.get("status") in DONE:
            stand_ins[h] = r
    return [r for r in records if _hash(r) not in stand_ins] + list(stand_ins.values())


def collect_runs(source: str | Path | None = None, runs: list[WandbRun] | None = None) -> pd.DataFrame:
    """One row per run of ``source`` (see ``load_runs``), or of ``runs`` when given."""
    rows = [run_row(r) for r in (runs if runs is not None else load_runs(source))]
    df = pd.DataFrame(rows)
    for col in BASE_COLUMNS:
        if col not in df.columns:
            df[col] = pd.Series(dtype=object)
    if len(df):
        df = df.sort_values(["dataset", "method", "arch", "seed", "start_time"], na_position="last")
    return df.reset_index(drop=True)


def history_frame(runs: list[WandbRun], run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """Per-epoch rows (train loss, val accuracies per exit, alignment, ...) of the runs, with their identity columns."""
    keep = set(run_ids) if run_ids is not None else None
    rows = []
    for r in runs:
        if keep is not None and r.id not in keep:
            continue
        ident = run_row(r)
        for h in r.history:
            if "epoch" in h and any(k.startswith(("val/", "train/loss", "align/")) for k in h):
                rows.append(
                    {
                        "run_id": r.id,
                        "dataset": ident["dataset"],
                        "method": ident["method"],
                        "arch": ident["arch"],
                        "seed": ident["seed"],
                        "setting": ident["setting"],
                        "test_fraction": ident["test_fraction"],
                        "rule": ident["rule"],
                        **{k: v for k, v in h.items() if isinstance(v, (int, float))},
                    }
                )
    return pd.DataFrame(rows)


def latest_per_config(df: pd.DataFrame) -> pd.DataFrame:
    """One run per exact config (re-runs keep the latest that finished, else the latest)."""
    if df.empty:
        return df
    df = df.assign(_done=df["status"].isin(DONE))
    df = df.sort_values(["_done", "start_time"]).groupby(df["config_hash"].fillna(df["run_id"]), dropna=False).tail(1)
    return df.drop(columns="_done").sort_values(["dataset", "method", "arch", "seed"]).reset_index(drop=True)
