"""Registry of learning rules by name (a class decorator, as timm does for models)."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from methods.errors import ConfigError

if TYPE_CHECKING:
    from methods.base import LearningRule

_RULES: dict[str, type[LearningRule]] = {}


def register(cls: type[LearningRule]) -> type[LearningRule]:
    """Register a LearningRule subclass under ``cls.name``; a duplicate name is an error."""
    name = getattr(cls, "name", None)
    if not name or not isinstance(name, str):
        raise TypeError(f"{cls.__qualname__} needs a class attribute `name` to be registered")
    if name in _RULES and _RULES[name] is not cls:
        raise ValueError(f"rule name {name!r} is already registered by {_RULES[name].__qualname__}")
    _RULES[name] = cls
    return cls


def load_rules() -> None:
    """Import every rule module of ``methods.RULE_MODULES`` (once); each registers its rules."""
    import importlib

    from methods import RULE_MODULES

    for module in RULE_MODULES:
        importlib.import_module(f"methods.{module}")


def get_rule(name: str) -> type[LearningRule]:
    """The rule class registered as ``name``; an unknown name lists the valid ones."""
    if name not in _RULES:
        load_rules()
    try:
        return _RULES[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; registered rules: {', '.join(list_rules())}") from None


def list_rules(pattern: str = "*") -> list[str]:
    """Registered rule names matching a shell-style pattern, sorted."""
    load_rules()
    return sorted(n for n in _RULES if fnmatch.fnmatch(n, pattern))
