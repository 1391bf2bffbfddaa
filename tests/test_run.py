"""The one run function, the grid and the CLI: determinism, records, divergence, clear errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.grid import GridSpec, run_grid
from bench.paths import PROJECT_ROOT
from bench.run import RunConfig, resolve, run
from tests.native_files import make_idx_dataset


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root, "MNIST", n_train=600, n_test=200)
    return root


def small(mnist_dir, runs_dir, **kw) -> RunConfig:
    base = dict(
        dataset="mnist",
        method="bp",
        arch="mlp:32-C",
        epochs=2,
        batch_size=32,
        data_dir=str(mnist_dir),
        verify_data=False,
        runs_dir=str(runs_dir),
        wandb="disabled",
        progress=False,
    )
    return RunConfig(**{**base, **kw})


def test_same_seed_same_numbers(mnist_dir, tmp_path):
    a = run(small(mnist_dir, tmp_path / "a", seed=3))
    b = run(small(mnist_dir, tmp_path / "b", seed=3))
    c = run(small(mnist_dir, tmp_path / "c", seed=4))

    def strip(r):
        return [{k: v for k, v in row.items() if k != "train/epoch_time_s"} for row in r.record["history"]]

    assert a.status == "completed" and a.test_acc > 0.5  # the generated classes are learnable
    assert strip(a) == strip(b) and a.test_acc == b.test_acc
    assert strip(a) != strip(c)


def test_run_record_is_durable_and_complete(mnist_dir, tmp_path):
    res = run(small(mnist_dir, tmp_path, seed=0))
    rec = json.loads(res.record_path.read_text())
    for key in ("config", "history", "test_acc", "train_time_s", "peak_mem_bytes", "versions", "git_commit", "status"):
        assert key in rec, key
    assert rec["status"] == "completed" and len(rec["history"]) == 2 and "val/acc" in rec["history"][-1]
    assert rec["config"]["rule"]["lr"] == 1e-3 and rec["versions"]["torch"]
    assert res.name.startswith("mnist__bp__mlp-32-C__s0__")


def test_diverged_runs_are_recorded_and_the_grid_goes_on(mnist_dir, tmp_path):
    spec = GridSpec(
        datasets=("mnist",),
        methods=("bp",),
        arch="mlp:32-C",
        seeds=(0, 1),
        epochs=2,
        overrides={"optimizer": "sgd", "lr": 1e12, "momentum": 0.0},
        run=dict(data_dir=str(mnist_dir), verify_data=False, runs_dir=str(tmp_path), wandb="disabled", progress=False),
    )
    out = io.StringIO()
    assert run_grid(spec, out=out) == 0
    recs = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert len(recs) == 2 and all(r["status"] == "diverged" for r in recs)
    assert all(r["epochs_done"] == 1 for r in recs)  # stopped at the first epoch that went non-finite


def test_grid_skips_completed_runs_and_dry_run_prints(mnist_dir, tmp_path):
    spec = GridSpec(
        datasets=("mnist",),
        methods=("bp",),
        arch="mlp:16-C",
        seeds=(0,),
        epochs=1,
        run=dict(data_dir=str(mnist_dir), verify_data=False, runs_dir=str(tmp_path), wandb="disabled", progress=False),
    )
    out = io.StringIO()
    run_grid(spec, dry_run=True, out=out)
    assert "1 to run" in out.getvalue() and "[pending  ] mnist__bp__mlp-16-C__s0__" in out.getvalue()
    run_grid(spec, out=io.StringIO())
    out = io.StringIO()
    run_grid(spec, out=out)
    assert "1 runs: 1 completed" in out.getvalue() and "0 to run" in out.getvalue()
    spec.epochs = 2  # another config is another run
    out = io.StringIO()
    run_grid(spec, dry_run=True, out=out)
    assert "1 to run" in out.getvalue()


def test_grid_reports_every_unsupported_pairing_before_training(mnist_dir, tmp_path):
    from bench.errors import ConfigError

    spec = GridSpec(
        datasets=("mnist",),
        methods=("bp",),
        arch="mlp:1000-34",
        seeds=(0,),
        epochs=1,
        run=dict(data_dir=str(mnist_dir), runs_dir=str(tmp_path)),
    )
    with pytest.raises(ConfigError, match="(?s)cannot work:.*C-way output"):
        run_grid(spec, out=io.StringIO())
    assert not (tmp_path / "records").exists()


def _cli(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


@pytest.mark.parametrize(
    "args,match",
    [
        (("run", "--method", "backprop"), "unknown method 'backprop'; registered rules: "),
        (("run", "--dataset", "imagenet"), "unknown dataset 'imagenet'"),
        (("run", "--arch", "mlp:1024-Q"), "bad layer width 'Q'"),
        (("run", "--set", "lr=-3"), "lr must be a finite number > 0"),
        (("run", "--set", "optimizer=lbfgs"), "optimizer='lbfgs' is not valid"),
        (("run", "--set", "lr=fast"), "lr='fast' is not a valid float"),
        (("run", "--set", "nesterov=1"), "nesterov=True needs optimizer=sgd"),
        (("run", "--epochs", "0"), "epochs must be >= 1"),
        (("run", "--steps-per-call", "0"), "steps_per_call must be an integer >= 1, got 0"),
        (("grid", "--profile", "huge"), "unknown profile 'huge'"),
    ],
)
def test_cli_bad_input_is_one_clear_line(args, match, capsys):
    from bench.cli import main

    assert main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and err.count("\n") == 1


def test_cli_corrupt_data_file_is_one_clear_line(tmp_path):
    raw = make_idx_dataset(tmp_path, "MNIST", n_train=50, n_test=10)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x0a\x01")
    proc = _cli(
        "run",
        "--dataset",
        "mnist",
        "--data-dir",
        str(tmp_path),
        "--wandb",
        "disabled",
        "--epochs",
        "1",
        BENCH_RUNS_DIR=str(tmp_path / "runs"),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "corrupt file" in proc.stderr and "t10k-labels-idx1-ubyte" in proc.stderr


def test_cli_list_shows_rules_archs_datasets(capsys):
    from bench.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("bp", "mlp:1024-C", "resnet18", "fashion_mnist", "cifar100", "svhn", "quick", "paper"):
        assert word in out


def test_resolve_fills_rule_defaults_into_the_identity():
    res = resolve(RunConfig(method="bp", rule={"lr": "0.01"}))
    assert res.canonical["rule"]["lr"] == 0.01 and res.canonical["rule"]["optimizer"] == "adam"
    assert resolve(RunConfig(method="bp", rule={"lr": 0.01})).name == res.name


def test_identity_comes_from_field_metadata():
    """A field marked NOT_IDENTITY leaves every run hash as it was; any other new field changes it."""
    import dataclasses

    from bench.run import NOT_IDENTITY, RUN_SETTINGS, resolve

    @dataclasses.dataclass(kw_only=True)
    class WithNote(RunConfig):
        note: str = dataclasses.field(default="anything", metadata=NOT_IDENTITY)

    @dataclasses.dataclass(kw_only=True)
    class WithKnob(RunConfig):
        knob: int = 3

    base = resolve(RunConfig(dataset="mnist", arch="mlp:16-C"))
    assert resolve(WithNote(dataset="mnist", arch="mlp:16-C")).config_hash == base.config_hash
    assert resolve(WithKnob(dataset="mnist", arch="mlp:16-C")).config_hash != base.config_hash
    assert set(RUN_SETTINGS) == {
        "batch_size",
        "eval_batch_size",
        "val_fraction",
        "norm",
        "augment",
        "test_fraction",
        "limit_train",
        "limit_eval",
    }


@pytest.mark.parametrize(
    "method, arch", [("bp", "mlp:32-C"), ("spela_o", "mlp:32-34"), ("ff", "mlp:32-32"), ("pepita", "mlp:32-C")]
)
def test_steps_per_call_changes_no_number(mnist_dir, tmp_path, method, arch):
    """Grouping batches into one loop call (17 batches per epoch: groups of 8 leave a short last group) gives the same
    updates: the same history, accuracies and run name as one call per batch."""
    runs = {
        k: run(small(mnist_dir, tmp_path / str(k), method=method, arch=arch, seed=1, steps_per_call=k))
        for k in (1, 3, 8)
    }

    def strip(r):
        return [{k: v for k, v in row.items() if k != "train/epoch_time_s"} for row in r.record["history"]]

    one = runs[1]
    assert one.status == "completed" and one.record["history"][0]["train/samples"] == 540
    for r in runs.values():
        assert r.name == one.name and strip(r) == strip(one) and r.test_acc == one.test_acc


class _Seen:
    """Callback recording what a rule saw during fit: the torch flags, whether it took the plain backward path, how
    many backward hooks fired, and the progress bar's count."""

    def __init__(self, hook_backward: bool):
        import lightning as L

        seen = self.seen = {"after_backward": 0}

        class Cb(L.Callback):
            def on_train_start(self, trainer, rule):
                seen["fill"] = torch.utils.deterministic.fill_uninitialized_memory
                seen["deterministic"] = torch.are_deterministic_algorithms_enabled()

            def on_train_epoch_end(self, trainer, rule):
                seen["plain"] = rule._plain_backward  # set by the rule's on_train_start, which runs after ours
                bar = trainer.progress_bar_callback
                if bar is not None:
                    seen.setdefault("bar", []).append((bar.train_progress_bar.n, bar.train_progress_bar.total))

        if hook_backward:

            class Cb(Cb):  # noqa: F811 - the same callback with a backward hook
                def on_after_backward(self, trainer, rule):
                    seen["after_backward"] += 1

        self.callback = Cb()


@pytest.mark.parametrize("hook_backward", [False, True])
def test_backward_hooks_fire_when_a_callback_has_one_and_torch_flags_are_restored(mnist_dir, tmp_path, hook_backward):
    seen = _Seen(hook_backward)
    before = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
    res = run(small(mnist_dir, tmp_path, progress=True, callbacks=[seen.callback]))
    assert res.status == "completed"
    s = seen.seen
    assert s["deterministic"] and not s["fill"]  # deterministic kernels; no NaN fill of every new tensor
    assert s["plain"] is not hook_backward
    assert s["after_backward"] == (2 * 17 if hook_backward else 0)  # Lightning's backward ran, with its hooks
    assert s["bar"] == [(17, 17), (17, 17)]  # the bar counts optimiser steps, not the loop's calls (3 per epoch)
    assert (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory) == before
