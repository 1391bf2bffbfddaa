"""make perf: the per-rule table's plan (archs, BP beside, model ratios), its timing loop, the CLI on tiny settings."""

from __future__ import annotations

import math
import statistics

import pytest
import torch

from bench import perf
from tests.native_files import make_idx_dataset

SHAPE, C = (1, 28, 28), 10


def test_plan_puts_every_rule_on_the_shared_shape_and_class_vector_rules_also_on_their_own():
    rows = perf.plan(["bp", "spela_o", "ff", "pepita"], "mlp:1024-C", SHAPE, C)
    got = [(r.method, r.short, r.bp_short) for r in rows]
    assert got == [
        ("bp", "mlp:1024-C", "mlp:1024-C"),
        ("spela_o", "mlp:1024-C", "mlp:1024-C"),
        ("spela_o", "mlp:1000-34", "mlp:1000-34-C"),
        ("ff", "mlp:1024-C", "mlp:1024-C"),
        ("ff", "mlp:1000-1000-1000", "mlp:1000-1000-1000-C"),
        ("pepita", "mlp:1024-C", "mlp:1024-C"),
    ]
    model = {(r.method, r.short): r.model for r in rows}
    bp = 2 * 784 * 1024 + 3 * 1024 * 10  # forward + ΔW on every layer, δ sent down through the top layer
    assert model[("bp", "mlp:1024-C")] == 1.0
    assert model[("spela_o", "mlp:1024-C")] == pytest.approx((2 * 784 * 1024 + 2 * 1024 * 10) / bp)
    # PEPITA: two forward passes and ΔW per layer, plus F e (C x 784)
    assert model[("pepita", "mlp:1024-C")] == pytest.approx((3 * 784 * 1024 + 3 * 1024 * 10 + 10 * 784) / bp)
    assert perf.bp_arch_for("cnn:32,head=0", C) == "cnn:32"
    heads = {
        r.method: r.model
        for r in perf.plan(["fg_local", "fg_ntk", "fg_fixed_ntk", "local_learning"], "mlp:1024-C", SHAPE, C)
    }
    head = 1024 * 1024 + 2 * 1024 * 1024 + 1024 * 10  # the mlp head on the 1024 units (width 1024, depth 3)
    assert heads["fg_local"] == pytest.approx((bp + 3 * head) / bp)  # BP's products + the trained head's
    assert heads["fg_ntk"] == heads["fg_fixed_ntk"] == pytest.approx((bp + 2 * head) / bp)  # the guess head, no ΔW
    assert heads["local_learning"] == pytest.approx((2 * 784 * 1024 + 2 * 1024 * 10 + 3 * head) / bp)
    cnn = perf.plan(["spela_cnn"], "mlp:1024-C", SHAPE, C)  # the runs get parseable arch strings, the table short ones
    assert [(r.arch, r.short, r.bp_arch, r.bp_short) for r in cnn] == [("cnn:32", "cnn:32/nohead", "cnn:32", "cnn:32")]


@pytest.mark.parametrize("compiled", [False, True])
def test_rule_table_times_rule_and_bp_alternately(tmp_path, monkeypatch, compiled):
    from methods.base import LearningRule

    calls = []
    monkeypatch.setattr(LearningRule, "compile_step", lambda self: calls.append(self.name))  # no inductor here
    make_idx_dataset(tmp_path, "MNIST", n_train=300, n_test=100)
    rows = perf.plan(["spela_o"], "mlp:16-C", SHAPE, C)[:1]
    base = dict(
        dataset="mnist",
        epochs=2,
        batch_size=32,
        wandb="disabled",
        progress=False,
        data_dir=str(tmp_path),
        verify_data=False,
        runs_dir=str(tmp_path / "runs"),
        limit_eval=50,
        evaluate_test=False,
    )
    lines = []
    perf.rule_table(rows, base, rounds=2, log=lambda *a, **k: lines.append(a[0]), compiled=compiled)
    row = rows[0]
    assert len(row.rule_s) == len(row.bp_s) == len(row.ratios) == 2 and len(lines) == 2
    assert all(t > 0 and math.isfinite(t) for t in row.rule_s + row.bp_s)
    assert row.ratios == [a / b for a, b in zip(row.rule_s, row.bp_s)]
    # --compile: one compiled run of each per round, beside the eager ones
    assert calls == (["bp", "spela_o", "spela_o", "bp"] if compiled else [])
    assert len(row.compiled_s) == len(row.bp_compiled_s) == (2 if compiled else 0)
    assert (row.compiled_ratio is not None) == compiled and ("compiled" in lines[0]) == compiled
    table = perf.format_table(rows)
    assert "spela_o" in table.splitlines()[1] and f"{row.ratio:.2f}" in table


def test_plain_loop_trains(tmp_path):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, *SHAPE, generator=g), torch.randint(0, C, (96,), generator=g)
    loop = perf.PlainLoop(x, y, "mlp:16-C", C, 32, seed=0)
    before = [p.detach().clone() for p in loop.net.parameters()]
    times = [loop.epoch() for _ in range(2)]
    assert all(t > 0 for t in times)
    assert all(not torch.equal(a, b) for a, b in zip(before, loop.net.parameters()))  # it trained every layer


@pytest.mark.parametrize(
    "args, match",
    [
        (["--epochs", "1"], "--epochs must be >= 2"),
        (["--plain-epochs", "1"], "--plain-epochs must be >= 2"),
        (["--methods", "nope"], "unknown method 'nope'"),
        (["--rounds", "0", "--step-pairs", "0"], "--rounds must be >= 1, or 0"),
        (["--rounds", "-1"], "--rounds must be >= 1, or 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, match, capsys):
    assert perf.main(args) == 2
    assert match in capsys.readouterr().out


def test_make_perf_prints_the_table_on_tiny_settings(fmnist_root, capsys):
    assert (
        perf.main(
            [
                "--methods",
                "spela_o",
                "--arch",
                "mlp:32-C",
                "--limit-train",
                "128",
                "--epochs",
                "2",
                "--rounds",
                "1",
                "--plain-epochs",
                "2",
                "--data-dir",
                str(fmnist_root),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "rule/bp" in out and "ratio harness/plain" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("spela_o ")]
    assert [r[1] for r in rows] == ["mlp:32-C", "mlp:1000-34"]


def test_rounds_0_times_only_the_steps(fmnist_root, capsys):
    argv = ["--methods", "spela_o,spela", "--arch", "mlp:32-C", "--limit-train", "128", "--rounds", "0"]
    argv += ["--step-pairs", "2", "--step-block", "2", "--data-dir", str(fmnist_root)]
    assert perf.main(argv) == 0
    out = capsys.readouterr().out
    assert "round 1/" not in out and "ratio harness/plain" not in out  # no whole runs, no plain-loop line
    rows = {(r[0], r[1]): r for r in (line.split() for line in out.splitlines()) if r and r[0] in ("spela_o", "spela")}
    # method, arch, bp arch, opt, s/epoch, bp s/ep, rule/bp, step, model
    assert rows["spela_o", "mlp:32-C"][4:7] == ["-", "-", "-"] and rows["spela_o", "mlp:32-C"][7] != "-"
    assert rows["spela", "mlp:32-C"][4:8] == ["-", "-", "-", "-"]  # layer-wise: no step column either


def test_step_table_times_alternating_blocks_and_leaves_layerwise_rules_out():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, *SHAPE, generator=g), torch.randint(0, C, (96,), generator=g)
    rows = perf.plan(["spela_o", "spela"], "mlp:16-C", SHAPE, C)
    lines = []
    perf.step_table(rows, x, y, C, 16, pairs=3, block=2, log=lambda *a, **k: lines.append(a[0]))
    stepped = [r for r in rows if r.step_ratios]
    assert [r.method for r in stepped] == ["spela_o", "spela_o"] and len(lines) == 2
    for r in stepped:
        assert len(r.step_ratios) == 3 and all(q > 0 and math.isfinite(q) for q in r.step_ratios)
        assert r.step_ms > 0 and r.bp_step_ms > 0
    for r in rows:  # the epoch columns come from rule_table; fill them by hand here
        r.rule_s, r.bp_s, r.ratios = [1.0], [1.0], [1.0]
    table = perf.format_table(rows).splitlines()
    assert f"{stepped[0].step_ratio:.2f}" in table[1].split()
    spela = next(line for line in table[1:] if line.startswith("spela "))
    assert spela.split()[7] == "-"  # method, arch, bp arch, opt, s/epoch, bp s/ep, rule/bp, step


def test_a_standalone_rule_trains_with_its_own_optimiser():
    from methods.registry import get_rule

    rule = get_rule("bp").create({}, "mlp:8-C", SHAPE, C, epochs=2).standalone()
    before = [p.detach().clone() for p in rule.parameters()]
    g = torch.Generator().manual_seed(1)
    rule.training_step((torch.randn(4, *SHAPE, generator=g), torch.randint(0, C, (4,), generator=g)), 0)
    assert rule._steps == 1 and all(not torch.equal(a, b) for a, b in zip(before, rule.parameters()))


def test_rows_off_their_model_say_why():
    names = ["fg_rademacher", "fg_gaussian", "dfa", "ff", "spela"]
    rows = {(r.method, r.short): r for r in perf.plan(names, "mlp:1024-C", SHAPE, C)}
    fg = rows[("fg_rademacher", "mlp:1024-C")]
    assert fg.draws == (784 + 1) * 1024  # a guess per sample for every weight and bias below the top layer
    assert "0.80 M random numbers per sample (51 M per step)" in perf.why_off(fg, 50 * fg.model, batch_size=64)
    fast = rows[("fg_gaussian", "mlp:1024-C")]  # the factored sampler: about out·(B+1)/2 + out·in/B per sample
    assert 1024 * 65 / 2 + 784 * 1024 / 64 < fast.draws < 50_000
    assert "0.05 M random numbers per sample (3 M per step)" in perf.why_off(fast, 3 * fast.model, batch_size=64)
    dfa = rows[("dfa", "mlp:1024-C")]
    assert dfa.optimizer == "sgd" and dfa.bp_optimizer == "adam"
    assert "its sgd step is cheaper than BP's adam" in perf.why_off(dfa, 0.8 * dfa.model)
    ff = rows[("ff", "mlp:1024-C")]
    assert ff.model > 1 and "towards 1" in perf.why_off(ff, 0.8 * ff.model)
    spela = rows[("spela", "mlp:1000-34")]
    assert spela.layerwise and "layer-wise" in perf.why_off(spela, 1.3 * spela.model)
    slower = perf.why_off(dfa, 1.5 * dfa.model)  # slower than its model, no draws, not layer-wise
    assert slower.startswith("work outside the weight-sized products") and "optimiser" not in slower.split("(model")[0]


def test_compiled_columns_compile_both_steps_and_compare_compiled_with_compiled(monkeypatch):
    from methods.base import LearningRule

    calls = []
    monkeypatch.setattr(LearningRule, "compile_step", lambda self: calls.append(self.name))  # no inductor here
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(80, *SHAPE, generator=g), torch.randint(0, C, (80,), generator=g)
    rows = perf.plan(["spela_o"], "mlp:16-C", SHAPE, C)[:1]
    lines = []
    perf.step_table(rows, x, y, C, 16, pairs=2, block=2, log=lambda *a, **k: lines.append(a[0]), compiled=True)
    row = rows[0]
    assert sorted(calls) == ["bp", "spela_o"]  # a compiled stepper for each, beside the eager ones
    assert len(row.step_ratios) == len(row.compiled_step_ratios) == len(row.compiled_eager_bp_ratios) == 2
    assert len(lines) == 1 and "compiled" in lines[0]
    row.rule_s, row.bp_s, row.ratios = [2.0, 5.0], [1.0, 2.0], [2.0, 2.5]
    row.compiled_s, row.bp_compiled_s = [1.0, 3.0], [2.0, 2.0]
    assert row.compiled_ratio == statistics.median([0.5, 1.5])  # compiled rule over compiled BP, per round
    assert row.compile_gain == statistics.median([0.5, 0.6])  # compiled rule over the eager rule
    cols = perf.format_table(rows).splitlines()[1].split()
    # method, arch, bp arch, opt, s/epoch, bp s/ep, rule/bp, step, model, compiled: rule/bp, step, /e.bp, c/eager
    assert cols[9:13] == ["1.00", f"{row.compiled_step_ratio:.2f}", f"{row.compiled_eager_bp_ratio:.2f}", "0.55"]


def test_alternate_reverses_the_order_every_round_and_leaves_round_0_out():
    seen = []
    fns = {k: (lambda k=k: seen.append(k)) for k in ("a", "b", "c")}
    times = perf._alternate(fns, pairs=2, block=1, device=torch.device("cpu"))
    assert "".join(seen) == "abc" + "cba" + "abc" and all(len(v) == 2 for v in times.values())
