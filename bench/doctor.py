"""``make doctor`` (``python -m bench doctor``): does every rule train on this machine's accelerator?

Each rule of ``--methods`` (default ``all``: the rules ``METHODS=all`` runs) trains for ``--steps`` optimiser steps
through the harness (``bench.run``: data on the device, Lightning's loop, the rule's step) on the accelerator the
machine has (CUDA when available, else the CPU), in every mode of ``--modes``:

* ``eager``: one run;
* ``compiled``: one run with ``compile=True`` (``torch.compile`` of the rule's step or network);
* ``2 workers``: two processes training at once on the same device (what ``--workers-per-device 2`` does in a grid),
  every rule in each, seeds 0 and 1;
* ``ddp``: one run on two devices (``--devices 2 --strategy ddp``), where the machine has two CUDA devices (else one
  ``skipped`` row saying why).

The table has one row per rule and mode: device, steps per second (after the first call of the loop, which holds
warm-up and compilation), the run's peak memory (CUDA peak allocation, or the process's peak RSS on a CPU) and
``ok`` or ``failed`` with the error on one line. Exit status 0 when nothing failed. Records go to a temporary folder
(``--runs-dir`` to keep them); nothing is logged to W&B.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

MODES = ("eager", "compiled", "workers", "ddp")
"""Every mode of ``--modes``, in the table's order."""


@dataclass
class Row:
    rule: str
    device: str
    mode: str
    status: str
    """ok, failed or skipped."""
    steps_per_s: float | None = None
    peak_bytes: int | None = None
    peak_kind: str = ""
    error: str = ""
    """The first line of the error (failed) or the reason (skipped)."""


def one_line(text: str, width: int = 160) -> str:
    line = next((ln.strip() for ln in str(text).strip().splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def _step_clock():
    from lightning.pytorch.callbacks import Callback

    class StepClock(Callback):
        """Time and optimiser-step count at the end of every call of the loop (a group of ``steps_per_call``)."""

        def __init__(self) -> None:
            self.marks: list[tuple[float, int]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if pl_module.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), pl_module._steps))

        def rate(self) -> float | None:
            """Steps per second after the first call (warm-up, compilation); None with fewer than two calls."""
            if len(self.marks) < 2 or self.marks[-1][0] <= self.marks[0][0]:
                return None
            (t0, s0), (t1, s1) = self.marks[0], self.marks[-1]
            return (s1 - s0) / (t1 - t0)

    return StepClock()


def run_rule(method: str, mode: str, opts: dict, seed: int = 0) -> Row:
    """Train ``method`` for ``opts['steps']`` steps in this process (``mode`` eager or compiled, or one worker of
    ``workers``); the row says how it went. Never raises."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        from bench.run import RunConfig, run

        clock = _step_clock()
        cfg = RunConfig(
            method=method,
            seed=seed,
            epochs=1,
            batch_size=opts["batch_size"],
            limit_train=opts["steps"] * opts["batch_size"],
            limit_eval=opts["batch_size"],
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            compile=mode == "compiled",
            wandb="disabled",
            progress=False,
            epoch_lines=False,
            evaluate_test=False,
            data_dir=opts.get("data_dir"),
            runs_dir=opts["runs_dir"],
            group="doctor",
            job_type="perf",
            callbacks=[clock],
        )
        res = run(cfg)
        rec = res.record
        if res.status != "completed":
            return Row(method, device, mode, "failed", error=one_line(rec.get("error") or res.status))
        rate = clock.rate()
        if rate is None and rec.get("train_time_s"):
            rate = opts["steps"] / rec["train_time_s"]
        return Row(method, device, mode, "ok", rate, rec.get("peak_mem_bytes"), rec.get("peak_mem_kind", ""))
    except Exception as e:  # a failure of this rule is a row of the table, not the end of the check
        return Row(method, device, mode, "failed", error=one_line(f"{type(e).__name__}: {e}"))


def worker_main(argv: list[str]) -> int:
    """One process of the ``workers`` mode: every rule of the JSON spec in turn; prints the rows as JSON."""
    spec = json.loads(argv[0])
    _quiet(spec.get("threads"))
    rows = [asdict(run_rule(m, "2 workers", spec, seed=spec["seed"])) for m in spec["methods"]]
    print("DOCTOR-ROWS " + json.dumps(rows), flush=True)
    return 0


def _subprocess_env() -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def two_workers(methods: list[str], opts: dict, device: str) -> list[Row]:
    """The ``workers`` mode: two processes at once on one device, each training every rule; per rule one row, ok when
    both were, with the slower worker's steps per second and the larger peak."""
    procs = []
    for seed in (0, 1):
        spec = json.dumps({**opts, "methods": methods, "seed": seed})
        cmd = [
            sys.executable,
            "-c",
            "import sys; from bench.doctor import worker_main; worker_main(sys.argv[1:])",
            spec,
        ]
        procs.append(
            subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_subprocess_env())
        )
    results = []
    for p in procs:
        out, err = p.communicate()
        line = next((ln for ln in out.splitlines() if ln.startswith("DOCTOR-ROWS ")), None)
        if p.returncode != 0 or line is None:
            why = one_line(err.strip().splitlines()[-1] if err.strip() else f"worker exited with {p.returncode}")
            results.append({m: Row(m, device, "2 workers", "failed", error=f"worker process: {why}") for m in methods})
        else:
            results.append({r["rule"]: Row(**r) for r in json.loads(line.removeprefix("DOCTOR-ROWS "))})
    rows = []
    for m in methods:
        a, b = results[0][m], results[1][m]
        bad = next((r for r in (a, b) if r.status != "ok"), None)
        if bad is not None:
            rows.append(Row(m, device, "2 workers", "failed", error=bad.error))
            continue
        rates = [r.steps_per_s for r in (a, b) if r.steps_per_s is not None]
        peaks = [r.peak_bytes for r in (a, b) if r.peak_bytes is not None]
        rows.append(
            Row(m, device, "2 workers", "ok", min(rates) if rates else None, max(peaks) if peaks else None, a.peak_kind)
        )
    return rows


def ddp_rule(method: str, opts: dict) -> Row:
    """The ``ddp`` mode for one rule: ``bench run`` on two CUDA devices (Lightning's DDP launches the ranks)."""
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--method",
        method,
        "--no-tuned",
        "--epochs",
        "1",
        "--batch-size",
        str(opts["batch_size"]),
        "--limit-train",
        str(2 * opts["steps"] * opts["batch_size"]),  # each rank gets its half
        "--limit-eval",
        str(2 * opts["batch_size"]),
        "--accelerator",
        "gpu",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--runs-dir",
        opts["runs_dir"],
        "--wandb",
        "disabled",
        "--no-progress",
    ] + (["--data-dir", opts["data_dir"]] if opts.get("data_dir") else [])
    p = subprocess.run(cmd, capture_output=True, text=True, env=_subprocess_env())
    last = (p.stdout.strip().splitlines() or [""])[-1]
    if p.returncode != 0 or "; record " not in last:
        return Row(
            method,
            "cuda x2",
            "ddp",
            "failed",
            error=one_line(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else last),
        )
    rec = json.loads(open(last.rsplit("; record ", 1)[1]).read())
    rate = opts["steps"] / rec["train_time_s"] if rec.get("train_time_s") else None
    return Row(method, "cuda x2", "ddp", "ok", rate, rec.get("peak_mem_bytes"), rec.get("peak_mem_kind", ""))


def check(methods: list[str], modes: list[str], opts: dict, log=print) -> list[Row]:
    """Every rule in every mode; the rows in the table's order (mode by mode). ``log`` gets each row as it ends."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows: list[Row] = []

    def add(row: Row) -> None:
        rows.append(row)
        log(format_row(row), flush=True)

    for mode in modes:
        if mode in ("eager", "compiled"):
            for m in methods:
                add(run_rule(m, mode, opts))
        elif mode == "workers":
            for row in two_workers(methods, opts, device):
                add(row)
        elif mode == "ddp":
            n = torch.cuda.device_count() if device == "cuda" else 0
            if n < 2:
                why = (
                    f"{n} CUDA device{'s' if n != 1 else ''} here; a DDP run needs two"
                    if device == "cuda"
                    else ("no CUDA device here; a DDP run needs two")
                )
                add(Row("(all)", device, "ddp", "skipped", error=why))
            else:
                for m in methods:
                    add(ddp_rule(m, opts))
    return rows


HEADER = f"{'rule':16s} {'device':8s} {'mode':10s} {'steps/s':>8s} {'peak MB':>8s}  status"


def format_row(row: Row) -> str:
    rate = f"{row.steps_per_s:8.1f}" if row.steps_per_s is not None else f"{'-':>8s}"
    peak = f"{row.peak_bytes / 2**20:8.0f}" if row.peak_bytes is not None else f"{'-':>8s}"
    status = row.status + (f": {row.error}" if row.error else "")
    return f"{row.rule:16s} {row.device:8s} {row.mode:10s} {rate} {peak}  {status}"


def _quiet(threads: int | None) -> None:
    import logging
    import warnings

    import torch

    if threads:
        torch.set_num_threads(threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|srun|torch.jit.script|does not have many workers).*")


def main(argv: list[str] | None = None) -> int:
    from bench.errors import BenchError
    from bench.perf import _methods

    ap = argparse.ArgumentParser(prog="python -m bench doctor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="all", help="comma-separated rule names, or all (every rule METHODS=all runs)")
    ap.add_argument("--steps", type=int, default=48, help="optimiser steps per run (default 48)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)} (default: all of them)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's own)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--runs-dir", default=None, help="keep the run records here (default: a temporary folder)")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    try:
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise BenchError(f"--modes takes {', '.join(MODES)}; got {args.modes!r}")
        if args.steps < 1 or args.batch_size < 1:
            raise BenchError(f"--steps and --batch-size must be >= 1, got {args.steps} and {args.batch_size}")
        methods = _methods(args.methods)
        if not methods:
            raise BenchError("--methods names no rule")
    except BenchError as e:
        print(f"error: {e}")
        return 2
    _quiet(args.threads)
    import torch

    from bench.data import ensure_data

    ensure_data("fashion_mnist", args.data_dir)  # once, before any run or worker needs it
    runs_dir = args.runs_dir or tempfile.mkdtemp(prefix="bench-doctor-")
    opts = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "data_dir": args.data_dir,
        "runs_dir": runs_dir,
        "threads": args.threads,
    }
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (no CUDA device)"
    print(
        f"doctor: {len(methods)} rules x modes {', '.join(modes)} on {device}, {args.steps} steps of batch "
        f"{args.batch_size} per run, torch {torch.__version__}; records in {runs_dir}",
        flush=True,
    )
    print(HEADER, flush=True)
    t0 = time.perf_counter()
    rows = check(methods, modes, opts)
    failed = [r for r in rows if r.status == "failed"]
    ok = sum(r.status == "ok" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    print(
        f"\n{ok} ok, {len(failed)} failed, {skipped} skipped in {time.perf_counter() - t0:.0f} s"
        + (f"; failed: {', '.join(f'{r.rule} ({r.mode})' for r in failed)}" if failed else ""),
        flush=True,
    )
    if not args.runs_dir:
        import shutil

        shutil.rmtree(runs_dir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
