"""Faults a user can cause (bad values, unusable folders, damaged files, stale exports): each gets one clear line
and the behaviour the README's "What happens when ..." table promises."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.paths import PROJECT_ROOT


def _cli(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


# ----------------------------------------------------------------------------------------------- values (item 2)
REFUSED = [
    (("run", "--limit-train", "-5"), "limit_train must be >= 1"),
    (("run", "--limit-eval", "0"), "limit_eval must be >= 1"),
    (("run", "--accelerator", "foo"), "accelerator 'foo'; choose one of auto, cpu, gpu"),
    (("run", "--devices", "0"), "devices must be >= 1"),
    (("run", "--devices", "two"), "devices 'two': give a positive count"),
    (("run", "--seed", "-1"), "seed must be an integer in 0..4294967295, got -1"),
    (("run", "--num-nodes", "0"), "num_nodes must be >= 1"),
    (("run", "--strategy", "ddpp"), "strategy 'ddpp'; choose auto or one Lightning registers"),
    (("run", "--test-fraction", "1.5"), "test_fraction must be in (0, 1)"),
    (("run", "--arch", "mlp:-5-C"), "layer width must be >= 1, got -5 in 'mlp:-5-C'"),
    (("run", "--arch", "mlp:5--C"), "empty layer width in 'mlp:5--C'"),
    (("run", "--method", "bp", "--set", "pepita.lr=0.01"), "scoped to rule 'pepita', but this run trains 'bp'"),
    (("grid", "--methods", ""), "--methods is empty"),
    (("grid", "--seeds", ""), "--seeds is empty"),
    (("grid", "--datasets", ""), "--datasets is empty"),
    (("grid", "--methods", "bp", "--limit-train", "-5"), "limit_train must be >= 1"),
    (("grid", "--methods", "bp", "--seeds", "-1"), "seed must be an integer in 0..4294967295"),
    (("grid", "--methods", "bp", "--accelerator", "foo"), "accelerator 'foo'"),
    (("sweep", "--method", "", "--trials", "2"), "--method needs a rule name"),
    (("sweep", "--method", "bp", "--limit-eval", "0"), "limit_eval must be >= 1"),
]


@pytest.mark.parametrize("args,match", REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_dry_run_refuses_bad_values_in_one_line(args, match, capsys):
    from bench.cli import main

    assert main([*args, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err, err
    assert err.count("\n") == 1 or err.startswith("error: the grid has runs that cannot work:"), err


def test_a_gpu_accelerator_without_a_gpu_is_refused(capsys):
    import torch

    from bench.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["run", "--accelerator", "gpu", "--dry-run"]) == 2
    assert "torch sees no CUDA/MPS device" in capsys.readouterr().err


def test_bad_values_are_refused_before_the_data_loads(tmp_path):
    """Without --dry-run too: exit 2, one line, no traceback, no run record (a missing data folder would have
    failed otherwise with a data error)."""
    runs = tmp_path / "runs"
    for args in (("--limit-train", "-5"), ("--seed", "-1"), ("--devices", "0")):
        proc = _cli("run", "--data-dir", str(tmp_path / "no-data"), "--runs-dir", str(runs), "--wandb", "disabled",
                    *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "cannot load" not in proc.stderr, proc.stderr
    assert not (runs / "records").exists()


def test_run_takes_a_set_option_scoped_to_its_own_rule(capsys):
    from bench.cli import main

    assert main(["run", "--method", "pepita", "--set", "pepita.lr=0.01", "--set", "dropout=0.2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'lr': 0.01" in out and "'dropout': 0.2" in out


# ----------------------------------------------------------------------------------------------- report (item 7)
def test_rebuilt_report_drops_stale_dataset_tables_and_wandb_names_the_real_record(tmp_path):
    from bench.run import RunConfig, run
    from reports.build import BUILT, build_report
    from reports.wandb_io import iter_offline_runs
    from tests.native_files import make_idx_dataset

    data, runs = tmp_path / "data", tmp_path / "my-runs"
    make_idx_dataset(data, "MNIST", n_train=120, n_test=40)
    make_idx_dataset(data, "KMNIST", n_train=120, n_test=40)
    common = dict(method="bp", arch="mlp:8-C", epochs=1, batch_size=40, data_dir=str(data), verify_data=False,
                  runs_dir=str(runs), progress=False)
    kept = run(RunConfig(dataset="mnist", wandb="offline", **common))
    gone = run(RunConfig(dataset="kmnist", wandb="disabled", **common))
    # the W&B summary points at the record this run wrote under --runs-dir, not at the default runs folder
    (wb,) = list(iter_offline_runs(runs))
    assert wb.summary["record_path"] == str(kept.record_path) and kept.record_path.is_relative_to(runs)

    out = tmp_path / "out"
    build_report(source=str(runs), out=out, figures=False)
    assert (out / "kmnist.md").exists() and (out / "kmnist.tex").exists()
    (out / "notes.md").write_text("my own notes\n")  # not the report's: a rebuild keeps it
    gone.record_path.unlink()
    build_report(source=str(runs), out=out, figures=False)
    assert not (out / "kmnist.md").exists() and not (out / "kmnist.tex").exists()
    assert (out / "mnist.md").exists() and (out / "notes.md").exists()
    # a folder built before the list of built tables existed: the tables are recognised by their heading
    run(RunConfig(dataset="kmnist", wandb="disabled", **common))
    build_report(source=str(runs), out=out, figures=False)
    (out / BUILT).unlink()
    gone.record_path.unlink()
    build_report(source=str(runs), out=out, figures=False)
    assert not (out / "kmnist.md").exists() and not (out / "kmnist.tex").exists() and (out / "notes.md").exists()
