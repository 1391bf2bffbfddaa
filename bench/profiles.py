"""Named grid profiles behind ``make bench PROFILE=...`` (data, not code paths)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.errors import ConfigError


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    seeds: tuple[int, ...] = (0,)
    epochs: int | None = None
    """Epochs of every run; None: each rule's own ``paper_epochs``."""
    methods: tuple[str, ...] | None = None
    """Rules to run when METHODS is not given; None: every registered rule."""
    run: dict[str, Any] = field(default_factory=dict)
    """Other RunConfig fields (e.g. limit_train, test_fraction)."""


PROFILES: dict[str, Profile] = {
    "quick": Profile("quick", "every registered rule, 1 seed, 2 epochs: a smoke run that finishes in minutes on a CPU",
                     seeds=(0,), epochs=2),
    "paper": Profile("paper", "the papers' protocol: each rule's paper epochs, 5 seeds (mean +- std)",
                     seeds=(0, 1, 2, 3, 4), epochs=None),
    "fg_grid": Profile(
        "fg_grid", "forward gradient: guess x target x space (Fournier et al. Tables 2-4, 7) beside BP, 1 seed, 20 "
        "epochs; give one ARCH for all (e.g. mlp:128-128-C, resnet18)", seeds=(0,), epochs=20,
        methods=("bp", "fg_gaussian", "fg_gaussian_global_activity", "fg_gaussian_local_weight",
                 "fg_gaussian_local_activity", "fg_rademacher", "fg_rademacher_global_activity",
                 "fg_rademacher_local_weight", "fg_rademacher_local_activity", "fg_local", "fg_local_global_activity",
                 "local_learning", "fg_ntk", "fg_ntk_global_activity", "fg_ntk_local_weight", "fg_ntk_local_activity",
                 "fg_fixed_ntk", "fg_fixed_ntk_global_activity", "fg_fixed_ntk_local_weight",
                 "fg_fixed_ntk_local_activity")),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
