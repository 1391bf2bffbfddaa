"""The grid on many workers: claims, the record contract, executors (inline, local processes, a real SLURM
cluster), signals. Subprocess tests run the real CLI on small generated MNIST files."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.executors import cpu_sets, device_plan
from bench.grid import GridSpec, Launch, run_grid
from bench.records import CellClaim, atomic_file, cell_state, claim_path, read_claim, read_record, save_attempt
from tests.native_files import make_idx_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    make_idx_dataset(root, "MNIST", n_train=600, n_test=200)
    return root


def grid_args(mnist_dir, runs, *extra, epochs=1, methods="bp,fa", seeds="0,1"):
    return [
        sys.executable,
        "-m",
        "bench",
        "grid",
        "--datasets",
        "mnist",
        "--data-dir",
        str(mnist_dir),
        "--methods",
        methods,
        "--seeds",
        seeds,
        "--epochs",
        str(epochs),
        "--arch",
        "mlp:16-C",
        "--batch-size",
        "32",
        "--runs-dir",
        str(runs),
        "--wandb",
        "disabled",
        *extra,
    ]


def env1() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def spec(mnist_dir, runs, methods=("bp", "fa"), seeds=(0, 1), epochs=1) -> GridSpec:
    return GridSpec(
        datasets=("mnist",),
        methods=methods,
        arch="mlp:16-C",
        seeds=seeds,
        epochs=epochs,
        run=dict(data_dir=str(mnist_dir), verify_data=False, runs_dir=str(runs), wandb="disabled", batch_size=32),
    )


def records(runs: Path) -> dict[str, dict]:
    return {p.stem: read_record(p) for p in (runs / "records").glob("*.json")}


def attempts(runs: Path, name: str) -> int:
    log = runs / "logs" / f"{name}.log"
    return log.read_text().count("== attempt of ") if log.exists() else 0


# ------------------------------------------------------------------------------------------------ claims


def test_a_claim_is_exclusive_and_released(tmp_path):
    p = tmp_path / "records" / "x.claim"
    a = CellClaim.acquire(p)
    assert a is not None and read_claim(p).pid == os.getpid()
    assert CellClaim.acquire(p) is None  # a live owner (this process) holds it
    a.release()
    assert not p.exists()
    b = CellClaim.acquire(p)
    assert b is not None
    b.release()


def _write_claim(p: Path, host: str, pid: int, age: float = 0.0) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"token": "old", "host": host, "pid": pid, "started": time.time()}))
    t = time.time() - age
    os.utime(p, (t, t))


def test_stale_claims_are_taken_over_fresh_ones_are_not(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    p = tmp_path / "records" / "dead.claim"
    _write_claim(p, socket.gethostname(), dead.pid)  # this host, process gone: stale at once
    c = CellClaim.acquire(p)
    assert c is not None and read_claim(p).token == c.token
    c.release()
    other = tmp_path / "records" / "other.claim"
    _write_claim(other, "node-b", 1234, age=5)  # another node, fresh heartbeat: left alone
    assert CellClaim.acquire(other) is None
    _write_claim(other, "node-b", 1234, age=500)  # another node, heartbeat too old: its worker died
    c = CellClaim.acquire(other, grace=120)
    assert c is not None
    c.release()


def test_one_winner_when_many_take_over_a_stale_claim(tmp_path):
    p = tmp_path / "records" / "race.claim"
    _write_claim(p, "node-b", 1, age=1000)
    won, barrier = [], threading.Barrier(8)

    def contender():
        barrier.wait()
        c = CellClaim.acquire(p, grace=60)
        if c is not None:
            won.append(c)

    threads = [threading.Thread(target=contender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and read_claim(p).token == won[0].token


def test_the_heartbeat_keeps_a_claim_fresh(tmp_path):
    p = tmp_path / "records" / "beat.claim"
    c = CellClaim.acquire(p, heartbeat=0.05)
    old = time.time() - 100
    os.utime(p, (old, old))
    time.sleep(0.3)
    assert read_claim(p).age < 5
    c.release()


# ------------------------------------------------------------------------------------------------ records


def test_an_attempt_that_did_not_complete_never_replaces_a_result(tmp_path):
    path = tmp_path / "records" / "r.json"
    save_attempt(path, {"name": "r", "id": "a", "status": "completed", "test_acc": 0.9})
    kept = save_attempt(path, {"name": "r", "id": "b", "status": "crashed", "test_acc": None})
    assert read_record(path)["id"] == "a" and kept.parent.name == "attempts" and read_record(kept)["id"] == "b"
    save_attempt(path, {"name": "r", "id": "c", "status": "completed", "test_acc": 0.8})  # a new result replaces it
    assert read_record(path)["id"] == "c"
    save_attempt(path, {"name": "r", "id": "d", "status": "diverged"})
    assert read_record(path)["id"] == "d"


def test_records_that_are_not_objects_are_not_records(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "x.json").write_text("[1]")
    assert read_record(tmp_path / "records" / "x.json") is None
    from reports.collect import collect_runs

    assert collect_runs(str(tmp_path)).empty


def test_a_failed_write_leaves_the_old_record_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "records" / "r.json"
    save_attempt(path, {"name": "r", "id": "a", "status": "completed"})

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        save_attempt(path, {"name": "r", "id": "b", "status": "completed"}, retries=2, wait=0)
    assert read_record(path)["id"] == "a" and sorted(p.name for p in path.parent.iterdir()) == ["r.json"]


def test_an_atomic_file_replaces_the_old_one_only_when_its_block_ends_well(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted while writing")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    with atomic_file(path) as tmp:
        tmp.write_bytes(b"new")
        assert path.read_bytes() == b"old"  # nothing is seen before the block ends
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


# ------------------------------------------------------------------------------------------------ devices


def test_device_plan_packs_workers_round_robin_over_gpus_and_nodes():
    gpus = [str(i) for i in range(8)]
    plan = device_plan(48, gpus, per_device=3, nodes=2)
    per = {}
    for node, gpu in plan:
        per[(node, gpu)] = per.get((node, gpu), 0) + 1
    assert len(per) == 16 and set(per.values()) == {3}
    assert plan[:9] == [(0, g) for g in gpus] + [(0, "0")]  # round-robin: neighbours land on different GPUs
    with pytest.raises(ConfigError, match="do not fit"):
        device_plan(49, gpus, per_device=3, nodes=2)
    assert device_plan(3, [], 1) == [(0, None)] * 3


def test_cpu_sets_split_what_the_process_owns():
    assert cpu_sets(2, [0, 1]) == [[0], [1]]
    assert cpu_sets(2, [0, 1, 2, 3, 4]) == [[0, 1], [2, 3]]
    assert cpu_sets(3, [0, 1]) == [[0], [1], [0]]
    assert cpu_sets(1, [4, 5]) == [[4, 5]]


# ------------------------------------------------------------------------------------------------ executors


def test_local_workers_give_the_same_records_as_inline(mnist_dir, tmp_path):
    run_grid(spec(mnist_dir, tmp_path / "inline"), out=io.StringIO())
    out = io.StringIO()
    run_grid(spec(mnist_dir, tmp_path / "local"), launch=Launch("local", workers=2, poll=0.5), out=out)
    a, b = records(tmp_path / "inline"), records(tmp_path / "local")
    assert sorted(a) == sorted(b) and len(a) == 4
    for name in a:
        assert a[name]["config_hash"] == b[name]["config_hash"] and a[name]["test_acc"] == b[name]["test_acc"]
        assert attempts(tmp_path / "local", name) == 1
    text = out.getvalue()
    assert text.count("completed ") >= 4 and "grid: 4 runs: 4 completed" in text
    assert "GPU available" not in text and "Lightning" not in text  # run output went to the per-run logs
    for name, rec in b.items():  # each worker's log shows the run's epochs as they finish
        log = (tmp_path / "local" / "logs" / f"{name}.log").read_text()
        assert all(f"epoch {e}/{rec['epochs']}  train/loss" in log for e in range(1, rec["epochs"] + 1)), log
    status = io.StringIO()
    assert run_grid(spec(mnist_dir, tmp_path / "local"), status=True, out=status) == 0
    assert "4 completed" in status.getvalue() and "0 to run" in status.getvalue()


def test_the_grid_ends_with_a_table_per_setting_and_no_bar_off_a_terminal(mnist_dir, tmp_path):
    """The end of a grid: one row per setting (seeds pooled) with mean +- std of the records' test accuracy and n,
    where the records are, and "next: make report"; the progress bar stays off when the output is not a terminal."""
    import statistics

    out = io.StringIO()
    assert run_grid(spec(mnist_dir, tmp_path), out=out) == 0
    text = out.getvalue()
    recs = records(tmp_path)
    assert "% of the work" not in text and "test " in text  # no bar in a StringIO; runs' lines say "test 12.34%"
    table = text[text.index("grid summary") :].splitlines()
    for method in ("bp", "fa"):
        accs = [100 * r["test_acc"] for r in recs.values() if r["method"] == method]
        row = next(line for line in table if f"  {method}  " in line)
        assert len(accs) == 2 and f"{statistics.fmean(accs):6.2f} +- {statistics.stdev(accs):5.2f}" in row
        assert row.split()[-2:] == ["2", "UNTUNED"]  # no tuned settings for mnist on mlp:16-C
    assert f"records: {tmp_path / 'records'}/" in text and "next: make report" in text


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_weighs_runs_by_epochs_and_samples(mnist_dir, tmp_path):
    from bench.grid import _progress, plan

    cells = plan(spec(mnist_dir, tmp_path, seeds=(0,)))
    cells += plan(spec(mnist_dir, tmp_path, seeds=(0,), epochs=3))
    bar = _progress(cells, _Tty(), True)
    one, three = (bar.units[r.name] for _, r in (cells[0], cells[2]))
    assert three == 3 * one and one == 540  # 600 training samples less the 10% validation share, per epoch
    bar.done(cells[2][1].name)
    assert bar.bar.n == three and "1/4 runs" in str(bar.bar.postfix)
    bar.close()
    assert _progress(cells, io.StringIO(), True).bar.disable  # not a terminal: off


def test_two_launches_at_once_run_every_cell_once(mnist_dir, tmp_path):
    runs = tmp_path / "runs"
    cmd = grid_args(mnist_dir, runs, "--executor", "local", "--workers", "1")
    procs = [
        subprocess.Popen(cmd, env=env1(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    recs = records(runs)
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    assert all(attempts(runs, name) == 1 for name in recs), {n: attempts(runs, n) for n in recs}


def _wait_for(pred, timeout=300.0, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(every)
    raise AssertionError("timed out waiting")


def test_a_killed_worker_loses_only_its_cell(mnist_dir, tmp_path):
    runs = tmp_path / "runs"
    first = subprocess.run(
        grid_args(mnist_dir, runs, methods="bp", seeds="0"), env=env1(), capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stdout + first.stderr
    done_before = records(runs)
    # a longer second cell: kill -9 its worker while it trains
    p = subprocess.Popen(
        grid_args(mnist_dir, runs, methods="bp", seeds="0,1", epochs=1) + ["--limit-train", "600"],
        env=env1(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    claim = _wait_for(lambda: next(iter((runs / "records").glob("*.claim")), None))
    p.send_signal(signal.SIGKILL)
    p.wait()
    name = claim.stem
    assert read_claim(claim) is not None and read_claim(claim).stale()  # its owner is gone
    again = subprocess.run(
        grid_args(mnist_dir, runs, methods="bp", seeds="0,1", epochs=1) + ["--limit-train", "600"],
        env=env1(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    recs = records(runs)
    assert recs[name]["status"] == "completed" and attempts(runs, name) == 2
    for n, r in done_before.items():  # the other cell was not touched
        assert recs[n]["id"] == r["id"] and attempts(runs, n) == 1


def test_a_grid_whose_workers_are_killed_exits_non_zero(mnist_dir, tmp_path):
    """Issue 29, 4: both local workers killed with SIGKILL mid-run: the launch names how they died, leaves its cells
    pending and exits non-zero (0 only when every cell is completed or diverged)."""
    runs = tmp_path / "runs"
    p = subprocess.Popen(
        grid_args(mnist_dir, runs, "--executor", "local", "--workers", "2", epochs=300),
        env=env1(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        pids = _wait_for(lambda: (lambda fs: fs if len(fs) == 2 else None)(list(runs.glob("grid/*/worker-*.pid"))))
        _wait_for(lambda: len(list((runs / "records").glob("*.claim"))) == 2)
        for f in pids:
            os.kill(int(f.read_text()), signal.SIGKILL)
        out = p.communicate(timeout=300)[0]
    finally:
        p.kill()
    assert p.returncode == 1, out
    assert out.count("killed by signal 9 (SIGKILL)") == 2 and "4 pending" in out and "Traceback" not in out, out


def test_two_launches_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    """Issue 29, 3: the launch folder (submitit's files, the workers' pid files) is unique per launch, even for two
    launches started in the same second (the pid files of one would else be overwritten by the other's)."""
    import time as _time

    from bench.grid import launch_folder

    monkeypatch.setattr(_time, "strftime", lambda *_a: "20260101-000000")
    a, b = launch_folder(str(tmp_path)), launch_folder(str(tmp_path))
    assert a != b and a.parent == b.parent == tmp_path / "grid" and a.name.startswith("20260101-000000")


def test_a_killed_rerun_keeps_the_completed_record(mnist_dir, tmp_path):
    """Issue repro: a completed run, the same run again killed with SIGKILL mid-training: the result stays."""
    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--dataset",
        "mnist",
        "--data-dir",
        str(mnist_dir),
        "--method",
        "bp",
        "--arch",
        "mlp:16-C",
        "--epochs",
        "1",
        "--runs-dir",
        str(runs),
        "--wandb",
        "disabled",
        "--no-progress",
    ]
    assert subprocess.run(cmd, env=env1(), capture_output=True, timeout=600).returncode == 0
    before = records(runs)
    p = subprocess.Popen(
        [*cmd[:-7], "--epochs", "200", *cmd[-5:]], env=env1(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for(lambda: next(iter((runs / "records").glob("*.claim")), None))
    time.sleep(1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert records(runs) == before
    from reports.build import problems
    from reports.collect import collect_runs, latest_per_config

    assert problems(latest_per_config(collect_runs(str(runs)))) == []


# ------------------------------------------------------------------------------------------------ signals


def started(runs: Path) -> bool:
    """A run of the grid has started (its worker wrote the attempt's header into the run's log): a signal from now
    on ends in an ``interrupted`` record, whether it lands while the run sets up or while it trains."""
    logs = list((runs / "logs").glob("*.log")) if (runs / "logs").exists() else []
    return any("== attempt of" in f.read_text() for f in logs)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_grid_with_its_exit_code(mnist_dir, tmp_path, sig, code):
    runs = tmp_path / "runs"
    p = subprocess.Popen(
        grid_args(mnist_dir, runs, methods="bp", seeds="0", epochs=300),
        env=env1(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(lambda: started(runs))
    p.send_signal(sig)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == code, out
    (rec,) = records(runs).values()
    assert rec["status"] == "interrupted", rec.get("error")
    assert "grid results:" in out and "interrupted" in out and "Traceback" not in out
    assert not list((runs / "records").glob("*.claim"))  # released: the next launch runs it at once


def test_a_signal_stops_local_workers_too(mnist_dir, tmp_path):
    runs = tmp_path / "runs"
    p = subprocess.Popen(
        grid_args(mnist_dir, runs, "--executor", "local", "--workers", "1", methods="bp", seeds="0", epochs=300),
        env=env1(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_for(lambda: started(runs))
    p.send_signal(signal.SIGTERM)
    out = p.communicate(timeout=120)[0]
    assert p.returncode == 143, out
    (rec,) = _wait_for(lambda: list(records(runs).values()), timeout=30)
    assert rec["status"] == "interrupted" and "grid results:" in out


def test_ctrl_c_on_local_workers_is_one_line(mnist_dir, tmp_path):
    """Issue 29, 10: Ctrl-C reaches the whole process group (launcher, submitit controllers, workers): the launch
    prints one ``interrupted`` line and no traceback (the controllers' KeyboardInterrupt), each running cell is
    recorded interrupted, exit 130."""
    runs = tmp_path / "runs"
    p = subprocess.Popen(
        grid_args(mnist_dir, runs, "--executor", "local", "--workers", "2", epochs=300),
        env=env1(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        _wait_for(lambda: len(list((runs / "records").glob("*.claim"))) == 2)
        _wait_for(lambda: sum("== attempt of" in f.read_text() for f in (runs / "logs").glob("*.log")) == 2)
        os.killpg(p.pid, signal.SIGINT)
        out = p.communicate(timeout=180)[0]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert out.count("interrupted (SIGINT)") == 1, out
    assert sorted(r["status"] for r in records(runs).values()) == ["interrupted", "interrupted"], out


# ------------------------------------------------------------------------------------------------ SLURM


def test_slurm_array_runs_the_grid_and_a_cancelled_task_is_redone(slurm, mnist_dir, tmp_path):
    runs = tmp_path / "shared-runs"
    cmd = grid_args(mnist_dir, runs, "--executor", "slurm", "--workers", "2", "--slurm", "cpus_per_task=1", epochs=1)
    first = subprocess.run(cmd, env=env1(), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    recs = records(runs)
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    from reports.collect import collect_runs

    assert len(collect_runs(str(runs))) == 4
    again = subprocess.run(cmd, env=env1(), capture_output=True, text=True, timeout=300)
    assert "0 to run" in again.stdout and records(runs) == recs  # relaunching runs nothing

    # a long grid: scancel one array task mid-run, launch again: every cell once, no duplicate record
    runs2 = tmp_path / "shared-runs-2"
    cmd2 = grid_args(
        mnist_dir, runs2, "--executor", "slurm", "--workers", "2", "--no-wait", "--slurm", "cpus_per_task=1", epochs=40
    )
    sub = subprocess.run(cmd2, env=env1(), capture_output=True, text=True, timeout=300)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    claim = _wait_for(lambda: next(iter((runs2 / "records").glob("*.claim")), None), timeout=600)
    job = read_claim(claim).job
    assert job, "an array task's claim names its job"
    subprocess.run(["scancel", job], check=True)
    _wait_for(
        lambda: not subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip(),
        timeout=900,
        every=1,
    )
    final = subprocess.run(
        grid_args(mnist_dir, runs2, "--executor", "slurm", "--workers", "2", "--slurm", "cpus_per_task=1", epochs=40),
        env=env1(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert final.returncode == 0, final.stdout + final.stderr
    recs2 = records(runs2)
    assert len(recs2) == 4 and all(r["status"] == "completed" for r in recs2.values())
    assert len(collect_runs(str(runs2))) == 4


def test_cell_state_reads_records_and_claims(tmp_path):
    assert cell_state("n", "h", tmp_path)[0] == "pending"
    c = CellClaim.acquire(claim_path("n", tmp_path))
    assert cell_state("n", "h", tmp_path)[0] == "running"
    c.release()
    save_attempt(tmp_path / "records" / "n.json", {"name": "n", "config_hash": "h", "status": "crashed"})
    assert cell_state("n", "h", tmp_path)[0] == "failed"
    save_attempt(tmp_path / "records" / "n.json", {"name": "n", "config_hash": "h", "status": "diverged"})
    assert cell_state("n", "h", tmp_path)[0] == "diverged"
    assert cell_state("n", "other-hash", tmp_path)[0] == "pending"


def test_a_record_that_cannot_be_written_says_where_the_metrics_are(mnist_dir, tmp_path, monkeypatch):
    """A full disk at the final record write: one clear error naming the W&B file, and the report still shows the
    run (from that file) as completed."""
    import bench.run as br
    from bench.run import RecordWriteError, RunConfig, run

    def full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(br, "save_attempt", full)
    runs = tmp_path / "runs"
    cfg = RunConfig(
        dataset="mnist",
        method="bp",
        arch="mlp:16-C",
        epochs=1,
        data_dir=str(mnist_dir),
        verify_data=False,
        runs_dir=str(runs),
        wandb="offline",
        progress=False,
    )
    with pytest.raises(RecordWriteError, match=r"No space left on device; its metrics are in the W&B run .*\.wandb"):
        run(cfg)
    assert not list((runs / "records").glob("*.json"))
    from reports.collect import collect_runs

    df = collect_runs(str(runs))
    assert list(df["status"]) == ["completed"] and df["test_acc"].iloc[0] > 0
