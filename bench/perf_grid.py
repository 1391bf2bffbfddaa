"""``make perf-grid``: wall time of one small grid (BP and FA, 4 seeds, one epoch each) run inline, by local worker
processes and by a SLURM job array (when ``sinfo`` answers), one after another from this process, each into a
fresh runs folder; prints the times and the speed-ups over inline."""

from __future__ import annotations

import argparse
import io
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    from bench.grid import GridSpec, Launch, run_grid
    from bench.paths import runs_root, set_tool_dirs

    ap = argparse.ArgumentParser(prog="python -m bench perf-grid", description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--methods", default="bp,fa")
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--limit-train", type=int, default=None, help="training samples per run (default: the whole split)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--executors",
        default="inline,local,slurm",
        help="comma-separated; each only where it can start workers (slurm: when sinfo lists a node)",
    )
    ap.add_argument("--data-dir", default=None)
    a = ap.parse_args(argv)
    from bench.executors import executor_class

    executors = [e for e in a.executors.split(",") if e and executor_class(e).available()]
    methods, seeds = tuple(a.methods.split(",")), tuple(int(s) for s in a.seeds.split(","))
    times: dict[str, float] = {}
    # fresh runs folders inside the runs root (shared with SLURM nodes, gitignored); W&B and matplotlib caches point
    # at the root itself, not at a folder deleted after its grid
    root = runs_root()
    root.mkdir(parents=True, exist_ok=True)
    set_tool_dirs(root)
    for ex in executors:
        with tempfile.TemporaryDirectory(prefix=f"perf-grid-{ex}-", dir=root) as runs:
            spec = GridSpec(
                datasets=(a.dataset,),
                methods=methods,
                seeds=seeds,
                epochs=a.epochs,
                profile="quick",
                run={
                    "runs_dir": runs,
                    "wandb": "disabled",
                    "limit_train": a.limit_train,
                    **({"data_dir": a.data_dir} if a.data_dir else {}),
                },
                tuned=False,
            )
            workers = 1 if executor_class(ex).in_process else a.workers
            t0 = time.perf_counter()
            crashed = run_grid(spec, launch=Launch(ex, workers=workers, poll=0.5), out=io.StringIO())
            times[ex] = time.perf_counter() - t0
            print(
                f"{ex:7s} workers={workers}: {times[ex]:7.1f} s for {len(methods) * len(seeds)} runs"
                + (f" ({crashed} crashed)" if crashed else ""),
                flush=True,
            )
    base = next((ex for ex in times if executor_class(ex).in_process), None)
    if base is not None:
        for ex, t in times.items():
            if ex != base:
                print(f"speed-up {ex} over {base}: {times[base] / t:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
