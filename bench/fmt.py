"""Numbers as the tables and the command lines show them: mean ± std, megabytes, GFLOP (no torch, no pandas)."""

from __future__ import annotations

import math

MISSING = "--"
"""What a table or a listing shows for a number it does not have."""


def missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pm(mean: float | None, std: float | None, spec: str = ".2f", sign: str = "±") -> str:
    """``mean ± std``, both in the format ``spec``; the mean alone without a std (None or NaN: one seed, a claim
    without one); ``--`` without a mean. ``sign``: ``\\pm`` inside LaTeX math."""
    if missing(mean):
        return MISSING
    return f"{mean:{spec}}" + ("" if missing(std) else f" {sign} {std:{spec}}")


def mb(n_bytes: float | None) -> str:
    """Bytes as MiB, 3 significant digits."""
    return MISSING if missing(n_bytes) else f"{n_bytes / 2**20:.3g}"


def gflop(flops: float | None) -> str:
    """FLOPs as GFLOP, 3 decimals."""
    return MISSING if missing(flops) else f"{flops / 1e9:.3f}"
