"""Checks of a run's numeric and hardware settings, done before any data loads (``bench.run.resolve`` calls them).

Each failure is a ``ConfigError`` naming the value and what would be accepted; the CLI turns it into one line and
exit status 2, ``--dry-run`` included.
"""

from __future__ import annotations

from typing import Any

from bench.errors import ConfigError

MAX_SEED = 2**32 - 1
"""Seeds go to numpy, which takes 0 .. 2**32 - 1."""

_GPU_LIKE = {"gpu": ("cuda", "mps"), "cuda": ("cuda",), "mps": ("mps",), "tpu": ("tpu",)}


def check_run_fields(cfg: Any) -> None:
    """The numbers of a ``RunConfig``: seed, sample limits, fractions, node count, then the hardware."""
    if not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..{MAX_SEED}, got {cfg.seed}")
    for name in ("limit_train", "limit_eval"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(
                f"{name} must be >= 1 (a number of samples; leave it out for the whole split), got {value}"
            )
    if cfg.eval_batch_size < 1:
        raise ConfigError(f"eval_batch_size must be >= 1, got {cfg.eval_batch_size}")
    if not isinstance(cfg.steps_per_call, int) or cfg.steps_per_call < 1:
        raise ConfigError(f"steps_per_call must be an integer >= 1, got {cfg.steps_per_call}")
    if cfg.test_fraction is not None and not 0.0 < cfg.test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {cfg.test_fraction}")
    check_hardware(cfg.accelerator, cfg.devices, cfg.strategy, cfg.num_nodes)


def _available(kind: str) -> bool:
    import torch

    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if kind == "tpu":
        try:
            from lightning.pytorch.accelerators import XLAAccelerator

            return XLAAccelerator.is_available()
        except Exception:  # noqa: BLE001 - no torch_xla: no TPU
            return False
    return kind == "cpu"


def _device_count(kind: str) -> int:
    import torch

    if kind == "cuda":
        return torch.cuda.device_count()
    return 1


def check_hardware(accelerator: str, devices: int | str, strategy: str, num_nodes: int) -> None:
    """Lightning's accelerator, devices, strategy and node count, checked against what this machine has.

    Accepted: accelerator auto, cpu, gpu, cuda, mps, tpu (a GPU/TPU one only when torch sees one); devices auto, a
    positive count, -1 (all GPUs) or a comma-separated list of GPU indices; a strategy Lightning registers (or auto);
    num_nodes >= 1."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    acc = str(accelerator).strip().lower()
    known = ["auto", "cpu", "gpu", *sorted(set(AcceleratorRegistry.available_accelerators()) - {"cpu"})]
    if acc not in known:
        raise ConfigError(f"accelerator {accelerator!r}; choose one of {', '.join(known)}")
    kinds = _GPU_LIKE.get(acc, ())
    if kinds and not any(_available(k) for k in kinds):
        raise ConfigError(
            f"accelerator {acc!r} asked for, but torch sees no {'/'.join(kinds).upper()} device on "
            f"this machine; use --accelerator cpu (or auto)"
        )
    gpu = next((k for k in kinds if _available(k)), None) if kinds else None
    if acc == "auto":
        gpu = next((k for k in ("cuda", "mps") if _available(k)), None)

    text = str(devices).strip()
    if text != "auto":
        parts = [p.strip() for p in text.strip("[]").split(",")]
        try:
            ids = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(
                f"devices {devices!r}: give a positive count, auto, -1 (all GPUs) or a comma-separated "
                "list of GPU indices (e.g. 0,1)"
            ) from None
        listed = "," in text or text.startswith("[")
        if listed:
            if gpu is None:
                raise ConfigError(
                    f"devices {devices!r} lists device indices, which only a GPU accelerator takes; "
                    "on CPU give a count (e.g. --devices 2)"
                )
            bad = [i for i in ids if not 0 <= i < _device_count(gpu)]
            if bad or len(set(ids)) != len(ids):
                raise ConfigError(
                    f"devices {devices!r}: this machine has {_device_count(gpu)} {gpu} device(s), "
                    f"indices 0..{_device_count(gpu) - 1}, each listed once"
                )
        elif ids[0] == -1:
            if gpu is None:
                raise ConfigError(
                    "devices -1 means every GPU, and there is none (or the accelerator is cpu); "
                    "give a count of processes, e.g. --devices 1"
                )
        elif ids[0] < 1:
            raise ConfigError(f"devices must be >= 1 (or auto, -1, a list of GPU indices), got {devices!r}")
        elif gpu is not None and ids[0] > _device_count(gpu):
            raise ConfigError(f"devices {ids[0]}: this machine has only {_device_count(gpu)} {gpu} device(s)")

    strat = str(strategy).strip()
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if strat not in strategies:
        raise ConfigError(
            f"strategy {strategy!r}; choose auto or one Lightning registers: "
            f"{', '.join(s for s in strategies if not any(w in s for w in ('find_unused', 'stage', 'offload')))}, ..."
        )
    if not isinstance(num_nodes, int) or num_nodes < 1:
        raise ConfigError(f"num_nodes must be >= 1, got {num_nodes}")
