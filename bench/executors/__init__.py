"""Where workers run: the one executor layer of the grid (``make bench EXECUTOR=...``) and the sweeps.

  inline  the work runs in this process (default of the grid; debugging)           bench/executors/inline.py
  local   one process per worker on this machine (submitit's local executor)     bench/executors/local.py
  slurm   a submitit job array on SLURM, one array task per worker                bench/executors/slurm.py

An executor is a class behind one protocol (``bench.executors.base.Executor``: submit, poll, stop, cancel,
exit_reason) in a name -> class registry; a new one is a module with a ``@register_executor`` class, imported before
the launch (e.g. through ``BENCH_MODULES``). What a worker owns (CPUs, threads, GPU) is ``bench.executors.resources``.
"""

from bench.executors.base import (
    Executor,
    check_executor,
    executor_class,
    executor_help,
    executor_names,
    register_executor,
)
from bench.executors.inline import InlineExecutor
from bench.executors.local import LocalExecutor
from bench.executors.resources import (
    claim_resources,
    cpu_sets,
    device_plan,
    owned_cpus,
    parse_slurm,
    thread_count,
    visible_gpus,
)
from bench.executors.slurm import SlurmExecutor

__all__ = [
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "SlurmExecutor",
    "check_executor",
    "claim_resources",
    "cpu_sets",
    "device_plan",
    "executor_class",
    "executor_help",
    "executor_names",
    "owned_cpus",
    "parse_slurm",
    "register_executor",
    "thread_count",
    "visible_gpus",
]
