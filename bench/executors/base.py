"""The executor protocol: how a launch (a grid or a sweep) starts its workers and follows them.

An executor is a class registered by name (``register_executor``); both CLIs take their ``--executor`` choices from
the registry and the launchers use only this interface, so a new executor is one file. A launch makes one instance
per launch folder and calls:

  ``submit(fn, calls, name)``  start ``fn(*call)`` for every call; returns one job handle per call
  ``poll(job)``                whether the job is over (finished, failed or gone)
  ``stop(jobs)``               ask the workers to stop so that each records its running cell ``interrupted``
  ``cancel(jobs)``             stop what is left, hard
  ``exit_reason(job)``         why a job that is over did not end well, in words (None: it ended well)

Class attributes say what the launchers may do with it (``in_process``: the work runs in the launcher itself and
nothing is submitted; ``detaches``: ``--no-wait`` may submit and return; ``fixed_chunks``: ``--cells-per-task``;
``this_machine``: the workers share this machine, so the launcher splits its CPUs and GPUs between them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from bench.errors import ConfigError


class Executor:
    name: ClassVar[str] = ""
    help: ClassVar[str] = ""
    """One line for ``--help``."""
    in_process: ClassVar[bool] = False
    detaches: ClassVar[bool] = False
    fixed_chunks: ClassVar[bool] = False
    this_machine: ClassVar[bool] = True
    separate_process: ClassVar[bool] = True
    """Each worker is a process of its own (it installs its signal handlers and keeps to its share of the machine);
    False: the workers run in the launcher's process (threads), which keeps its handlers."""
    shared_files: ClassVar[bool] = False
    """The workers may run on other nodes: files they share (a SQLite study) must be on a shared filesystem."""

    def __init__(self, folder: Path, params: dict[str, Any] | None = None):
        self.folder, self.params = Path(folder), dict(params or {})

    @classmethod
    def available(cls) -> bool:
        """Whether this executor can start workers here (e.g. a SLURM controller answers)."""
        return True

    def worker_options(self, i: int, n: int, options: dict[str, Any], per_device: int = 1) -> dict[str, Any]:
        """The options worker ``i`` of ``n`` gets (an executor may add the share of the machine it owns)."""
        return dict(options) if self.separate_process else {**options, "inline": True}

    def submit(self, fn: Callable, calls: list[tuple], name: str = "bench") -> list:
        raise NotImplementedError

    def poll(self, job) -> bool:
        raise NotImplementedError

    def stop(self, jobs: list) -> None:
        self.cancel(jobs)

    def cancel(self, jobs: list) -> None:
        for j in jobs:
            try:
                j.cancel(check=False)
            except Exception:  # noqa: BLE001 - a job that already ended
                pass

    def exit_reason(self, job) -> str | None:
        return None


_REGISTRY: dict[str, type[Executor]] = {}


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Class decorator: make an executor available by its ``name`` to the grid, the sweeps and both CLIs."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


_BUILTIN = ("inline", "local", "slurm")


def executor_names() -> tuple[str, ...]:
    """The registered executors, the built-in ones first."""
    return tuple(sorted(_REGISTRY, key=lambda n: _BUILTIN.index(n) if n in _BUILTIN else len(_BUILTIN)))


def executor_class(name: str) -> type[Executor]:
    if name not in _REGISTRY:
        raise ConfigError(f"executor {name!r}; choose one of {', '.join(executor_names())}")
    return _REGISTRY[name]


def executor_help() -> str:
    return "; ".join(f"{n}: {_REGISTRY[n].help}" for n in executor_names())


def check_executor(executor: str, workers: int) -> None:
    executor_class(executor)
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
