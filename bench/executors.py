"""Where workers run: the one executor layer of the grid (``make bench EXECUTOR=...``) and the sweeps.

  inline  the work runs in this process (default of the grid; debugging)
  local   one process per worker on this machine (submitit's local executor)
  slurm   a submitit job array on SLURM, one array task per worker

A worker owns a share of the machine and sets its threads from what it owns (its CPU affinity, or
``SLURM_CPUS_PER_TASK``), never from the node's core count: two workers with two OpenMP threads each on two cores
spin against each other. Job state is read without ``sacct`` (clusters without accounting answer it with an
error): a job is over when submitit's result file exists or ``squeue`` no longer lists it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

EXECUTORS = ("inline", "local", "slurm")


def check_executor(executor: str, workers: int) -> None:
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")


def owned_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def thread_count() -> int:
    """Threads for this worker: the CPUs SLURM gave its task (``SLURM_CPUS_PER_TASK``, else the job's CPUs on this
    node), else the CPUs of its affinity."""
    for key in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        v = os.environ.get(key, "")
        if v.isdigit() and int(v) > 0:
            return min(int(v), max(1, len(owned_cpus())))
    return max(1, len(owned_cpus()))


def cpu_sets(workers: int, cpus: Sequence[int] | None = None) -> list[list[int]]:
    """Split the CPUs this process owns between ``workers`` local workers: disjoint equal shares while there are
    enough CPUs, else one CPU each, round-robin."""
    cpus = list(cpus if cpus is not None else owned_cpus())
    if workers <= len(cpus):
        per = len(cpus) // workers
        return [cpus[i * per : (i + 1) * per] for i in range(workers)]
    return [[cpus[i % len(cpus)]] for i in range(workers)]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES entries (empty without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA
        return []


def device_plan(workers: int, gpus: Sequence[str], per_device: int = 1, nodes: int = 1) -> list[tuple[int, str | None]]:
    """(node, GPU) of each worker: workers fill node 0 first, then node 1, ...; on a node, worker i gets GPU
    ``i mod G`` (round-robin), so ``per_device`` workers share each GPU. Without GPUs every worker gets None.
    Refuses more workers than the nodes' GPUs x ``per_device``."""
    if per_device < 1:
        raise ConfigError(f"workers per device must be >= 1, got {per_device}")
    if not gpus:
        per_node = -(-workers // nodes)
        return [(i // per_node, None) for i in range(workers)]
    per_node = len(gpus) * per_device
    if workers > per_node * nodes:
        raise ConfigError(
            f"{workers} workers do not fit {nodes} node(s) x {len(gpus)} GPU(s) x {per_device} "
            "worker(s) per device; raise --workers-per-device or lower --workers"
        )
    return [(i // per_node, gpus[(i % per_node) % len(gpus)]) for i in range(workers)]


def claim_resources(cpus: Sequence[int] | None = None, gpu: str | None = None) -> int:
    """In a worker: keep to its CPUs and GPU, set torch's threads from what it owns; returns the thread count."""
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
        except (AttributeError, OSError):
            pass
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import torch

    n = thread_count()
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)
    return n


def parse_slurm(params: dict[str, Any] | None) -> dict[str, Any]:
    """submitit parameters from ``key=value`` strings, numbers parsed."""
    out = {}
    for k, v in (params or {}).items():
        if isinstance(v, str):
            for cast in (int, float):
                try:
                    v = cast(v)
                    break
                except ValueError:
                    pass
        out[k] = v
    return out


def submit(
    fn: Callable,
    calls: list[tuple],
    executor: str,
    folder: Path,
    slurm: dict[str, Any] | None = None,
    name: str = "bench",
) -> list:
    """Start ``fn(*call)`` for every call as one local process or one SLURM array task; returns submitit jobs."""
    import submitit

    if executor == "local":
        from bench.local_controller import RecordingExecutor

        ex = RecordingExecutor(folder=str(folder))  # submitit's, recording how each worker process ended
        ex.update_parameters(timeout_min=int(parse_slurm(slurm).get("timeout_min", 7 * 24 * 60)))
    elif executor == "slurm":
        ex = submitit.AutoExecutor(folder=str(folder), cluster="slurm")
        params = {"timeout_min": 24 * 60, "slurm_array_parallelism": len(calls), "name": name[:64]}
        params.update(parse_slurm(slurm))
        ex.update_parameters(**params)
    else:
        raise ConfigError(f"executor {executor!r} does not submit jobs; choose local or slurm")
    return ex.map_array(fn, *[list(args) for args in zip(*calls)])


def job_done(job) -> bool:
    """Whether a submitted job is over, without sacct: its result file exists, its local process ended, or SLURM's
    queue no longer lists it."""
    if job.paths.result_pickle.exists():
        return True
    if type(job).__name__ == "LocalJob":
        return job.done()
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job.job_id), "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    if out.returncode != 0:  # a job SLURM has forgotten is over; any other failure (a busy controller) is not
        return "invalid job id" in out.stderr.lower()
    return not out.stdout.strip()


def cancel(jobs: list) -> None:
    """Stop submitted jobs (local: SIGINT to each worker; SLURM: scancel, which sends SIGTERM then SIGKILL)."""
    for j in jobs:
        try:
            j.cancel(check=False)
        except Exception:  # noqa: BLE001 - a job that already ended
            pass


_ERROR_LINE = re.compile(r"^(\w+\.)*\w*(Error|Exception|Interrupt|Exit|Killed)\b(: .*)?$")


def job_exit(job) -> str:
    """How a job that left no result ended, in words: the signal that killed its worker process or its exit status
    (local workers, from ``bench.local_controller``), else SLURM's state, and the last exception line of its log
    (warnings are never given as the cause)."""
    import signal

    from bench.local_controller import exit_codes

    parts = []
    codes = exit_codes(job) if type(job).__name__ == "LocalJob" else None
    code = codes[0] if codes else None
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "an unknown signal"
        parts.append(f"killed by signal {-code} ({name})")
    elif code is not None:
        parts.append(f"exit status {code}, no result")
    else:
        state = getattr(job, "state", None) if type(job).__name__ != "LocalJob" else None
        parts.append(
            "no result"
            + (f" (state {state})" if state and state != "UNKNOWN" else " (cancelled, killed or out of time)")
        )
    last = None
    try:
        for line in Path(job.paths.stderr).read_text(errors="replace").splitlines():
            if _ERROR_LINE.match(line.strip()):
                last = line.strip()
    except OSError:
        pass
    if last:
        parts.append(f"last error: {last}")
    return "; ".join(parts) + f"; log {job.paths.stderr}"


def job_error(job) -> str | None:
    """The last line of a failed job's exception, else None; a job that ended without its result file is
    described by ``job_exit`` (the signal that killed it, its exit status, its last error)."""
    if not job.paths.result_pickle.exists():
        return job_exit(job)
    try:
        job.result()
    except Exception as e:  # noqa: BLE001 - any failure of the worker is reported, not raised
        lines = str(e).strip().splitlines()
        return f"{type(e).__name__}: {lines[-1] if lines else ''}"
    return None
