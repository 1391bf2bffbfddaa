"""Where the project keeps its data, runs and caches; nothing is written outside the project by default."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Dataset folder: ``path``, else $BENCH_DATA_DIR, else <project>/data."""
    return Path(path or os.environ.get("BENCH_DATA_DIR") or PROJECT_ROOT / "data").expanduser()


def runs_root(path: str | os.PathLike | None = None) -> Path:
    """Run records and W&B files: ``path``, else $BENCH_RUNS_DIR, else <project>/runs."""
    return Path(path or os.environ.get("BENCH_RUNS_DIR") or PROJECT_ROOT / "runs").expanduser()


def set_tool_dirs(runs: Path) -> None:
    """Point W&B and matplotlib caches into the project (unless the user set them)."""
    runs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_DIR", str(runs))
    os.environ.setdefault("WANDB_CACHE_DIR", str(runs / ".wandb-cache"))
    os.environ.setdefault("WANDB_CONFIG_DIR", str(runs / ".wandb-config"))
    os.environ.setdefault("WANDB_DATA_DIR", str(runs / ".wandb-data"))
    os.environ.setdefault("MPLCONFIGDIR", str(runs / ".mplconfig"))
    os.environ.setdefault("WANDB_SILENT", "true")
