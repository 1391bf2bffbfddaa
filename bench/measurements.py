"""Reading ``make efficiency``'s measurements back (``<runs>/efficiency/*.json``): plain JSON files, read by the
report without importing the probe that made them (bench/efficiency.py trains)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def efficiency_dir(runs_dir: str | Path | None = None) -> Path:
    from bench.paths import runs_root

    return runs_root(runs_dir) / "efficiency"


def load_efficiency(runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Every measurement under ``<runs_dir>/efficiency/`` (default: the runs folder's); unreadable files skipped."""
    folder = Path(runs_dir) / "efficiency" if runs_dir is not None else efficiency_dir()
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return out
