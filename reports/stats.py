"""Uncertainty and tests for the report: Student-t intervals over seeds, Welch's t-test against BP, Holm's correction.

Every accuracy in a comparison table is a mean over n seeds with its 95% Student-t interval (mean ± t_{0.975, n-1}
s / sqrt(n)); the column "vs BP" is the difference of means with its Welch-Satterthwaite 95% interval and Welch's
two-sided t-test, Holm-corrected over the rules of the table (Holm 1979): a rule is marked "≈ BP" when the corrected
p-value is at least 0.05, i.e. the seeds do not tell it apart from BP. With n < 2 on either side there is no
interval and no test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ALPHA = 0.05
LEVEL = 0.95


def _t_quantile(q: float, df: float) -> float:
    from scipy import stats

    return float(stats.t.ppf(q, df))


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int


def t_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean and the Student-t ``level`` interval of ``values`` (NaN bounds when n < 2)."""
    v = [float(x) for x in values if x is not None and not math.isnan(float(x))]
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = sum(v) / n
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1))
    half = _t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class Welch:
    diff: float
    """mean(a) - mean(b)."""
    lo: float
    hi: float
    p: float
    """Two-sided p-value of Welch's t-test (NaN when either side has n < 2 or both have zero variance)."""
    df: float


def welch(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> Welch:
    """Welch's unequal-variance t-test of mean(a) = mean(b), with the Welch-Satterthwaite interval of the difference."""
    from scipy import stats

    a = [float(x) for x in a if x is not None and not math.isnan(float(x))]
    b = [float(x) for x in b if x is not None and not math.isnan(float(x))]
    na, nb = len(a), len(b)
    if na == 0 or nb == 0:
        return Welch(math.nan, math.nan, math.nan, math.nan, math.nan)
    ma, mb = sum(a) / na, sum(b) / nb
    diff = ma - mb
    if na < 2 or nb < 2:
        return Welch(diff, math.nan, math.nan, math.nan, math.nan)
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    se2 = va / na + vb / nb
    if se2 == 0:
        return Welch(diff, diff, diff, 1.0 if diff == 0 else 0.0, math.inf)
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    se = math.sqrt(se2)
    t = diff / se
    p = float(2 * stats.t.sf(abs(t), df))
    half = _t_quantile(0.5 + level / 2, df) * se
    return Welch(diff, diff - half, diff + half, p, df)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and do not count in the family)."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(p)]
    order = sorted(idx, key=lambda i: pvalues[i])
    m = len(order)
    out = [math.nan] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out
