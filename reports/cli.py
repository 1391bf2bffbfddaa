"""``python -m bench report`` (``make report``): tables and figures from the run records into reports/out."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.errors import exit_status


def _report(a: argparse.Namespace) -> int:
    from bench.paths import check_writable
    from reports.build import OUT, build_report

    check_writable(Path(a.out) if a.out else OUT, hint="pass --out to write the report elsewhere")
    build_report(source=a.source, out=a.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench report", description=__doc__)
    ap.add_argument(
        "--source",
        default=None,
        help="runs folder (default ./runs; e.g. results/fashion_mnist) or wandb:ENTITY/PROJECT (W&B API)",
    )
    ap.add_argument("--out", default=None, help="output folder (default reports/out)")
    return exit_status(_report, ap.parse_args(argv))
