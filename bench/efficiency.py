"""``make efficiency``: what one training step of each rule costs, measured, beside the theoretical model.

Measured on one ``compute_updates`` call (the rule's whole update; the optimiser step, the same for every rule on the
same network, is left out), on a random batch of the dataset's shape:

* **peak step memory**: the peak, over the step, of the bytes the step allocated and still holds, parameter
  gradients excluded. Counted from the allocator itself (PyTorch's profiler with ``profile_memory``: every allocation
  and free, CPU and CUDA alike), so it sees everything a rule keeps for its update whatever the mechanism: tensors
  autograd saves for the backward pass, tensors the rule holds in Python (FA's traces, PEPITA's first-pass
  activations), forward-mode tangents, and the temporaries alive at the peak. Not counted: parameters, optimiser
  state, the input batch (allocated before the step) and the ``.grad`` tensors the step leaves behind (every rule
  writes the same ones; their total is reported as ``grad_bytes``). On a GPU the CUDA peak allocation above the
  step's start (``torch.cuda.max_memory_allocated``, gradients included) is reported beside it.
* **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over the step (matmuls and convolutions, forward and backward,
  2 FLOPs per multiply-add).
* **samples/s**: batch size / median wall time of the step (after warm-up; noisy on a shared machine).

The theoretical model (SPELA Sec. 3.4 and Table 2; Fournier et al. Table 1) counts, per sample, for an MLP with
layer sizes n_0 (input) .. n_L: the forward and backward passes, the matrix-vector products with a weight-sized
matrix per update (a forward product, a weight update δ h^T and a backward product δ W or δ B each count one, on
n_{l-1} n_l multiply-adds), and the activations that must be stored at once for the update. ``theory_flops`` =
2 x batch x those multiply-adds (plus the small C-sized feedback projections); ``theory_bytes`` = stored numbers x
batch x 4 bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.fmt import gflop, mb
from bench.ids import slug
from methods.cost import CostModel

DEFAULT_METHODS = ("bp", "fa", "drtp", "pepita", "ff", "spela_o", "fg_gaussian")
"""The efficiency table's rules: BP, FA, DRTP, PEPITA, FF, SPELA(O) and forward gradient (random guess)."""
DEFAULT_ARCH = "mlp:1024-1024-1024-C"


Theory = CostModel
"""SPELA Table 2's quantities for one rule on one MLP, per sample (each rule's ``cost_model``)."""


def theory(rule) -> Theory | None:
    """The rule's own cost model (``LearningRule.cost_model``) on its MLP; None for other architectures or for a rule
    that states none (``theory_note`` says which)."""
    if rule.arch.kind != "mlp":
        return None
    dims = [math.prod(rule.in_shape), *rule.net.widths]
    return type(rule).cost_model(dims, rule.num_classes, rule.config)


def theory_note(rule) -> str:
    """Why a rule has no theory row, in words for the efficiency table ('' when it has one)."""
    if rule.arch.kind != "mlp":
        return f"the cost model covers MLPs, not {rule.arch.kind}"
    if theory(rule) is None:
        return f"{rule.name} states no cost model for these options (LearningRule.cost_model)"
    return ""


@dataclass
class Measurement:
    method: str
    dataset: str
    arch: str
    """Short arch (mlp:1024-1024-1024-C)."""
    arch_full: str
    batch: int
    device: str
    peak_bytes: int
    grad_bytes: int
    flops: int | None
    samples_per_s: float
    step_ms: float
    steps_timed: int
    cuda_peak_bytes: int | None = None
    theory: dict[str, Any] | None = None
    theory_note: str = ""
    """Why there is no theory (no cost model for the rule, or not an MLP); empty when there is one."""
    theory_bytes: int | None = None
    theory_flops: int | None = None
    threads: int = field(default_factory=lambda: torch.get_num_threads())
    torch_version: str = field(default_factory=lambda: torch.__version__)


def _allocation_events(prof) -> list:
    out, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        stack.extend(e.children)
        if "Allocation" in str(e.tag):
            out.append(e)
    return sorted(out, key=lambda e: (e.start_time_ns, e.extra_fields.id))


@contextlib.contextmanager
def _quiet_stderr():
    """Silence the profiler's C++ start/stop lines (written straight to file descriptor 2)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def step_memory(rule, x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """(peak bytes held by the step, gradients excluded; bytes of the gradients it leaves) of one compute_updates."""
    from torch.profiler import ProfilerActivity, profile

    for p in rule.parameters():
        p.grad = None
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    with _quiet_stderr():
        with profile(activities=acts, profile_memory=True):
            pass  # the first profiler start allocates its own buffers; keep them out of the measured one
        with profile(activities=acts, profile_memory=True) as prof:
            rule.compute_updates(x, y)
    grads = {p.grad.untyped_storage().data_ptr() for p in rule.parameters() if p.grad is not None}
    grad_bytes = sum(p.grad.untyped_storage().nbytes() for p in rule.parameters() if p.grad is not None)
    events = _allocation_events(prof)
    live: dict[int, tuple[int, int]] = {}  # ptr -> (event index, bytes) of allocations made in the step
    for i, e in enumerate(events):
        ptr, size = e.extra_fields.ptr, e.extra_fields.alloc_size
        if size > 0:
            live[ptr] = (i, size)
        else:
            live.pop(ptr, None)  # frees of memory from before the step are not the step's
    ends_as_grad = {i for ptr, (i, _) in live.items() if ptr in grads}
    held, peak, sizes = 0, 0, {}
    for i, e in enumerate(events):
        ptr, size = e.extra_fields.ptr, e.extra_fields.alloc_size
        if size > 0:
            if i in ends_as_grad:
                continue
            sizes[ptr] = size
            held += size
            peak = max(peak, held)
        elif ptr in sizes:
            held -= sizes.pop(ptr)
    return peak, grad_bytes


def step_flops(rule, x: torch.Tensor, y: torch.Tensor) -> int | None:
    from torch.utils.flop_counter import FlopCounterMode

    for p in rule.parameters():
        p.grad = None
    try:
        with FlopCounterMode(display=False) as fc:
            rule.compute_updates(x, y)
    except Exception:  # noqa: BLE001 - an op the counter cannot follow: report no count rather than a wrong one
        return None
    return int(fc.get_total_flops())


def step_time(rule, x: torch.Tensor, y: torch.Tensor, min_time: float = 0.5, max_steps: int = 50) -> tuple[float, int]:
    """Median seconds of one compute_updates (after two warm-up steps) and how many steps were timed."""

    def one() -> float:
        for p in rule.parameters():
            p.grad = None
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rule.compute_updates(x, y)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    one(), one()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_steps):
        times.append(one())
    return statistics.median(times), len(times)


def measure(
    method: str,
    arch: str | None = None,
    batch: int = 64,
    dataset: str = "fashion_mnist",
    device: str | None = None,
    seed: int = 0,
    min_time: float = 0.5,
) -> Measurement:
    """Build ``method`` (its default options) on ``arch`` for ``dataset``'s input shape and measure one step."""
    import methods  # noqa: F401 - registers the rules
    from bench.data import get_dataset_info
    from methods.registry import get_rule

    info = get_dataset_info(dataset)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(seed)
    rule = get_rule(method).create({}, arch, info.shape, info.num_classes, epochs=100).to(dev)
    rule.train()
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *info.shape, generator=g).to(dev)
    y = torch.randint(0, info.num_classes, (batch,), generator=g).to(dev)
    rule.compute_updates(x, y)  # warm-up (lazy buffers, kernels)
    cuda_peak = None
    if dev.type == "cuda":
        for p in rule.parameters():
            p.grad = None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        rule.compute_updates(x, y)
        torch.cuda.synchronize()
        cuda_peak = int(torch.cuda.max_memory_allocated() - base)
    peak, grad_bytes = step_memory(rule, x, y)
    flops = step_flops(rule, x, y)
    seconds, steps = step_time(rule, x, y, min_time=min_time)
    th = theory(rule)
    dims = [math.prod(info.shape), *rule.net.widths]
    return Measurement(
        method=method,
        dataset=dataset,
        arch=rule.arch.short,
        arch_full=rule.arch.text,
        batch=batch,
        device=dev.type,
        peak_bytes=peak,
        grad_bytes=grad_bytes,
        flops=flops,
        samples_per_s=batch / seconds,
        step_ms=1e3 * seconds,
        steps_timed=steps,
        cuda_peak_bytes=cuda_peak,
        theory=asdict(th) if th else None,
        theory_note=theory_note(rule),
        theory_bytes=th.stored * batch * 4 if th else None,
        theory_flops=2 * batch * th.macs(dims) if th else None,
    )


def out_dir(runs_dir: str | None = None) -> Path:
    from bench.paths import runs_root

    return runs_root(runs_dir) / "efficiency"


def save(m: Measurement, runs_dir: str | None = None) -> Path:
    """One JSON file per (dataset, method, arch, batch, device); a new measurement replaces the old one."""
    from bench.records import atomic_write_text

    path = out_dir(runs_dir) / f"{m.dataset}__{m.method}__{slug(m.arch)}__b{m.batch}__{m.device}.json"
    atomic_write_text(path, json.dumps(asdict(m), indent=1))
    return path


from bench.measurements import load_efficiency as load_all  # noqa: E402, F401 - the reader lives beside the records


def main(argv: list[str] | None = None) -> int:
    from bench.errors import BenchError

    ap = argparse.ArgumentParser(prog="python -m bench efficiency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated rule names")
    ap.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        help=f"one architecture for all (default {DEFAULT_ARCH}); 'default': each rule's own",
    )
    ap.add_argument("--batch-sizes", default="1,64", help="comma-separated (default 1,64)")
    ap.add_argument("--dataset", default="fashion_mnist", help="input shape and class count (no data is read)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds of timed steps per measurement")
    ap.add_argument(
        "--runs-dir", default=None, help="results go to <runs>/efficiency (default $BENCH_RUNS_DIR or ./runs)"
    )
    a = ap.parse_args(argv)
    try:
        batches = [int(b) for b in a.batch_sizes.split(",") if b.strip()]
        methods = [m.strip() for m in a.methods.split(",") if m.strip()]
        print(
            f"{'method':14s} {'batch':>5s} {'peak MB':>9s} {'theory MB':>9s} {'grads MB':>8s} {'GFLOP':>9s} "
            f"{'theory GFLOP':>12s} {'samples/s':>10s}  arch  ({a.dataset}, torch threads {torch.get_num_threads()})"
        )
        for method in methods:
            for b in batches:
                m = measure(
                    method, None if a.arch == "default" else a.arch, b, a.dataset, a.device, min_time=a.min_time
                )
                save(m, a.runs_dir)
                print(
                    f"{method:14s} {b:5d} {mb(m.peak_bytes):>9s} {mb(m.theory_bytes):>9s} {mb(m.grad_bytes):>8s} "
                    f"{gflop(m.flops):>9s} {gflop(m.theory_flops):>12s} {m.samples_per_s:10.1f}  {m.arch}",
                    flush=True,
                )
    except BenchError as e:
        print(f"error: {e}")
        return 2
    print(f"saved under {out_dir(a.runs_dir)}; make report puts them in the efficiency table")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
