"""What the submitit-backed executors (local, slurm) share: the job's end in words, from its files."""

from __future__ import annotations

import re
from pathlib import Path

_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt|Exit|Killed)\b(: .*)?$")


def last_error(job) -> str | None:
    """The last exception line of a job's log (warnings are never given as the cause)."""
    last = None
    try:
        for line in Path(job.paths.stderr).read_text(errors="replace").splitlines():
            if _ERROR_LINE.match(line.strip()):
                last = line.strip()
    except OSError:
        pass
    return last


def result_error(job) -> str | None:
    """The last line of the exception of a job that wrote its result file; None if it ended well."""
    try:
        job.result()
    except Exception as e:  # noqa: BLE001 - any failure of the worker is reported, not raised
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[-1] if lines else ''}"
    return None


def with_log(parts: list[str], job) -> str:
    last = last_error(job)
    if last:
        parts.append(f"last error: {last}")
    return "; ".join(parts) + f"; log {job.paths.stderr}"
