"""``make perf``: seconds per epoch of the harness beside a plain PyTorch loop doing the same math.

Both train BP on the same in-memory tensors (same arch, batch size, optimiser, shuffling by index)
in the same process, alternating, so machine noise hits both alike. The ratio harness/plain is the
harness's overhead (Lightning hooks, logging, metric bookkeeping).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def plain_epochs(x: torch.Tensor, y: torch.Tensor, arch: str, num_classes: int, batch_size: int, lr: float,
                 epochs: int, seed: int) -> list[float]:
    """A textbook PyTorch loop: same network builder, Adam, shuffled index batches. Seconds per epoch."""
    from methods.arch import ArchSpec, build_network

    torch.manual_seed(seed)
    net = build_network(ArchSpec.parse(arch), tuple(x.shape[1:]), num_classes).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator(device=x.device).manual_seed(seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(x), generator=g, device=x.device)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    from bench.data import TensorDataModule
    from bench.run import RunConfig, run

    ap = argparse.ArgumentParser(prog="python -m bench perf", description=__doc__)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--arch", default="mlp:1024-C")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating harness/plain rounds")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)

    dm = TensorDataModule(args.dataset, root=args.data_dir, batch_size=args.batch_size,
                          device="cuda" if torch.cuda.is_available() else "cpu")
    dm.setup()
    x, y = dm.splits["train"]
    harness, plain = [], []
    for r in range(args.rounds):
        res = run(RunConfig(dataset=args.dataset, method="bp", arch=args.arch, epochs=args.epochs,
                            batch_size=args.batch_size, seed=r, wandb="disabled", progress=False,
                            data_dir=args.data_dir, runs_dir=None, group="perf"))
        harness += [row["train/epoch_time_s"] for row in res.record["history"][1:]]
        plain += plain_epochs(x, y, args.arch, dm.num_classes, args.batch_size, 1e-3, args.epochs, r)[1:]
    h, p = statistics.median(harness), statistics.median(plain)
    print(f"dataset={args.dataset} arch={args.arch} batch={args.batch_size} device={x.device.type} "
          f"threads={torch.get_num_threads()} train samples={len(x)}")
    print(f"harness (Lightning, bench.run): {h:.3f} s/epoch  (epochs measured: {', '.join(f'{t:.2f}' for t in harness)})")
    print(f"plain PyTorch loop:             {p:.3f} s/epoch  (epochs measured: {', '.join(f'{t:.2f}' for t in plain)})")
    print(f"ratio harness/plain:            {h / p:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
