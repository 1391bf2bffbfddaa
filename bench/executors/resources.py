"""What a worker may use: its CPUs, threads and GPU, and the share of the machine each local worker gets.

A worker owns a share of the machine and sets its threads from what it owns (its CPU affinity, or
``SLURM_CPUS_PER_TASK``), never from the node's core count: two workers with two OpenMP threads each on two cores
spin against each other. Job state is read without ``sacct`` (clusters without accounting answer it with an
error): a job is over when submitit's result file exists or ``squeue`` no longer lists it (bench.executors.slurm).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from bench.errors import ConfigError


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
