"""Executors are classes in a registry: a toy executor registered from this test module runs a grid, and both CLIs
offer it; the built-in ones keep their behaviour (tests/test_grid_workers.py, tests/test_faults.py)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import pytest

from bench.executors import Executor, executor_class, executor_names, register_executor
from bench.grid import Launch, run_grid
from tests.test_grid_workers import ROOT, records, spec


class _ThreadJob:
    def __init__(self, fn, calls):
        self.job_id = f"thread-{id(self) % 10000}"
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, calls), daemon=True)
        self.thread.start()

    def _run(self, fn, calls):
        try:
            for call in calls:
                fn(*call)
        except BaseException as e:  # noqa: BLE001 - kept for exit_reason
            self.error = e

    def cancel(self, check: bool = False) -> None:
        pass


@register_executor
class ThreadExecutor(Executor):
    """Every worker's share in one background thread, one after another: the smallest executor that is not inline."""

    name = "toy_thread"
    help = "a background thread of this process"
    separate_process = False
    submitted: list = []

    def submit(self, fn, calls, name="bench"):
        job = _ThreadJob(fn, calls)
        ThreadExecutor.submitted.append((self.folder, len(calls)))
        return [job]

    def poll(self, job) -> bool:
        return not job.thread.is_alive()

    def exit_reason(self, job):
        return None if job.error is None else f"{type(job.error).__name__}: {job.error}"


def test_a_toy_executor_runs_a_grid_through_the_protocol(tmp_path):
    from tests.native_files import make_idx_dataset

    data = tmp_path / "data"
    make_idx_dataset(data, "MNIST", n_train=300, n_test=100)
    out = io.StringIO()
    assert run_grid(spec(data, tmp_path / "runs"), launch=Launch("toy_thread", workers=2, poll=0.2), out=out) == 0
    recs = records(tmp_path / "runs")
    assert len(recs) == 4 and all(r["status"] == "completed" for r in recs.values())
    assert ThreadExecutor.submitted and ThreadExecutor.submitted[-1][1] == 2  # two workers' shares in one job
    assert "toy_thread worker(s)" in out.getvalue() and "grid summary" in out.getvalue()


def test_the_registry_names_every_executor_and_refuses_others():
    from bench.errors import ConfigError

    assert {"inline", "local", "slurm", "toy_thread"} <= set(executor_names())
    assert executor_class("inline").in_process and executor_class("slurm").detaches
    with pytest.raises(ConfigError, match="choose one of inline, local, slurm"):
        executor_class("nope")


@pytest.mark.parametrize("command", [["grid"], ["sweep"]])
def test_both_clis_take_their_executor_choices_from_the_registry(command):
    code = f"import sys, tests.test_executors; from bench.cli import main; sys.exit(main({command + ['--help']!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "toy_thread" in out.stdout and "a background thread of this process" in " ".join(out.stdout.split())
