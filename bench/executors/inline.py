"""``inline``: the work runs in the launcher's own process, one call after another (the grid's default; debugging)."""

from __future__ import annotations

from bench.executors.base import Executor, register_executor


@register_executor
class InlineExecutor(Executor):
    name = "inline"
    help = "this process"
    in_process = True

    def submit(self, fn, calls, name="bench"):  # the launchers call the work directly (in_process); kept whole
        return [_Done(fn(*call)) for call in calls]

    def poll(self, job) -> bool:
        return True


class _Done:
    job_id = "inline"

    def __init__(self, result):
        self.value = result

    def cancel(self, check: bool = False) -> None:
        pass
