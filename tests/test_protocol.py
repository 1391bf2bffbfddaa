"""Protocol v1: the tuning protocol as data, stored in tuned entries and records; sweeps that start from the
defaults, draw cell-specific points and prune only on resolvable differences; the transfer check; ``bench run`` and
the grid resolving the same cell; nothing in the report chosen on test data."""

from __future__ import annotations

import io
import json
import math
from contextlib import redirect_stdout
from pathlib import Path

import optuna
import pandas as pd
import pytest

import methods  # noqa: F401 - registers the rules
from bench.protocol import CUSTOM, V1, Budget, get_protocol
from sweeps.space import load_space
from sweeps.study import DEFAULTS_ATTR, StudySpec, classify, make_pruner

ARCH = "mlp:1024-C,act=relu,out_act=none,bias=1,init=default"


def _v1_spec(method: str = "bp", arch: str = ARCH, **kw) -> StudySpec:
    sp = load_space(method)
    budget = V1.tuning_budget(method)
    run = {"limit_train": budget.limit_train} if budget.limit_train else {}
    spec = StudySpec(
        dataset="fashion_mnist",
        method=method,
        arch=arch,
        epochs=budget.epochs,
        run=run,
        space=sp.to_dict(),
        space_source=sp.source,
        **kw,
    )
    spec.protocol = classify(spec, V1.trials)
    return spec


def _toy_study(spec: StudySpec, tmp_path: Path, objective, n: int, name: str = "toy"):
    """A study created as ``run_sweep`` creates it (defaults enqueued), optimised with a toy objective over the same
    space and sampler as real trials."""
    from sweeps.launch import create_study
    from sweeps.space import Space, _parse_param
    from sweeps.study import make_sampler

    url = f"sqlite:///{tmp_path / (name + '.db')}"
    create_study(spec, url, n, name, heartbeat=None)
    space = Space(spec.method, tuple(_parse_param(k, v, "") for k, v in spec.space.items()), "")
    study = optuna.load_study(
        study_name=name, storage=url, sampler=make_sampler(spec.seed_of_sampler(), spec.startup())
    )
    study.optimize(lambda t: objective(space.suggest(t)), n_trials=n)
    return study, url


def test_v1_is_data_and_describes_itself():
    p = get_protocol()
    assert p is V1 and p.name == "v1"
    assert p.tuning_budget("bp") == Budget(5, None)  # the evaluation's own epochs on the whole split
    assert p.tuning_budget("ff") == Budget(1, 10000) and p.is_short("ff")  # stated shorter budget
    assert p.evaluation_epochs("fg_gaussian") == 1
    text = p.describe("ff")
    assert "v1" in text and "shorter budget" in text and "3 epochs" in text
    d = p.to_dict()
    assert d["name"] == "v1" and d["seeds"] == [0, 1, 2] and d["pruner"]["margin"] == 0.01
    # seeds of two cells differ; the same cell gives the same seed
    assert p.study_seed("fashion_mnist", "bp", ARCH) == p.study_seed("fashion_mnist", "bp", ARCH)
    assert p.study_seed("fashion_mnist", "bp", ARCH) != p.study_seed("fashion_mnist", "fa", ARCH)


def test_classify_names_v1_only_for_the_protocols_own_budget():
    assert _v1_spec().protocol == "v1"
    assert classify(_v1_spec(), V1.trials - 1) == CUSTOM  # fewer trials
    other = _v1_spec()
    other.epochs = 2
    assert classify(other, V1.trials) == CUSTOM
    subset = _v1_spec()
    subset.run = {"limit_train": 10000}
    assert classify(subset, V1.trials) == CUSTOM  # a cheap rule on a subset is not v1
    assert _v1_spec("ff", "mlp:1000-1000-1000").protocol == "v1"  # its stated shorter budget is


def test_defaults_are_trial_zero_and_win_the_export_when_best(tmp_path, monkeypatch):
    from sweeps.best import export_best

    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "best"))
    spec = _v1_spec()
    default_lr = methods.registry.get_rule("bp").Config().lr
    study, url = _toy_study(spec, tmp_path, lambda p: -abs(math.log(p["lr"] / default_lr)), V1.trials)
    first = study.trials[0]
    assert first.user_attrs.get(DEFAULTS_ATTR) == ["lr"] and first.params["lr"] == pytest.approx(default_lr)
    exported = export_best(study, spec, storage=url)
    assert exported.written and "defaults won" in exported.message
    entry = json.loads((tmp_path / "best" / "fashion_mnist" / "bp.json").read_text())["by_arch"][ARCH]
    assert entry["protocol"] == "v1" and entry["defaults_won"] is True
    assert entry["params"]["lr"] == pytest.approx(default_lr)
    assert entry["defaults"]["trial"] == 0


def test_the_exported_setting_is_never_worse_than_the_defaults(tmp_path, monkeypatch):
    """A toy objective on which every sampled point loses to the defaults: the export is the defaults."""
    from sweeps.best import export_best

    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "best"))
    spec = _v1_spec()
    default_lr = methods.registry.get_rule("bp").Config().lr
    study, url = _toy_study(spec, tmp_path, lambda p: 1.0 if p["lr"] == default_lr else 0.5, 5)
    export_best(study, spec, storage=url, budget=5)
    entry = json.loads((tmp_path / "best" / "fashion_mnist" / "bp.json").read_text())["by_arch"][ARCH]
    assert entry["params"]["lr"] == default_lr and entry["defaults_won"]


def test_two_studies_of_two_rules_draw_different_first_points(tmp_path):
    points = {}
    for method in ("bp", "drtp"):
        spec = _v1_spec(method, arch="mlp:1024-C")
        study, _ = _toy_study(spec, tmp_path, lambda p: 0.0, 3, name=method)
        lo, hi = spec.space["lr"]["low"], spec.space["lr"]["high"]
        # the normalised position in the space of the first sampled (non-default) trial
        points[method] = [math.log(t.params["lr"] / lo) / math.log(hi / lo) for t in study.trials[1:3]]
    assert points["bp"] != pytest.approx(points["drtp"], abs=1e-3)


def test_pruner_waits_for_its_warmup_and_decides_only_beyond_the_margin(tmp_path):
    pruner = make_pruner({"name": "median", "startup": 2, "warmup": 2, "margin": 0.01})
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for v in (0.80, 0.82):
        t = study.ask()
        t.report(v, 1)
        t.report(v, 2)
        study.tell(t, v)
    t = study.ask()
    t.report(0.10, 1)
    assert not t.should_prune()  # epoch 1 < warmup: never pruned, however far below
    t.report(0.805, 2)  # median 0.81; 0.5 points below: inside the margin
    assert not t.should_prune()
    t2 = study.ask()
    t2.report(0.79, 2)  # 2 points below the median
    assert t2.should_prune()


def test_entries_made_under_another_budget_are_not_used_as_v1(tmp_path, monkeypatch):
    from bench.grid import GridSpec, plan
    from bench.tuned import lookup

    root = tmp_path / "best" / "fashion_mnist"
    root.mkdir(parents=True)
    legacy = {"params": {"lr": 0.0123}, "epochs": 2, "study": "old"}  # an entry from before the protocol
    custom = {"params": {"lr": 0.0456}, "epochs": 3, "study": "c", "protocol": "custom"}
    (root / "bp.json").write_text(json.dumps({"by_arch": {ARCH: legacy}}))
    (root / "fa.json").write_text(
        json.dumps({"by_arch": {}, "custom": {"mlp:1024-C,act=tanh,out_act=sigmoid,bias=1,init=default": custom}})
    )
    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "best"))
    for method in ("bp", "fa"):
        t = lookup("fashion_mnist", method, "mlp:1024-C")
        assert t.params == {} and "not protocol v1: not used" in t.note
    buf = io.StringIO()
    cells = plan(GridSpec(methods=("bp", "fa"), seeds=(0,)), buf)
    assert all(c.tuned is False and c.protocol is None for c, _ in cells)
    assert buf.getvalue().count("not protocol v1: not used") == 2
    (root / "bp.json").write_text(json.dumps({"by_arch": {ARCH: {**legacy, "protocol": "v1"}}}))
    (cfg, _), _fa = plan(GridSpec(methods=("bp", "fa"), seeds=(0,)), io.StringIO())
    assert cfg.tuned is True and cfg.protocol == "v1" and cfg.rule["lr"] == 0.0123


def test_transfer_check_flags_a_setting_that_diverges_at_the_evaluation_budget(tmp_path, monkeypatch):
    """A hand-made case: ff tuned at its shorter budget; at the evaluation budget the setting diverges (or falls 2
    points): the entry says it did not transfer and the grid says so."""
    import bench.run
    from bench.grid import GridSpec, plan
    from bench.run import RunResult
    from sweeps.best import export_best
    from sweeps.launch import transfer_check

    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "best"))
    arch = "mlp:1000-1000-1000,act=relu,out_act=relu,bias=1,init=lecun_normal"
    spec = _v1_spec("ff", arch)
    study, url = _toy_study(spec, tmp_path, lambda p: 0.80, V1.trials)
    seen = {}

    def fake_run(cfg, *a, **k):
        seen["cfg"] = cfg
        rec = {"history": [{"val/acc": v} for v in outcome["vals"]]}
        return RunResult("x", outcome["status"], None, rec, tmp_path / "x.json")

    monkeypatch.setattr(bench.run, "run", fake_run)
    outcome = {"status": "completed", "vals": [0.79, 0.795, 0.81]}  # read by fake_run
    ok = transfer_check(study, spec, {"runs_dir": str(tmp_path / "runs")}, io.StringIO())
    assert ok["ok"] is True
    cfg = seen["cfg"]  # the evaluation budget: its epochs, the whole training split, the first evaluation seed
    assert cfg.epochs == V1.evaluation_epochs("ff") and cfg.limit_train is None and cfg.seed == 0
    assert cfg.evaluate_test is False
    for case in ({"status": "diverged", "vals": [0.5]}, {"status": "completed", "vals": [0.70, 0.75, 0.78]}):
        outcome.update(case)
        check = transfer_check(study, spec, {"runs_dir": str(tmp_path / "runs")}, io.StringIO())
        assert check["ok"] is False
    export_best(study, spec, storage=url, transfer=check)
    buf = io.StringIO()
    ((cfg, _),) = plan(GridSpec(methods=("ff",), seeds=(0,)), buf)
    assert cfg.tuned is True and "did not transfer" in buf.getvalue()
    # a rule tuned at the evaluation budget needs no check
    assert transfer_check(study, _v1_spec(), {}, io.StringIO()) is None


def test_bench_run_resolves_the_same_cell_as_the_grid(tmp_path, monkeypatch):
    from bench.cli import main
    from bench.grid import GridSpec, expand, run_config
    from bench.run import resolve

    root = tmp_path / "best" / "fashion_mnist"
    root.mkdir(parents=True)
    fa_arch = "mlp:1024-C,act=tanh,out_act=sigmoid,bias=1,init=default"
    (root / "fa.json").write_text(json.dumps({"by_arch": {fa_arch: {"params": {"lr": 0.0321}, "protocol": "v1"}}}))
    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "best"))
    for tuned in (True, False):
        (grid_cfg,) = expand(GridSpec(methods=("fa",), seeds=(3,), epochs=4, tuned=tuned))
        run_cfg = run_config("fashion_mnist", "fa", None, 3, 4, tuned=tuned)
        a, b = resolve(grid_cfg), resolve(run_cfg)
        assert a.name == b.name and a.canonical == b.canonical
        assert (grid_cfg.tuned, grid_cfg.rule_sources, grid_cfg.protocol) == (
            run_cfg.tuned,
            run_cfg.rule_sources,
            run_cfg.protocol,
        )
        buf = io.StringIO()
        with redirect_stdout(buf):
            main(
                ["run", "--method", "fa", "--seed", "3", "--epochs", "4", "--dry-run"]
                + ([] if tuned else ["--no-tuned"])
            )
        assert a.name in buf.getvalue()
        assert ("UNTUNED" in buf.getvalue()) is (not tuned)
    assert resolve(run_config("fashion_mnist", "fa", None, 3, 4)).canonical["rule"]["lr"] == 0.0321


def test_a_run_record_stores_protocol_setting_and_job_type(fmnist_root, tmp_path, monkeypatch):
    from bench.grid import run_config
    from bench.run import run

    root = tmp_path / "best" / "fashion_mnist"
    root.mkdir(parents=True)
    arch = "mlp:16-C,act=relu,out_act=none,bias=1,init=default"
    (root / "bp.json").write_text(json.dumps({"by_arch": {arch: {"params": {"lr": 0.002}, "protocol": "v1"}}}))
    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "best"))
    fields = {"data_dir": str(fmnist_root), "runs_dir": str(tmp_path / "runs"), "wandb": "disabled"}
    fields |= {"limit_train": 200, "limit_eval": 100, "progress": False}
    records = []
    for seed in (0, 1):
        cfg = run_config("fashion_mnist", "bp", "mlp:16-C", seed, 1, run=fields)
        records.append(run(cfg).record)
    assert all(r["protocol"] == "v1" and r["job_type"] == "train" and r["tuned"] for r in records)
    assert records[0]["setting"] == records[1]["setting"]  # seeds of one setting share it
    assert records[0]["config_hash"] != records[1]["config_hash"]


def test_report_choices_do_not_change_when_test_accuracies_are_permuted(tmp_path, monkeypatch):
    """Which setting the accuracy-vs-memory figure shows per rule is chosen on validation accuracy: permuting the
    test accuracies over the runs changes no choice."""
    import reports.figures as figures

    rows = []
    for setting, val in (("s1", 0.80), ("s2", 0.85), ("s3", 0.82)):
        for seed in (0, 1, 2):
            rows.append({"method": "bp", "arch": "mlp:1024-C", "setting": setting, "seed": seed, "val_acc": val})
    rng = __import__("random").Random(0)
    chosen = []
    for _ in range(5):
        tests = [0.5 + 0.4 * rng.random() for _ in rows]
        df = pd.DataFrame([{**r, "test_acc": t} for r, t in zip(rows, tests)])
        per = (
            df.groupby(["method", "arch", "setting"])
            .agg(acc=("test_acc", "mean"), val=("val_acc", "mean"))
            .reset_index()
        )
        chosen.append(tuple(figures.choose_on_validation(per, ["method", "arch"])["setting"]))
    assert set(chosen) == {("s2",)}
