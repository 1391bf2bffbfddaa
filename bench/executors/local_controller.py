"""submitit's local executor, with a job controller that records how each task process ended.

submitit's own local controller (``submitit.local._local``) waits for its task processes but keeps their exit
status to itself and exits 0 whatever became of them, so a launcher could only guess why a worker died. This one
writes ``<folder>/<job id>_exit_codes.json`` (one status per task: negative = killed by that signal) when its tasks
end; ``bench.executors.local.LocalExecutor.exit_reason`` reads it. ``RecordingExecutor`` starts it instead of
submitit's.

A private override, on purpose: submitit has no public way to choose the controller. ``LocalExecutor`` starts
``submitit.local._local`` by name from its ``_submit_command``; its public ``python`` option only wraps the task
command, and a wrapper there would sit between the controller's signals (timeout, cancel, SIGKILL) and the worker.
So ``RecordingExecutor._submit_command`` repeats submitit's (``start_controller``'s environment, checked against
submitit 1.5.4) with this module as the controller. tests/test_faults.py guards it: the controller gets the same
environment as submitit's own (``test_the_recording_executor_starts_its_controller_as_submitit_starts_its_own``),
and a killed worker is named with its signal (``test_a_killed_local_worker_is_named_with_its_signal``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from submitit.local.local import Controller, LocalExecutor, LocalJob

EXIT_CODES = "{job_id}_exit_codes.json"


class RecordingController(Controller):
    """submitit's controller, recording its tasks' exit statuses. A first SIGINT (Ctrl-C reaches the whole process
    group: the launcher, every controller and every worker) is passed on to the tasks, which record their runs
    ``interrupted`` and stop, while the controller keeps waiting for them; a second one (submitit's cancel after
    the launcher's grace period) stops the tasks as submitit's controller does, without a traceback."""

    def __init__(self, folder: Path):
        super().__init__(folder)
        self._interrupts = 0
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum, _frame) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise KeyboardInterrupt
        self._forward_signal(signum)

    def wait(self, freq: int = 24):
        codes = super().wait(freq)
        try:
            (self.folder / EXIT_CODES.format(job_id=self.pid)).write_text(json.dumps(list(codes)))
        except OSError:
            pass
        return codes


def exit_codes(job) -> list | None:
    """The task exit statuses a ``RecordingController`` wrote for ``job`` (None: none written)."""
    try:
        return json.loads((Path(job.paths.folder) / EXIT_CODES.format(job_id=job.job_id)).read_text())
    except (OSError, ValueError, AttributeError):
        return None


class RecordingExecutor(LocalExecutor):
    """submitit's LocalExecutor (one controller process per job, one task process per worker), starting
    ``RecordingController``. The controller reads its settings from the same environment variables as submitit's."""

    def _submit_command(self, command: str) -> LocalJob:
        if self.parameters.get("setup"):
            return super()._submit_command(command)
        p = self.parameters
        n_gpus, visible = p.get("gpus_per_node", 0), p.get("visible_gpus", ())
        gpus = range(n_gpus) if visible == () else visible[:n_gpus]  # as submitit's own controller gets them
        env = {
            **os.environ,
            "SUBMITIT_LOCAL_NTASKS": str(p.get("tasks_per_node", 1)),
            "SUBMITIT_LOCAL_COMMAND": command,
            "SUBMITIT_LOCAL_TIMEOUT_S": str(int(60 * p.get("timeout_min", 2.0))),
            "SUBMITIT_LOCAL_SIGNAL_DELAY_S": str(int(p.get("signal_delay_s", 30))),
            "SUBMITIT_LOCAL_NODEID": "0",
            "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
            "SUBMITIT_EXECUTOR": "local",
            "SUBMITIT_LOCAL_WITH_SHELL": "",
            "SUBMITIT_STDERR_TO_STDOUT": "1" if p.get("stderr_to_stdout", False) else "",
            "CUDA_VISIBLE_DEVICES": ",".join(str(k) for k in gpus),
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.executors.local_controller", str(self.folder)], env=env
        )
        return LocalJob(
            folder=self.folder, job_id=str(process.pid), process=process, tasks=list(range(p.get("tasks_per_node", 1)))
        )


if __name__ == "__main__":
    try:
        RecordingController(Path(sys.argv[1])).run()
    except KeyboardInterrupt:  # cancelled: the tasks were stopped (submitit's kill_tasks); the launcher says so
        sys.exit(130)
