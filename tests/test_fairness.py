"""A dataset registered outside bench/ runs end to end; untuned grid cells are flagged in dry-run, per-run lines,
records and the report; --tune sweeps only the cells without tuned settings; every loader's output is checked."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import get_dataset_info, load_split, register_dataset, unregister_dataset
from bench.errors import DataError
from bench.grid import GridSpec, expand, run_grid


def load_sklearn_digits(root, train):
    """scikit-learn's 8x8 digits, 80/20 split by a fixed permutation (docs/extending.md's example, registered here)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(0).permutation(len(d.target))
    idx = order[:1400] if train else order[1400:]
    return d.images[idx], d.target[idx]  # float64 grey levels 0..16, int labels


@pytest.fixture
def digits():
    pytest.importorskip("sklearn")
    register_dataset("test_digits", shape=(1, 8, 8), num_classes=10, scale=16.0, loader=load_sklearn_digits)
    yield "test_digits"
    unregister_dataset("test_digits")


def _spec(tmp_path, dataset, methods, **kw):
    return GridSpec(
        datasets=(dataset,),
        methods=methods,
        epochs=1,
        run={"runs_dir": str(tmp_path / "runs"), "wandb": "disabled", "progress": False},
        **kw,
    )


def test_registered_dataset_runs_through_grid_and_report_marked_untuned(digits, tmp_path):
    from reports.build import build_report

    info = get_dataset_info(digits)
    assert info.kind == "loader" and info.shape == (1, 8, 8)
    spec = _spec(tmp_path, digits, ("bp", "fa", "sign_symmetry"))
    dry = io.StringIO()
    run_grid(spec, dry_run=True, out=dry)
    assert dry.getvalue().count("[UNTUNED") == 3 and "3 without tuned settings" in dry.getvalue()
    out = io.StringIO()
    assert run_grid(spec, out=out) == 0
    lines = {ln for ln in out.getvalue().splitlines() if ln.startswith("  completed")}
    assert len(lines) == 3 and all("UNTUNED" in ln for ln in lines)
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "records").glob("*.json")]
    assert len(records) == 3 and all(r["tuned"] is False and r["status"] == "completed" for r in records)
    assert all(r["test_acc"] > 0.3 for r in records), [(r["method"], r["test_acc"]) for r in records]
    report = build_report(source=str(tmp_path / "runs"), out=tmp_path / "out", figures=False)
    md = (report / f"{digits}.md").read_text()
    for name in ("BP †", "FA †", "Sign symmetry †"):
        assert name in md
    assert "† untuned" in md and r"$^\dagger$" in (report / f"{digits}.tex").read_text()
    assert any("† untuned" in f.read_text() for f in (report / "tables").glob("comparison_e*.md"))


def test_a_stated_learning_rate_is_not_marked_untuned(digits, tmp_path):
    """--set lr (like a claim's or a profile's own lr) is neither tuned nor the rule's defaults: no mark anywhere;
    an old record that stored False beside a claim's lr reads the same."""
    from bench.tuned import ran_untuned
    from reports.build import build_report

    spec = _spec(tmp_path, digits, ("bp", "fa"), overrides={"lr": "0.01"})
    cfgs = expand(spec)
    assert len(cfgs) == 2 and all(c.tuned is None and c.rule_sources["lr"] == "--set" for c in cfgs)
    dry = io.StringIO()
    run_grid(spec, dry_run=True, out=dry)
    assert "UNTUNED" not in dry.getvalue()
    assert run_grid(spec, out=io.StringIO()) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "records").glob("*.json")]
    assert len(records) == 2 and all(r["tuned"] is None for r in records)
    md = (build_report(source=str(tmp_path / "runs"), out=tmp_path / "out", figures=False) / f"{digits}.md").read_text()
    assert "†" not in md
    assert not ran_untuned(False, {"lr": "claim spela/t4-fmnist-95-bp"}) and not ran_untuned(None, {})
    assert ran_untuned(False, {}) and ran_untuned(False, {"momentum": "profile ablation"})
    assert not ran_untuned(False, {"lr": "--set"}) and not ran_untuned(True, {"lr": "tuned: x.json"})


def _write_tuned(dataset: str, method: str, arch: str, params: dict, protocol: str = "v1") -> None:
    from sweeps.best import best_file

    path = best_file(dataset, method)
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {arch: {"params": params, "study": "by hand", "protocol": protocol}}
    section = "by_arch" if protocol == "v1" else "custom"
    path.write_text(json.dumps({"dataset": dataset, "method": method, section: entry}))


def test_tune_sweeps_only_cells_without_tuned_settings(digits, tmp_path):
    from methods.registry import get_rule
    from sweeps.tune import tune_missing

    bp_arch = get_rule("bp").parse_arch(None, 10).text
    _write_tuned(digits, "bp", bp_arch, {"lr": 0.002}, protocol="custom")
    # a custom budget (1 trial x 1 epoch): the cells are looked up, swept and applied as custom, never as v1
    spec = dataclasses.replace(_spec(tmp_path, digits, ("bp", "fa")), protocol="custom")
    assert [c.tuned for c in expand(spec)] == [True, False]
    out = io.StringIO()
    swept = tune_missing(spec, trials=1, epochs=1, limit_train=300, out=out)
    assert [(c.dataset, c.method) for c in swept] == [(digits, "fa")]
    assert "custom budget (not protocol v1): 1 trials x 1 epoch(s) x 300 of " in out.getvalue()  # the real size
    assert [c.tuned for c in expand(spec)] == [True, True]  # fa's sweep exported its best lr
    assert [c.protocol for c in expand(spec)] == ["custom", "custom"]
    assert [c.tuned for c in expand(dataclasses.replace(spec, protocol=None))] == [False, False]  # not v1
    again = io.StringIO()
    assert tune_missing(spec, trials=1, epochs=1, limit_train=300, out=again) == []
    assert "no sweep" in again.getvalue()
    (cfg_bp, cfg_fa) = expand(spec)
    assert cfg_bp.rule == {"lr": 0.002} and "lr" in cfg_fa.rule and cfg_fa.rule_sources["lr"].startswith("tuned")


def test_a_contradictory_tune_is_refused(digits, tmp_path):
    from bench.errors import ConfigError
    from sweeps.tune import tune_missing

    with pytest.raises(ConfigError, match="--no-tuned"):
        tune_missing(_spec(tmp_path, digits, ("bp",), tuned=False), dry_run=True)


@pytest.mark.parametrize(
    "x,y,match",
    [
        (np.zeros((10, 3, 8, 8)), np.zeros(10, dtype=int), "shape"),  # wrong channels
        (np.zeros((10, 8, 8)), np.zeros(9, dtype=int), "shape"),  # fewer labels than images
        (np.zeros((10, 8, 8)), np.full(10, 10), "outside 0..9"),
        (np.zeros((10, 8, 8)), np.full(10, -1), "outside 0..9"),
        (np.zeros((10, 8, 8), dtype=bool), np.zeros(10, dtype=int), "dtype"),
        (np.zeros((10, 8, 8)), np.full(10, 0.5), "integers"),
        (np.full((10, 8, 8), np.nan), np.zeros(10, dtype=int), "NaN"),
    ],
)
def test_every_loaders_output_is_checked(x, y, match):
    register_dataset("bad_data", shape=(8, 8), num_classes=10, loader=lambda root, train: (x, y))
    try:
        with pytest.raises(DataError, match=match) as e:
            load_split("bad_data", "/nonexistent", True)
        assert "bad_data (registered loader" in str(e.value)
    finally:
        unregister_dataset("bad_data")


def test_a_failing_loader_is_one_clear_error_naming_it():
    def broken(root, train):
        raise FileNotFoundError("no such file: my.csv")

    register_dataset("broken_data", shape=(1, 4, 4), num_classes=3, loader=broken)
    try:
        with pytest.raises(DataError, match=r"broken_data \(registered loader .*broken.*FileNotFoundError: no such"):
            load_split("broken_data", "/nonexistent", False)
    finally:
        unregister_dataset("broken_data")


def test_decorator_form_and_channels_last_and_make_data_message(tmp_path):
    from bench.data import ensure_data

    @register_dataset("hwc_data", shape=(3, 4, 4), num_classes=2, scale=1.0)
    def hwc(root, train):
        g = torch.Generator().manual_seed(int(train))
        return torch.rand(6, 4, 4, 3, generator=g), torch.tensor([0, 1] * 3)

    try:
        x, y = load_split("hwc_data", str(tmp_path), True)
        assert x.shape == (6, 3, 4, 4) and y.dtype == torch.long and callable(hwc)
        msg = ensure_data("hwc_data", tmp_path)
        assert "loaded and checked" in msg and "features" not in msg and "6 train and 6 test" in msg
    finally:
        unregister_dataset("hwc_data")


def test_bench_modules_registers_user_datasets_for_the_cli(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "my_data.py").write_text(
        "import numpy as np\nfrom bench.data import register_dataset\n"
        "register_dataset('my_data', shape=(2,), num_classes=2, scale=1.0,\n"
        "                 loader=lambda root, train: (np.eye(2)[[0, 1] * 5], np.array([0, 1] * 5)))\n"
    )
    env = {
        **os.environ,
        "BENCH_MODULES": "my_data",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parents[1])]),
    }
    out = subprocess.run([sys.executable, "-m", "bench", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert "my_data        2x1x1, 2 classes (registered loader)" in out.stdout, out.stderr
    dry = subprocess.run(
        [sys.executable, "-m", "bench", "grid", "--datasets", "my_data", "--methods", "bp", "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0 and "my_data__bp__mlp-1024-C" in dry.stdout and "UNTUNED" in dry.stdout, dry.stderr
