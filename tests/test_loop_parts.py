"""Parts of the shared loop and of forward gradient that live in their own modules: accuracy counting (by hand on
fixed scores), the alignment callback's bookkeeping, and the forward-gradient strategy tables."""

from __future__ import annotations

import typing

import pytest
import torch

from methods import forward_gradient as fgm
from methods.fg_strategies import GUESSES, SPACES
from methods.shared.alignment import GradientAlignment
from methods.shared.metrics import ExitAccuracies, TopKCorrect


def test_accuracies_of_every_exit_and_top5_of_the_prediction_by_hand():
    y = torch.tensor([0, 1, 2, 3])
    out = torch.zeros(4, 7)
    out[0, 0] = out[1, 5] = out[2, 2] = out[3, 6] = 1.0  # argmax right for samples 0 and 2
    out[1, 1] = 0.5  # sample 1: label second best (in the top 5); sample 3: label 3 ties at 0 with five others
    aux = torch.eye(4)[[0, 1, 1, 1]]  # a 4-way exit: right for samples 0 and 1
    acc = ExitAccuracies()
    acc.update({"aux0": aux, "out": out}, y)
    acc.update({"aux0": aux[:1], "out": out[:1]}, y[:1])  # one more right sample for both
    got = acc.compute("val")
    assert list(got) == ["val/acc/aux0", "val/acc", "val/acc5"]
    assert got["val/acc/aux0"] == 3 / 5 and got["val/acc"] == 3 / 5
    top5 = (out.topk(5, dim=1).indices == y[:, None]).any(dim=1)
    assert got["val/acc5"] == (int(top5.sum()) + 1) / 5
    few = ExitAccuracies()
    few.update({"out": aux}, y)  # 4 classes: no top-5
    assert few.compute("test") == {"test/acc": 0.5}


def test_topk_counts_are_exact_integers():
    m = TopKCorrect(1)
    for _ in range(3):
        m.update(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]), torch.tensor([1, 1, 0]))
    assert int(m.correct) == 6 and int(m.total) == 9 and m.compute() == 6 / 9


def test_alignment_callback_averages_over_recorded_steps_and_keeps_its_state():
    cb = GradientAlignment(every=3)
    recorded = []
    cb.record = lambda rule, x, y: recorded.append(cb.step)  # which steps would record
    for _ in range(7):
        cb.after_update(None, None, None)
    assert recorded == [0, 3, 6]
    cb.sums, cb.count = torch.tensor([1.5, -0.5], dtype=torch.float64), 2
    other = GradientAlignment(every=3)
    other.load_state_dict(cb.state_dict())
    assert other.step == 7 and other.compute() == {"align/b0": 0.75, "align/b1": -0.25}
    assert other.compute() == {}  # reset
    with pytest.raises(ValueError):
        GradientAlignment(every=0)


def test_every_guess_and_space_option_has_a_strategy():
    hints = typing.get_type_hints(fgm.FGConfig)
    assert set(GUESSES) == set(typing.get_args(hints["guess"]))
    assert set(SPACES) == set(typing.get_args(hints["space"]))
    assert fgm.RANDOM == ("gaussian", "rademacher")
    assert {g for g, s in GUESSES.items() if s.varies} == {"gaussian", "rademacher", "ntk"}
