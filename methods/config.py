"""Typed, self-validating rule configs.

Every rule has a frozen, keyword-only dataclass of hyperparameters (a subclass of ``RuleConfig``).
Values given as strings (from the CLI, a sweep file or ``make bench``) are converted to the field's
type; an unknown key, a wrong type or an invalid value raises ``ConfigError`` naming the option and
the valid choices before any training starts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

from methods.errors import ConfigError

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["none", "step", "multistep", "cosine", "linear", "linear_step"]


@dataclass(frozen=True, kw_only=True)
class RuleConfig:
    """Optimisation settings shared by every rule; rules subclass it to add their own keys."""

    lr: float = 1e-3
    """Learning rate."""
    optimizer: Optimizer = "adam"
    """sgd (with ``momentum`` / ``nesterov``), adam or adamw."""
    momentum: float = 0.9
    """SGD momentum (ignored by Adam)."""
    nesterov: bool = False
    """Nesterov momentum for SGD (DRTP's reference code uses NAG)."""
    weight_decay: float = 0.0
    """Coupled L2 weight decay (decoupled for adamw)."""
    schedule: Schedule = "none"
    """Per-epoch lr schedule: none, step (every ``step_size`` epochs), multistep (at ``milestones``),
    cosine (to 0 over the run), linear (constant, then linear to 0 over the last ``1 - milestones[0]``) or
    linear_step (every ``step_size`` epochs the base lr times ``gamma`` is subtracted: the SPELA authors' code)."""
    step_size: int = 30
    """Epochs between decays of the step schedule."""
    milestones: tuple[float, ...] = (0.6, 0.9)
    """Multistep decay points as fractions of the run's epochs (PEPITA: 60% and 90%)."""
    gamma: float = 0.1
    """Decay factor of the step and multistep schedules; linear_step: the share of the base lr subtracted per step."""
    align_every: int = dataclasses.field(default=0, metadata={"diagnostic": True})
    """Every N training steps, log per block the cosine between the rule's update and the BP gradient of the same
    batch (``align/b<k>``; 0: off). Diagnostic only: the trained numbers do not change."""

    def __post_init__(self) -> None:
        _check_literals(self)
        _positive(self, "lr")
        if not isinstance(self.align_every, int) or self.align_every < 0:
            raise ConfigError(f"align_every must be >= 0 steps (0: off), got {self.align_every}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.step_size < 1:
            raise ConfigError(f"step_size must be >= 1 epoch, got {self.step_size}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not all(0.0 < m < 1.0 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"milestones must be increasing fractions of training in (0, 1), got {self.milestones}")
        if self.nesterov and self.optimizer != "sgd":
            raise ConfigError("nesterov=True needs optimizer=sgd")

    @classmethod
    def options(cls) -> dict[str, str]:
        """Option name -> its type, default and docstring (the string literal under the field, from the nearest class
        of the MRO that documents it), for ``list --options`` and ``--help``."""
        hints = get_type_hints(cls)
        docs = field_docs(cls)
        out = {}
        for f in dataclasses.fields(cls):
            text = f"{_type_name(hints[f.name])} = {f.default!r}"
            if docs.get(f.name):
                text += f"  {docs[f.name]}"
            out[f.name] = text
        return out


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring (whitespace collapsed), walking the MRO so that a subclass redefining a
    default without a docstring keeps its base's text and a subclass's own text wins."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        out.update(_own_field_docs(klass))
    return out


@functools.cache
def _own_field_docs(klass: type) -> dict[str, str]:
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return {}  # made at run time (e.g. make_dataclass): nothing of its own to read
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out = {}
    for a, b in zip(body, body[1:]):
        if (
            isinstance(a, ast.AnnAssign)
            and isinstance(a.target, ast.Name)
            and isinstance(b, ast.Expr)
            and isinstance(b.value, ast.Constant)
            and isinstance(b.value.value, str)
        ):
            out[a.target.id] = " ".join(b.value.value.split())
    return out


def _positive(cfg: Any, name: str) -> None:
    v = getattr(cfg, name)
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ConfigError(f"{name} must be a finite number > 0, got {v!r}")


def _check_literals(cfg: Any) -> None:
    hints = get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        choices = _literal_choices(hints[f.name])
        value = getattr(cfg, f.name)
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")


def _literal_choices(tp: Any) -> tuple | None:
    if get_origin(tp) is Literal:
        return get_args(tp)
    return None


def _type_name(tp: Any) -> str:
    choices = _literal_choices(tp)
    if choices is not None:
        return "|".join(map(str, choices))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert ``value`` (often a string) to type ``tp``; raise ConfigError naming ``name`` on failure."""
    origin = get_origin(tp)
    try:
        if origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
                return None
            return coerce(value, args[0], name)
        if origin is Literal:
            choices = get_args(tp)
            for c in choices:
                if value == c or (isinstance(value, str) and str(c) == value):
                    return c
            raise ConfigError(f"{name}={value!r} is not valid; choose one of {', '.join(map(str, choices))}")
        if origin is tuple:
            (inner, *_rest) = get_args(tp)
            if isinstance(value, str):
                value = [p.strip() for p in value.replace(";", ",").split(",") if p.strip()]
            elif not isinstance(value, (list, tuple)):
                value = [value]
            return tuple(coerce(v, inner, name) for v in value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={value!r} is not a valid {_type_name(tp)}") from None
    return value


def build_config(cls: type, overrides: Mapping[str, Any] | None = None, *, owner: str = "") -> Any:
    """Instantiate config dataclass ``cls`` from ``overrides`` (strings are converted).

    An unknown key raises ConfigError listing the valid ones; invalid values raise from the
    dataclass's own ``__post_init__``.
    """
    overrides = dict(overrides or {})
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - fields)
    where = f" for {owner}" if owner else ""
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}{where}; valid options: {', '.join(sorted(fields))}")
    hints = get_type_hints(cls)
    kwargs = {k: coerce(v, hints[k], k) for k, v in overrides.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{e}{where}") from None


def config_to_dict(cfg: Any, *, identity: bool = False) -> dict[str, Any]:
    """Plain JSON-friendly dict of a config dataclass (tuples become lists). ``identity``: leave out diagnostic fields
    (``metadata={"diagnostic": True}``) at their default, so adding one never changes existing run hashes, and the
    fields the config's own ``identity_omits()`` names (where one has no effect on the numbers for its settings)."""
    out = {}
    omit = cfg.identity_omits() if identity and hasattr(cfg, "identity_omits") else set()
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if identity and (f.name in omit or (f.metadata.get("diagnostic") and v == f.default)):
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
