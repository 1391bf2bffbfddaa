"""``local``: one process per worker on this machine (submitit's local executor, with the recording controller of
``bench.executors.local_controller``). Each worker gets its own share of the CPUs (and a GPU, round-robin) and leaves
its pid, so a stop is a SIGTERM to each worker: it records its running cell ``interrupted`` and ends."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from bench.executors.base import Executor, register_executor
from bench.executors.resources import cpu_sets, device_plan, parse_slurm, visible_gpus


@register_executor
class LocalExecutor(Executor):
    name = "local"
    help = "WORKERS processes here"
    grace = 60.0
    """Seconds ``stop`` waits for the workers before cancelling what is left."""

    def worker_options(self, i: int, n: int, options: dict[str, Any], per_device: int = 1) -> dict[str, Any]:
        if not hasattr(self, "_shares") or len(self._shares[0]) != n:
            self._shares = (cpu_sets(n), device_plan(n, visible_gpus(), per_device))
        cpus, devices = self._shares
        return {**options, "cpus": cpus[i], "gpu": devices[i][1], "pid_dir": str(self.folder)}

    def submit(self, fn, calls, name="bench"):
        from bench.executors.local_controller import RecordingExecutor

        ex = RecordingExecutor(folder=str(self.folder))  # submitit's, recording how each worker process ended
        ex.update_parameters(timeout_min=int(parse_slurm(self.params).get("timeout_min", 7 * 24 * 60)))
        return ex.map_array(fn, *[list(args) for args in zip(*calls)])

    def poll(self, job) -> bool:
        return job.paths.result_pickle.exists() or job.done()

    def stop(self, jobs: list) -> None:
        for f in self.folder.glob("worker-*.pid"):  # submitit's own cancel would SIGKILL a second later
            try:
                os.kill(int(f.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        deadline = time.time() + self.grace
        while time.time() < deadline and not all(self.poll(j) for j in jobs):
            time.sleep(0.5)
        self.cancel([j for j in jobs if not self.poll(j)])

    def exit_reason(self, job) -> str | None:
        """The signal that killed the worker process or its exit status (from the recording controller), and the
        last exception line of its log."""
        from bench.executors._submitit import result_error, with_log
        from bench.executors.local_controller import exit_codes

        if job.paths.result_pickle.exists():
            return result_error(job)
        codes = exit_codes(job)
        code = codes[0] if codes else None
        if code is not None and code < 0:
            try:
                sig = signal.Signals(-code).name
            except ValueError:
                sig = "an unknown signal"
            parts = [f"killed by signal {-code} ({sig})"]
        elif code is not None:
            parts = [f"exit status {code}, no result"]
        else:
            parts = ["no result (cancelled, killed or out of time)"]
        return with_log(parts, job)
