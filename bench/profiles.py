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
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
