"""``slurm``: a submitit job array on SLURM, one array task per worker. Job state is read without ``sacct``
(clusters without accounting answer it with an error): a job is over when submitit's result file exists or
``squeue`` no longer lists it. A stop is ``scancel`` (SIGTERM, then SIGKILL after the cluster's KillWait)."""

from __future__ import annotations

import shutil
import subprocess
import time

from bench.executors.base import Executor, register_executor
from bench.executors.resources import parse_slurm


@register_executor
class SlurmExecutor(Executor):
    name = "slurm"
    help = "a job array of WORKERS tasks"
    detaches = True
    fixed_chunks = True
    this_machine = False
    shared_files = True
    grace = 60.0

    @classmethod
    def available(cls) -> bool:
        if not shutil.which("sinfo"):
            return False
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return any(s in out for s in ("idle", "mix", "alloc"))  # a node that can take a task

    def submit(self, fn, calls, name="bench"):
        import submitit

        ex = submitit.AutoExecutor(folder=str(self.folder), cluster="slurm")
        params = {"timeout_min": 24 * 60, "slurm_array_parallelism": len(calls), "name": name[:64]}
        params.update(parse_slurm(self.params))
        ex.update_parameters(**params)
        return ex.map_array(fn, *[list(args) for args in zip(*calls)])

    def poll(self, job) -> bool:
        if job.paths.result_pickle.exists():
            return True
        try:
            out = subprocess.run(
                ["squeue", "-h", "-j", str(job.job_id), "-o", "%T"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return False
        if out.returncode != 0:  # a job SLURM has forgotten is over; any other failure (a busy controller) is not
            return "invalid job id" in out.stderr.lower()
        return not out.stdout.strip()

    def stop(self, jobs: list) -> None:
        self.cancel(jobs)
        deadline = time.time() + self.grace
        while time.time() < deadline and not all(self.poll(j) for j in jobs):
            time.sleep(0.5)
        self.cancel([j for j in jobs if not self.poll(j)])

    def exit_reason(self, job) -> str | None:
        from bench.executors._submitit import result_error, with_log

        if job.paths.result_pickle.exists():
            return result_error(job)
        state = getattr(job, "state", None)
        return with_log(
            [
                "no result"
                + (f" (state {state})" if state and state != "UNKNOWN" else " (cancelled, killed or out of time)")
            ],
            job,
        )
