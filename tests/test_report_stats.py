"""The report's uncertainty and tests against hand-computed values: Student-t intervals, Welch's test, Holm."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from reports.stats import holm, t_interval, welch


def test_t_interval_by_hand():
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653, half width 4.302653 / sqrt(3) = 2.484138
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.lo == pytest.approx(2 - 2.484138, abs=1e-5) and ci.hi == pytest.approx(2 + 2.484138, abs=1e-5)
    one = t_interval([5.0])
    assert one.mean == 5.0 and math.isnan(one.lo) and one.n == 1


def test_welch_by_hand():
    # a = 1,2,3 and b = 4,5,6: diff -3, se = sqrt(1/3 + 1/3) = 0.816497, t = -3.674235, df = 4
    # p = 2 * P(T_4 > 3.674235) = 0.021312; t(0.975, 4) = 2.776445, half width 2.266958
    w = welch([1, 2, 3], [4, 5, 6])
    assert w.diff == -3.0 and w.df == pytest.approx(4.0)
    assert w.p == pytest.approx(0.021312, abs=1e-5)
    assert (w.lo, w.hi) == (pytest.approx(-5.266958, abs=1e-5), pytest.approx(-0.733042, abs=1e-5))
    # unequal variances: a = 1,3 (var 2), b = 2,2,2,5 (var 2.25): df by Welch-Satterthwaite
    w2 = welch([1, 3], [2, 2, 2, 5])
    se2 = 2 / 2 + 2.25 / 4
    assert w2.df == pytest.approx(se2**2 / ((2 / 2) ** 2 / 1 + (2.25 / 4) ** 2 / 3))
    assert math.isnan(welch([1.0], [2.0, 3.0]).p)  # n < 2: no test


def test_holm_by_hand():
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 = 0.03, 0.06, 0.04 -> monotone 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = holm([0.2, math.nan, 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_versus_bp_marks_only_rules_the_seeds_cannot_tell_from_bp():
    from reports.tables import versus_bp

    s = pd.DataFrame(
        [
            {"method": "bp", "label": "BP", "arch": "a", "values": [88.0, 88.2, 87.9], "n": 3, "mean": 88.0},
            {"method": "fa", "label": "FA", "arch": "a", "values": [88.1, 87.8, 88.0], "n": 3, "mean": 88.0},
            {"method": "dfa", "label": "DFA", "arch": "a", "values": [80.0, 80.2, 79.9], "n": 3, "mean": 80.0},
        ]
    )
    v = versus_bp(s).set_index("label")
    assert v.loc["FA", "same_as_bp"] is True and v.loc["DFA", "same_as_bp"] is False
    assert v.loc["DFA", "d"] == pytest.approx(-8.0, abs=1e-9)
    p_raw = welch([80.0, 80.2, 79.9], [88.0, 88.2, 87.9]).p
    assert v.loc["DFA", "p_holm"] == pytest.approx(min(1.0, 2 * p_raw))  # the smaller of two p-values times 2
    assert math.isnan(v.loc["BP", "d"])
