"""The tuning and evaluation protocol as data, versioned: how a (dataset, rule, arch) cell is tuned, then judged.

A comparison is only citable with its protocol stated. ``PROTOCOLS["v1"]`` is the one ``make bench``, ``make sweep``
and ``--tune`` follow by default; its name is stored in every tuned entry (sweeps/best/), every run record and every
table caption. A sweep with another budget (other trials, epochs, training subset, pruner) is stored as ``custom``,
never as v1, and the grid does not apply it as v1 settings.

v1, per cell:

- tuning: ``trials`` finished trials (complete + pruned) on validation accuracy (10% of the official training split
  held out; the test split is never evaluated). Trial 0 is the rule's defaults (enqueued), the next ``startup``
  trials are scrambled Sobol points, the rest TPE (multivariate). The sampler's seed is derived from the cell
  (``study_seed``), so two rules (or two archs) never try the same normalised points.
- pruning: median pruner that acts only after ``pruner.startup`` finished trials, never before epoch
  ``pruner.warmup`` and only when a trial is more than ``pruner.margin`` (1 point of validation accuracy: 60
  samples of Fashion-MNIST's 6,000) below the median of earlier trials at that epoch; the last epoch is never pruned.
- budget: by default the evaluation's own epochs on the whole training split, so the tuned setting is judged at
  the budget it was chosen at. Rules whose epoch costs too much on two CPU cores (``short``) are tuned at a stated
  shorter budget, then checked: the tuned setting's first evaluation seed at the evaluation budget must not fall more
  than ``transfer_tolerance`` below the best trial's validation accuracy, nor diverge; the entry stores the check
  and the grid and report say "did not transfer" when it failed.
- evaluation: ``epochs`` epochs (``eval_epochs`` per rule where the budget is smaller), seeds ``seeds``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError


@dataclass(frozen=True)
class Budget:
    """Training budget of one tuning trial: epochs, and training samples (None: the whole training split)."""

    epochs: int
    limit_train: int | None = None

    def describe(self, n_train: int | None = None) -> str:
        n = self.limit_train if self.limit_train is not None else n_train
        samples = f"{n:,} training samples" if n is not None else "the whole training split"
        if self.limit_train is not None and n_train is not None and self.limit_train < n_train:
            samples = f"{self.limit_train:,} of {n_train:,} training samples"
        return f"{self.epochs} epoch(s) x {samples}"


@dataclass(frozen=True)
class Protocol:
    name: str
    trials: int
    """Finished trials per cell (complete + pruned), the defaults' trial included."""
    startup: int
    """Quasi-random (scrambled Sobol) trials after the defaults, before TPE models the space."""
    epochs: int
    """Evaluation epochs (and tuning epochs, for rules not in ``short``)."""
    seeds: tuple[int, ...]
    """Evaluation seeds; tuning trials train with the first."""
    eval_epochs: dict[str, int] = field(default_factory=dict)
    """Evaluation epochs of rules whose epoch is too costly for ``epochs`` on two CPU cores (stated, never mixed into
    one ranking with another budget)."""
    short: dict[str, Budget] = field(default_factory=dict)
    """Rules tuned at a stated shorter budget (then the transfer check)."""
    pruner: dict[str, Any] = field(
        default_factory=lambda: {"name": "median", "startup": 3, "warmup": 2, "margin": 0.01}
    )
    transfer_tolerance: float = 0.01
    """The tuned setting's evaluation run may fall at most this far (validation accuracy) below its best trial."""
    val_fraction: float = 0.1
    space: str = "sweeps/spaces/<rule>.toml, else lr log-uniform x/30 around the rule's default"
    sampler: str = "defaults, then scrambled Sobol (QMC), then multivariate TPE; seed derived from the cell"

    def evaluation_epochs(self, method: str) -> int:
        return self.eval_epochs.get(method, self.epochs)

    def tuning_budget(self, method: str) -> Budget:
        return self.short.get(method) or Budget(self.evaluation_epochs(method), None)

    def is_short(self, method: str) -> bool:
        return method in self.short

    def study_seed(self, dataset: str, method: str, arch: str) -> int:
        """The sampler seed of a cell's study: a hash of the protocol name and the cell (31 bits)."""
        key = f"{self.name}/{dataset}/{method}/{arch}".encode()
        return int(hashlib.sha256(key).hexdigest()[:8], 16) & 0x7FFFFFFF

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["seeds"] = list(self.seeds)
        return d

    def describe(self, method: str | None = None) -> str:
        """One line: the protocol as a caption states it."""
        p = self.pruner
        prune = (
            f"median pruner from epoch {p['warmup']}, margin {100 * p['margin']:g} point(s)"
            if p.get("name") == "median"
            else "no pruning"
        )
        head = f"protocol {self.name}: {self.trials} trials (defaults, {self.startup} Sobol, then TPE), {prune}"
        if method is None:
            return (
                f"{head}; tuned at the evaluation budget ({self.epochs} epochs, whole training split; stated shorter "
                f"budgets for {', '.join(sorted(self.short)) or 'none'} with a transfer check); evaluated on seeds "
                f"{','.join(map(str, self.seeds))}"
            )
        b = self.tuning_budget(method)
        how = (
            f"tuned at {b.describe()} (shorter budget, transfer check)"
            if self.is_short(method)
            else f"tuned at the evaluation budget ({b.epochs} epochs, whole training split)"
        )
        return f"{head}; {how}; evaluated at {self.evaluation_epochs(method)} epochs"


_EXPENSIVE_EVAL = {
    "ff": 3,
    "spela_cnn": 3,
    "local_learning": 3,
    "fg_local": 3,
    "fg_ntk": 3,
    "fg_fixed_ntk": 3,
    "fg_gaussian": 1,
    "fg_rademacher": 1,
}
"""Rules whose epoch costs several times BP's on two CPU cores (docs/speed.md): evaluated at fewer epochs."""

V1 = Protocol(
    name="v1",
    trials=10,
    startup=3,
    epochs=5,
    seeds=(0, 1, 2),
    eval_epochs=dict(_EXPENSIVE_EVAL),
    short={m: Budget(1, 10000) for m in _EXPENSIVE_EVAL},
)

PROTOCOLS: dict[str, Protocol] = {"v1": V1}
DEFAULT_PROTOCOL = "v1"
CUSTOM = "custom"
"""The protocol name of a sweep that follows another budget than the protocol's (stored so, never as v1)."""


def get_protocol(name: str | None = None) -> Protocol:
    name = name or DEFAULT_PROTOCOL
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None


def training_samples(dataset: str, run: dict[str, Any], data_dir: str | None = None) -> int | None:
    """How many samples a run with settings ``run`` trains on (the official training split less the validation
    share, capped by ``limit_train``); None when the split cannot be read here (no data yet)."""
    from bench.data import load_split
    from bench.paths import data_root

    try:
        x, _ = load_split(dataset, str(data_root(data_dir)), True, False, False)
    except Exception:  # no data here yet: the caller says "the whole split"
        return None
    n = len(x) - round(float(run.get("val_fraction", 0.1)) * len(x))
    limit = run.get("limit_train")
    return min(n, int(limit)) if limit else n
