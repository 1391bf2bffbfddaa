"""Faults a user can cause (bad values, unusable folders, damaged files, stale exports): each gets one clear line
and the behaviour the "What happens when ..." table of docs/running.md promises."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from bench.paths import PROJECT_ROOT


def _cli(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


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
    # issue 29, 5: 0 is a value, never "the default"
    (("grid", "--methods", "bp", "--seeds", "0", "--epochs", "0"), "--epochs must be >= 1, got 0"),
    (("sweep", "--method", "bp", "--trials", "0"), "--trials must be >= 1, got 0"),
    (("sweep", "--method", "bp", "--epochs", "0"), "--epochs must be >= 1, got 0"),
    # issue 29, 11: a bad --seeds is one line, not argparse's usage
    (("grid", "--methods", "bp", "--seeds", "a"), "--seeds takes comma-separated integers or ranges low-high"),
    (("grid", "--methods", "bp", "--seeds", "5-3"), "--seeds range '5-3' is empty"),
    # issue 29, 7: a study name becomes a folder name
    (("sweep", "--method", "bp", "--study-name", "../x"), "study name '../x' cannot be a folder name"),
    (("sweep", "--method", "bp", "--study-name", "a/../../b"), "study name 'a/../../b' cannot be a folder name"),
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
        proc = _cli(
            "run", "--data-dir", str(tmp_path / "no-data"), "--runs-dir", str(runs), "--wandb", "disabled", *args
        )
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "cannot load" not in proc.stderr, proc.stderr
    assert not list(runs.glob("records/*.json"))


def test_grid_seeds_take_ranges(capsys):
    """Issue 29, 11: ``--seeds 0-2,5`` is seeds 0, 1, 2 and 5."""
    from bench.cli import main

    assert main(["grid", "--methods", "bp", "--seeds", "0-2,5", "--no-tuned", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("grid: 4 runs:") and all(f"__s{s}__" in out for s in (0, 1, 2, 5)), out


def test_run_takes_a_set_option_scoped_to_its_own_rule(capsys):
    from bench.cli import main

    assert main(["run", "--method", "pepita", "--set", "pepita.lr=0.01", "--set", "dropout=0.2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "'lr': 0.01" in out and "'dropout': 0.2" in out


# ----------------------------------------------------------------------------------------------- report (item 7)
def test_rebuilt_report_drops_stale_dataset_tables_and_wandb_names_the_real_record(tmp_path):
    from bench.run import RunConfig, run
    from bench.wandb_io import iter_offline_runs
    from reports.build import BUILT, build_report
    from tests.native_files import make_idx_dataset

    data, runs = tmp_path / "data", tmp_path / "my-runs"
    make_idx_dataset(data, "MNIST", n_train=120, n_test=40)
    make_idx_dataset(data, "KMNIST", n_train=120, n_test=40)
    common = dict(
        method="bp",
        arch="mlp:8-C",
        epochs=1,
        batch_size=40,
        data_dir=str(data),
        verify_data=False,
        runs_dir=str(runs),
        progress=False,
    )
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


# ----------------------------------------------------------------------------------------------- disks (item 3)
def _tiny_fs_cli(mount_opts: str, folder, *args: str, fill: int = 0) -> subprocess.CompletedProcess:
    """The CLI with ``folder`` a fresh tmpfs mounted with ``mount_opts`` (``fill`` bytes taken), in a private mount
    namespace (``unshare``; nothing leaks to the machine). Skips where the kernel allows no such namespace."""
    import shutil

    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no user/mount namespaces here (unshare -rm)")
    folder.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {mount_opts} tmpfs "$1" || exit 99; shift; '
    if fill:
        script += f'head -c {fill} /dev/zero > "$0/fill"; '
    script = script.replace('"$0/fill"', f'"{folder}/fill"') + 'exec "$@"'
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, "sh", str(folder), sys.executable, "-m", "bench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode == 99:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    return proc


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    from tests.native_files import make_idx_dataset

    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root, "MNIST", n_train=120, n_test=40)
    return root


def _one_line(proc: subprocess.CompletedProcess, code: int, *words: str) -> None:
    err = proc.stderr
    assert proc.returncode == code, (proc.returncode, err[-2000:])
    assert "Traceback" not in err and "Logging error" not in err, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), err[-2000:]


@pytest.mark.parametrize("command", [("run",), ("grid", "--methods", "bp", "--seeds", "0")])
def test_a_read_only_runs_folder_is_one_line_before_anything_loads(command, tiny_mnist, tmp_path):
    runs = tmp_path / "ro"
    proc = _tiny_fs_cli(
        "ro,size=64k",
        runs,
        *command,
        "--dataset" if command[0] == "run" else "--datasets",
        "mnist",
        "--arch",
        "mlp:8-C",
        "--epochs",
        "1",
        "--data-dir",
        str(tmp_path / "no-data"),
        "--runs-dir",
        str(runs / "runs"),
        "--wandb",
        "offline",
    )
    _one_line(proc, 2, "cannot write to", "read-only", "--runs-dir")


def test_a_full_runs_folder_is_one_line_before_anything_loads(tiny_mnist, tmp_path):
    runs = tmp_path / "full"
    proc = _tiny_fs_cli(
        "size=512k",
        runs,
        "run",
        "--dataset",
        "mnist",
        "--arch",
        "mlp:8-C",
        "--epochs",
        "1",
        "--data-dir",
        str(tiny_mnist),
        "--runs-dir",
        str(runs / "runs"),
        "--wandb",
        "offline",
        fill=300_000,
    )
    _one_line(proc, 2, "cannot write to", "the disk is full")


def test_a_disk_filling_up_while_a_command_works_is_one_line(tmp_path, monkeypatch, capsys):
    """The disk fills after the start-up check (here: while the report writes its index): exit 1 and one line naming
    the file, no traceback."""
    import errno
    import pathlib

    from bench.cli import main

    write_text = pathlib.Path.write_text

    def full(self, *a, **k):
        if self.name == "index.md":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return write_text(self, *a, **k)

    (tmp_path / "runs").mkdir()
    monkeypatch.setattr(pathlib.Path, "write_text", full)
    code = main(["report", "--source", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "index.md" in line and "the disk is full" in line, err


def _mnist_run_args(data, runs, *extra: str) -> list[str]:
    return [
        "--dataset",
        "mnist",
        "--arch",
        "mlp:8-C",
        "--epochs",
        "1",
        "--batch-size",
        "40",
        "--data-dir",
        str(data),
        "--runs-dir",
        str(runs),
        "--no-progress",
        *extra,
    ]


def test_a_full_disk_at_the_record_write_prints_the_result_when_wandb_does_not_hold_it(
    tiny_mnist, tmp_path, monkeypatch, capsys
):
    """Issue 29, 1: the disk fills during training, so W&B's run file is cut short (4096 bytes) and the record
    write fails: the one error line must not send the user to that file; it carries the result itself (test
    metrics, epochs), and the exit status is docs/running.md's for a disk that fills (1)."""
    import errno
    import json
    import re
    from pathlib import Path

    import bench.run as br
    from bench.cli import main

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    finish = br._finish_logger

    def cut_short(logger, record, runs_dir=None):
        finish(logger, record, runs_dir)
        exp = logger.experiment
        run_file = Path(exp.dir).parent / f"run-{exp.id}.wandb"
        with open(run_file, "r+b") as f:
            f.truncate(4096)

    monkeypatch.setattr(br, "save_attempt", full)
    monkeypatch.setattr(br, "_finish_logger", cut_short)
    runs = tmp_path / "runs"
    code = main(["run", *_mnist_run_args(tiny_mnist, runs, "--wandb", "offline")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "No space left on device" in line and "its metrics are in the W&B run" not in line, err
    assert "does not hold it" in line, line
    result = json.loads(re.search(r"here is its result: (\{.*?\}); free space", line).group(1))
    assert result["status"] == "completed" and result["epochs_done"] == 1 and result["epochs"] == 1, line
    assert result["test"]["test/acc"] > 0 and len(result["val_acc"]) == 1, line
    assert not list(runs.glob("records/*.json"))


def test_a_wandb_finish_that_fails_never_loses_the_record(tiny_mnist, tmp_path, monkeypatch, capsys):
    """Issue 29, 2: the record is written before W&B is finished; a failing ``wandb.finish`` (its service died of
    the same SIGTERM: ConnectionResetError) is one warning line and never replaces the run's own outcome."""
    import lightning.pytorch as pl
    import wandb

    from bench.errors import Interrupted
    from bench.records import read_record
    from bench.run import RunConfig, run

    real = wandb.finish

    def reset(*a, **k):
        real(*a, **k)  # the run is closed in this process; only the error remains
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(wandb, "finish", reset)
    common = dict(
        dataset="mnist",
        method="bp",
        arch="mlp:8-C",
        batch_size=40,
        data_dir=str(tiny_mnist),
        verify_data=False,
        runs_dir=str(tmp_path / "runs"),
        wandb="offline",
        progress=False,
    )
    done = run(RunConfig(epochs=1, **common))
    assert done.status == "completed" and read_record(done.record_path)["status"] == "completed"
    assert "warning: W&B could not finish run" in capsys.readouterr().err

    class Sigterm(pl.Callback):
        def on_train_epoch_end(self, trainer, rule) -> None:
            raise Interrupted(15)

    with pytest.raises(Interrupted):
        run(RunConfig(epochs=3, callbacks=[Sigterm()], **common))
    recs = [read_record(f) for f in (tmp_path / "runs" / "records").glob("*.json")]
    assert sorted(r["status"] for r in recs) == ["completed", "interrupted"], recs


def test_a_records_folder_turned_read_only_names_the_record_not_the_claim(tiny_mnist, tmp_path, monkeypatch, capsys):
    """Issue 29, 6: the records folder turns read-only while a grid cell trains: the record write fails and so
    does the claim's release; the one error line is the record's (test accuracy, where the metrics are)."""
    import errno
    import pathlib

    import bench.run as br
    from bench.cli import main

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    unlink = pathlib.Path.unlink

    def no_unlink(self, *a, **k):
        if self.suffix == ".claim":
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return unlink(self, *a, **k)

    monkeypatch.setattr(br, "save_attempt", read_only)
    monkeypatch.setattr(pathlib.Path, "unlink", no_unlink)
    args = _mnist_run_args(tiny_mnist, tmp_path / "runs", "--wandb", "disabled")
    args[0] = "--datasets"
    code = main(["grid", "--methods", "bp", "--seeds", "0", *args])
    err = capsys.readouterr().err  # (in this process, loggers of earlier tests may complain of closed streams)
    assert code == 1, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert "Read-only file system" in line and ".claim" not in line and "test acc 0." in line, line
    assert "W&B was disabled" in line and '"test": {"test/acc": ' in line, line


def test_the_report_skips_records_that_do_not_fit_the_schema_in_one_line_each(tmp_path, capsys):
    """Issue 29, 9: records with fields of the wrong type (or no status: a phantom ``crashed`` row) are skipped, one
    line each; the report is built (exit 0) from the others."""
    import json

    from bench.cli import main
    from bench.records import read_record
    from reports.collect import collect_runs

    records = tmp_path / "runs" / "records"
    records.mkdir(parents=True)
    bad = [{"name": "y", "test": "s"}, {"name": "y", "history": 5}, {"name": ["l"]}, {"name": "x"}]
    bad += [{"name": "z", "status": "completed", "test": {"test/acc": "high"}}, {"name": "w", "status": "done"}]
    for i, rec in enumerate(bad):
        (records / f"bad{i}.json").write_text(json.dumps(rec))
    good = {"name": "g", "status": "crashed", "config_hash": "abc", "test": {}, "history": [], "epochs": 1}
    (records / "good.json").write_text(json.dumps(good))
    assert all(read_record(records / f"bad{i}.json") is None for i in range(len(bad)))
    code = main(["report", "--source", str(tmp_path / "runs"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    skipped = [ln for ln in err.splitlines() if ln.startswith("note: skipped ")]
    assert len(skipped) == len(bad) and all("not a run record" in ln for ln in skipped), err
    assert list(collect_runs(str(tmp_path / "runs"))["name"]) == ["g"]


def test_report_without_a_runs_folder_is_one_line(tmp_path):
    _one_line(
        _cli("report", "--source", str(tmp_path / "nothing"), "--out", str(tmp_path / "out")),
        2,
        "no runs folder at",
        "make bench",
    )


@pytest.mark.parametrize("key", [None, "0123456789abcdef0123456789abcdef01234567"], ids=["no-key", "a-key"])
def test_a_wandb_source_that_cannot_be_read_is_one_line_after_a_bounded_wait(key, tmp_path):
    """Issue 29, 8: ``--source wandb:...`` with no account, no network or no such project: one line, exit 2, and
    the wait for W&B's first answer is bounded ($BENCH_WANDB_TIMEOUT)."""
    import time

    env = {"WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "BENCH_WANDB_TIMEOUT": "8", "WANDB_MODE": "online"}
    env.pop("WANDB_API_KEY", None) if key is None else env.update(WANDB_API_KEY=key)
    base = {k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--source", "wandb:nobody/nothing", "--out", str(tmp_path / "o")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
    )
    _one_line(proc, 2, "W&B", "nobody/nothing")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert time.monotonic() - t0 < 45, proc.stderr


def test_report_into_a_read_only_folder_is_one_line(tmp_path):
    out = tmp_path / "ro"
    (tmp_path / "runs").mkdir()
    _one_line(
        _tiny_fs_cli("ro,size=64k", out, "report", "--source", str(tmp_path / "runs"), "--out", str(out / "o")),
        2,
        "cannot write to",
        "read-only",
        "--out",
    )


def test_a_sqlite_study_damaged_inside_a_page_is_one_line(tmp_path):
    import sqlite3

    import optuna

    db = tmp_path / "study.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="old")
    study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=30)
    con = sqlite3.connect(db)
    try:
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        (page,) = con.execute("SELECT pageno FROM dbstat WHERE name = 'trials' AND pagetype = 'leaf'").fetchone()
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table to find the trials' page")
    finally:
        con.close()
    with open(db, "r+b") as f:  # garble the middle of the trials table's page; the file header stays intact
        f.seek((page - 1) * page_size + page_size // 2)
        f.write(b"\xff" * (page_size // 3))
    proc = _cli(
        "sweep",
        "--method",
        "bp",
        "--dataset",
        "mnist",
        "--trials",
        "1",
        "--epochs",
        "1",
        "--storage",
        str(db),
        "--executor",
        "inline",
        "--data-dir",
        str(tmp_path / "no-data"),
        "--runs-dir",
        str(tmp_path / "runs"),
    )
    _one_line(proc, 2, f"the study file {db} is damaged", "malformed", "move it aside")


# ----------------------------------------------------------------------------------------------- exports (item 4)
def test_an_export_never_replaces_a_larger_budget_or_another_protocol_unless_forced(tmp_path, monkeypatch, capsys):
    """Studies with a given budget (trials, epochs, training samples) and scores, exported with
    ``bench sweep --export-only``: a smaller-budget or other-protocol study keeps the entry (and says why),
    --export-force replaces it, an equal-or-larger budget under the same protocol replaces it."""
    import json
    import signal

    import optuna

    from sweeps.cli import build_parser, build_specs
    from sweeps.cli import main as sweep_main
    from sweeps.launch import create_study

    monkeypatch.setenv("BENCH_TUNED_DIR", str(tmp_path / "tuned"))
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = ["--method", "bp", "--arch", "mlp:16-C", "--storage", url, "--export-only", "--no-figures"]

    def study(args: list[str], trials: int, value: float) -> None:
        ((spec, _),) = build_specs(build_parser().parse_args(base + args), out=io.StringIO())
        s, _ = create_study(spec, url, trials, heartbeat=None)
        s.optimize(lambda t: (t.suggest_float("lr", 1e-5, 1e-1, log=True), value)[1], n_trials=trials)

    def export(args: list[str]) -> tuple[float, str]:
        handler = signal.getsignal(signal.SIGTERM)
        try:
            assert sweep_main(base + args) == 0
        finally:
            signal.signal(signal.SIGTERM, handler)
        # budgets other than protocol v1's: the entries live under "custom" (never applied as v1 settings)
        (entry,) = json.loads((tmp_path / "tuned" / "fashion_mnist" / "bp.json").read_text())["custom"].values()
        return entry["val_acc"], capsys.readouterr().out

    big, small = ["--epochs", "2", "--limit-train", "10000"], ["--epochs", "1", "--limit-train", "2000"]
    study(big, 8, 0.845)
    study(small, 4, 0.735)
    study(big + ["--batch-size", "128"], 8, 0.85)
    study(["--epochs", "3", "--limit-train", "10000"], 8, 0.86)
    assert export(big)[0] == 0.845
    acc, out = export(small)
    assert (
        acc == 0.845
        and "kept " in out
        and "larger budget (epochs 2 > 1, training samples 10000 > 2000, finished trials 8 > 4)" in out
        and "--export-force replaces it" in out
    )
    acc, out = export(big + ["--batch-size", "128"])
    assert acc == 0.845 and "tuned under a different protocol (run batch_size: None vs 128)" in out
    assert export(small + ["--export-force"])[0] == 0.735
    assert export(big)[0] == 0.845  # a larger budget under the same protocol replaces the small one
    acc, out = export(["--epochs", "3", "--limit-train", "10000"])
    assert acc == 0.86 and "replaced val/acc 0.8450" in out


def test_a_study_name_read_from_storage_is_never_a_path_outside_the_folders(tmp_path):
    """Issue 29, 7: a shared storage may hold a study named ``../../elsewhere``: a figure, trial or transfer folder
    is never built from it (one line, exit 2 in the CLI), and nothing is written outside."""
    import optuna

    from bench.errors import ConfigError
    from sweeps.figures import figures_dir, write_figures

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", study_name="../../elsewhere")
    root = tmp_path / "a" / "b"
    with pytest.raises(ConfigError, match=r"study name '\.\./\.\./elsewhere' cannot be a folder name"):
        write_figures(study, root)
    assert not (tmp_path / "a" / "elsewhere").exists() and not root.exists()
    assert figures_dir("fashion_mnist__bp__mlp-1024-C__e5__b8ab1628", root).parent == root / "sweeps"


# ----------------------------------------------------------------------------------------------- workers (item 5)
def _study_spec(epochs: int = 1):
    from sweeps.space import load_space
    from sweeps.study import StudySpec

    sp = load_space("bp")
    return StudySpec(
        dataset="mnist",
        method="bp",
        arch="mlp:16-C,act=relu,out_act=none,bias=1,init=default",
        epochs=epochs,
        run={"limit_eval": 40, "batch_size": 20},
        space=sp.to_dict(),
        space_source=sp.source,
    )


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_a_rerun_at_once_reaps_the_trial_of_a_dead_worker_on_this_host(storage, tiny_mnist, tmp_path):
    """A worker on this host died mid-trial a moment ago (well inside the heartbeat grace): the re-run reaps its
    trial at once by the pid check, re-queues it with the same parameters and finishes the budget."""
    import socket

    from sweeps.launch import create_study, run_sweep, trial_id

    url = f"sqlite:///{tmp_path / 'study.db'}" if storage == "sqlite" else f"journal:{tmp_path / 'study.log'}"
    spec = _study_spec()
    study, st = create_study(spec, url, 2, heartbeat=30)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid is gone
    trial = study.ask({"lr": __import__("optuna").distributions.FloatDistribution(1e-5, 1e-1, log=True)})
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    if storage == "sqlite":
        st.record_heartbeat(trial_id(st, study, trial.number))  # fresh: the heartbeat alone would wait 120 s
    out = io.StringIO()
    res = run_sweep(
        spec,
        budget=2,
        workers=1,
        storage=url,
        executor="inline",
        heartbeat=30,
        env={"data_dir": str(tiny_mnist), "wandb": "disabled", "runs_dir": str(tmp_path / "runs")},
        export=False,
        figures=False,
        out=out,
    )
    assert f"trial(s) [{trial.number}] had lost their worker" in out.getvalue(), out.getvalue()
    assert res.counts["COMPLETE"] + res.counts["PRUNED"] == 2 and res.counts["FAIL"] == 1, out.getvalue()
    trials = study.get_trials(deepcopy=False)
    failed = trials[trial.number]
    assert failed.state.name == "FAIL" and f"worker process {dead.pid}" in failed.user_attrs["error"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == trial.number]
    assert retry.params == failed.params and retry.state.name in ("COMPLETE", "PRUNED")


def test_a_killed_local_worker_is_named_with_its_signal(tiny_mnist, tmp_path):
    """A local worker killed mid-trial: the launcher's line names the signal that killed it (not a warning from its
    log), and its trial is marked FAIL and re-queued before the launcher returns."""
    import signal
    import threading
    import time

    import optuna

    from sweeps.launch import run_sweep
    from sweeps.storage import open_storage

    url = f"sqlite:///{tmp_path / 'study.db'}"
    spec = _study_spec(epochs=200)  # long enough to be caught mid-trial
    killed: list[int] = []
    errors: list[str] = []

    def killer() -> None:
        deadline, study = time.time() + 240, None
        while time.time() < deadline and not killed:
            time.sleep(0.1)
            if "worker job(s)" not in out.getvalue():  # the launcher has created the study and started the worker
                continue
            try:
                study = study or optuna.load_study(
                    study_name=spec.study_name(), storage=open_storage(url, heartbeat=None)
                )
                running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
            except Exception as e:  # noqa: BLE001 - not created yet, or locked for a moment
                errors.append(repr(e))
                continue
            for t in running:
                pid = t.user_attrs.get("worker", "").partition(":")[2]
                if pid.isdigit():
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(t.number)

    out = io.StringIO()
    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    res = run_sweep(
        spec,
        budget=1,
        workers=1,
        storage=url,
        executor="local",
        heartbeat=30,
        threads=1,
        env={"data_dir": str(tiny_mnist), "wandb": "disabled", "runs_dir": str(tmp_path / "runs")},
        export=False,
        figures=False,
        poll=0.2,
        out=out,
    )
    thread.join(5)
    assert killed, (out.getvalue(), errors[-3:])
    (line,) = res.worker_errors
    assert "failed: killed by signal 9 (SIGKILL)" in line, line
    assert "Warning" not in line and "smaller than" not in line and "UncompletedJobError" not in line, line
    assert f"trial(s) [{killed[0]}] lost their worker" in out.getvalue()
    assert res.counts["FAIL"] == 1 and res.counts["WAITING"] == 1


# ----------------------------------------------------------------------------------------------- data files (item 6)
@pytest.fixture()
def fake_debian(tmp_path, monkeypatch):
    """A stand-in for Debian's /usr/share/datasets/fashion-mnist: the four gzipped IDX files (small, generated)."""
    import gzip

    from tests.native_files import make_idx_dataset

    raw = make_idx_dataset(tmp_path / "gen", "FashionMNIST", n_train=120, n_test=40)
    deb = tmp_path / "debian"
    deb.mkdir()
    for f in raw.iterdir():
        (deb / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    monkeypatch.setattr("bench.data.DEBIAN_FMNIST", deb)
    monkeypatch.setenv("BENCH_DEBIAN_FMNIST", str(deb))  # for the CLI in a subprocess
    return raw


def test_make_data_reunpacks_a_truncated_or_altered_file_and_runs_refuse_it(fake_debian, tmp_path, capsys):
    from bench.cli import main
    from bench.data import load_split

    data = tmp_path / "data"
    raw = data / "FashionMNIST" / "raw"
    images = raw / "train-images-idx3-ubyte"
    assert main(["data", "--datasets", "fashion_mnist", "--data-dir", str(data)]) == 0
    assert images.read_bytes() == (fake_debian / images.name).read_bytes()
    capsys.readouterr()

    images.write_bytes(images.read_bytes()[:-1000])  # truncated
    assert main(["data", "--datasets", "fashion_mnist", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"{images} was damaged" in out and "unpacked it again from" in out and "checksums verified" in out
    assert images.read_bytes() == (fake_debian / images.name).read_bytes()

    flipped = bytearray(images.read_bytes())
    flipped[5000:5100] = bytes(255 - b for b in flipped[5000:5100])  # pixel bytes, same size, valid header
    images.write_bytes(bytes(flipped))
    load_split.cache_clear()
    proc = _cli(
        "run",
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(data),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--wandb",
        "disabled",
        "--epochs",
        "1",
    )
    _one_line(proc, 2, str(images), "is damaged (same size as recorded, different sha256)", "make data")
    assert not list((tmp_path / "runs").glob("records/*.json"))  # no run record
    assert main(["data", "--datasets", "fashion_mnist", "--data-dir", str(data)]) == 0
    assert images.read_bytes() == (fake_debian / images.name).read_bytes()


def test_make_data_checks_unrecorded_files_against_their_gz_original(tmp_path, capsys):
    """Files unpacked before checksums were recorded (here: torchvision's download, which keeps the .gz beside
    each file): an altered one is found by comparing with its original and unpacked again."""
    import gzip

    from bench.cli import main
    from tests.native_files import make_idx_dataset

    raw = make_idx_dataset(tmp_path, "MNIST", n_train=120, n_test=40)
    for f in list(raw.iterdir()):
        (raw / f"{f.name}.gz").write_bytes(gzip.compress(f.read_bytes()))
    labels = raw / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(good[:-1] + bytes([(good[-1] + 1) % 10]))
    assert main(["data", "--datasets", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert f"{labels} was damaged (differs from its original" in capsys.readouterr().out
    assert labels.read_bytes() == good


def test_the_recording_executor_starts_its_controller_as_submitit_starts_its_own(tmp_path, monkeypatch):
    """``RecordingExecutor`` overrides submitit's private ``_submit_command``: it must hand its controller the same
    environment (the controller's settings) as submitit's own, and differ only in the controller module. A submitit
    release that changes that contract fails here, not in a worker."""
    import subprocess

    from submitit.local.local import LocalExecutor

    from bench.executors.local_controller import RecordingExecutor

    started = []

    class Started:
        pid = 4242

    def popen(cmd, **kw):
        started.append((cmd, kw))
        return Started()

    monkeypatch.setattr(subprocess, "Popen", popen)
    for cls in (LocalExecutor, RecordingExecutor):
        ex = cls(folder=str(tmp_path))
        ex.update_parameters(tasks_per_node=2, timeout_min=3, signal_delay_s=7, stderr_to_stdout=True)
        job = ex._submit_command("python -u -m submitit.core._submit /some/folder")
        assert job.job_id == "4242" and len(job._sub_jobs) == 2
    (theirs, their_kw), (ours, our_kw) = started
    assert [c if c != "submitit.local._local" else "bench.executors.local_controller" for c in theirs] == ours
    assert our_kw.get("shell", False) is False and their_kw.get("shell") is False
    assert our_kw["env"] == their_kw["env"]
