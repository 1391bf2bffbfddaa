"""Shared test setup: every run writes into a temporary folder, nothing goes outside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_flush_denormal(True)


@pytest.fixture(autouse=True, scope="session")
def _isolated_dirs(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    os.environ["BENCH_RUNS_DIR"] = str(runs)
    # sweeps: no tuned parameters from sweeps/best/ leak into tests; studies and figures stay in the temp folder
    os.environ["BENCH_TUNED_DIR"] = str(runs / "tuned")
    os.environ["BENCH_SWEEP_STORAGE"] = f"sqlite:///{runs / 'studies.db'}"
    os.environ["BENCH_REPORTS_DIR"] = str(runs / "reports")
    for key, sub in (
        ("WANDB_DIR", ""),
        ("WANDB_CACHE_DIR", ".wandb-cache"),
        ("WANDB_CONFIG_DIR", ".wandb-config"),
        ("WANDB_DATA_DIR", ".wandb-data"),
        ("MPLCONFIGDIR", ".mplconfig"),
    ):
        os.environ[key] = str(runs / sub) if sub else str(runs)
    os.environ["WANDB_SILENT"] = "true"
    os.environ.setdefault("WANDB_MODE", "offline")
    yield runs


@pytest.fixture(scope="session")
def fmnist_root() -> Path:
    """Folder with the real Fashion-MNIST (Debian's copy is unpacked there); skips when it is absent."""
    from bench.data import DEBIAN_FMNIST, _debian_fashion_mnist
    from bench.paths import data_root

    root = data_root()
    _debian_fashion_mnist(root)
    raw = root / "FashionMNIST" / "raw"
    if not (raw / "train-images-idx3-ubyte").exists():
        pytest.skip(
            f"real Fashion-MNIST not present (apt-get install dataset-fashion-mnist puts it in {DEBIAN_FMNIST})"
        )
    return root


def tiny_batch(in_shape=(1, 28, 28), n: int = 8, num_classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *in_shape, generator=g), torch.randint(0, num_classes, (n,), generator=g)


def slurm_up() -> bool:
    """A SLURM node answers (``sinfo``) as idle, mixed or allocated."""
    import shutil
    import subprocess

    if not shutil.which("sinfo"):
        return False
    for _ in range(3):  # slurmctld can be slow to answer on a loaded machine
        try:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if any(s in out for s in ("idle", "mix", "alloc")):
            return True
    return False


@pytest.fixture
def slurm():
    """A real SLURM cluster (.ci/slurm-up starts a single-node one): skipped without one, a failure when
    BENCH_REQUIRE_SLURM is set (CI)."""
    if not slurm_up():
        if os.environ.get("BENCH_REQUIRE_SLURM"):
            pytest.fail("BENCH_REQUIRE_SLURM is set but no SLURM node answers `sinfo` (.ci/slurm-up starts one)")
        pytest.skip("no SLURM cluster here (.ci/slurm-up starts a single-node one)")
