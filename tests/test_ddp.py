"""Multi-process training (Lightning DDP on CPU with gloo): gradient averaging, sharding, exact evaluation counts."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys

import pytest
import torch

from bench.data import TensorBatches
from bench.paths import PROJECT_ROOT


def _average_in_rank(rank: int, world: int, init: str, queue) -> None:
    import torch.distributed as dist

    from methods.shared.ddp import average_grads

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    a, b, c = (
        torch.nn.Parameter(torch.zeros(2, 3)),
        torch.nn.Parameter(torch.zeros(4)),
        torch.nn.Parameter(torch.zeros(1)),
    )
    a.grad = torch.full((2, 3), float(rank + 1))  # ranks give 1 and 2
    b.grad = None if rank == 0 else torch.arange(4.0)  # only rank 1 has a grad
    average_grads([a, b, c], world)  # c: no rank has a grad
    queue.put((rank, a.grad.tolist(), b.grad.tolist(), c.grad))
    dist.destroy_process_group()


def test_average_grads_over_two_gloo_processes(tmp_path):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    init = f"file://{tmp_path / 'pg'}"
    procs = [ctx.Process(target=_average_in_rank, args=(r, 2, init, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    for _rank, a, b, c in results:
        assert a == [[1.5] * 3] * 2  # (1 + 2) / 2
        assert b == [0.0, 0.5, 1.0, 1.5]  # (0 + [0, 1, 2, 3]) / 2: a missing grad counts as zero
        assert c is None  # nobody trained it: stays None (the optimiser skips it)


def test_eval_shards_cover_each_sample_once_and_train_shards_pad():
    x, y = torch.arange(7.0).view(7, 1), torch.arange(7)
    seen = [
        torch.cat([yb for _, yb in TensorBatches(x, y, 2, shuffle=False, rank=r, world_size=2, pad=False)])
        for r in range(2)
    ]
    assert sorted(torch.cat(seen).tolist()) == list(range(7))
    train = [
        torch.cat([yb for _, yb in TensorBatches(x, y, 2, shuffle=True, seed=0, rank=r, world_size=2)])
        for r in range(2)
    ]
    assert [len(t) for t in train] == [4, 4]  # padded like DistributedSampler: 8 = 7 + 1 repeated sample
    assert set(torch.cat(train).tolist()) == set(range(7))


ARGS = dict(method="bp", arch="mlp:16-C", epochs=1, batch_size=32, limit_train=256, limit_eval=301, rule={"lr": 1e-9})


def _two_processes(tmp_path, fmnist_root) -> dict:
    runs = tmp_path / "ddp"
    cli = [
        "--method",
        "bp",
        "--arch",
        "mlp:16-C",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--limit-train",
        "256",
        "--limit-eval",
        "301",
        "--set",
        "lr=1e-9",
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "run",
            *cli,
            "--wandb",
            "disabled",
            "--no-progress",
            "--data-dir",
            str(fmnist_root),
            "--runs-dir",
            str(runs),
            "--accelerator",
            "cpu",
            "--devices",
            "2",
            "--strategy",
            "ddp",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (rec,) = [json.loads(p.read_text()) for p in (runs / "records").glob("*.json")]
    assert rec["config"]["rule"]["lr"] == ARGS["rule"]["lr"] and rec["config"]["limit_eval"] == ARGS["limit_eval"]
    return rec


def test_ddp_two_cpu_processes_see_the_same_samples_as_one(tmp_path, fmnist_root):
    """Same data, same init (seeded, broadcast by DDP) and an lr too small to move a prediction: two gloo processes
    must see as many training samples as one, and count each validation/test sample exactly once."""
    from bench.run import RunConfig, run

    one = run(
        RunConfig(
            **ARGS,
            data_dir=str(fmnist_root),
            runs_dir=str(tmp_path / "one"),
            wandb="disabled",
            progress=False,
            accelerator="cpu",
        )
    ).record
    two = _two_processes(tmp_path, fmnist_root)
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert one["history"][0]["train/samples"] == two["history"][0]["train/samples"] == 256
    assert two["history"][0]["val/acc"] == pytest.approx(one["history"][0]["val/acc"], abs=1e-12)
    assert two["test_acc"] == pytest.approx(one["test_acc"], abs=1e-12)
