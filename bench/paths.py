"""Where the project keeps its data, runs and caches; nothing is written outside the project by default."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Dataset folder: ``path``, else $BENCH_DATA_DIR, else <project>/data."""
    return Path(path or os.environ.get("BENCH_DATA_DIR") or PROJECT_ROOT / "data").expanduser()


def runs_root(path: str | os.PathLike | None = None) -> Path:
    """Run records and W&B files: ``path``, else $BENCH_RUNS_DIR, else <project>/runs."""
    return Path(path or os.environ.get("BENCH_RUNS_DIR") or PROJECT_ROOT / "runs").expanduser()


PROBE_BYTES = 1 << 20
"""Bytes a folder must take (written, synced, removed) to count as writable: a full disk fails here."""


def check_writable(folder: Path, hint: str = "pass --runs-dir (or set BENCH_RUNS_DIR) to write elsewhere") -> None:
    """Create ``folder`` and write (and remove) a 1 MiB probe file in it; a read-only, full or foreign folder is a
    ``StorageError`` in one line, before anything loads."""
    from bench.errors import DISK_ERRNOS, StorageError

    name = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
        try:
            block = memoryview(b"\0" * PROBE_BYTES)
            while block:  # a nearly full disk takes part of a write, then refuses the rest
                block = block[os.write(fd, block) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        reason = DISK_ERRNOS.get(e.errno) or e.strerror or str(e)
        raise StorageError(f"cannot write to {folder}: {reason}; {hint}") from None
    finally:
        if name is not None:
            try:
                os.unlink(name)
            except OSError:
                pass


def set_tool_dirs(runs: Path) -> None:
    """Point W&B and matplotlib caches into the project (unless the user set them); ``runs`` must be writable."""
    check_writable(runs)
    os.environ.setdefault("WANDB_DIR", str(runs))
    os.environ.setdefault("WANDB_CACHE_DIR", str(runs / ".wandb-cache"))
    os.environ.setdefault("WANDB_CONFIG_DIR", str(runs / ".wandb-config"))
    os.environ.setdefault("WANDB_DATA_DIR", str(runs / ".wandb-data"))
    os.environ.setdefault("MPLCONFIGDIR", str(runs / ".mplconfig"))
    os.environ.setdefault("WANDB_SILENT", "true")


TUNED_DIR = PROJECT_ROOT / "sweeps" / "best"


def tuned_dir() -> Path:
    """Where the tuned settings live: $BENCH_TUNED_DIR, else sweeps/best in the project."""
    import os

    return Path(os.environ.get("BENCH_TUNED_DIR") or TUNED_DIR).expanduser()
