"""Search spaces as data: ``sweeps/spaces/<rule>.toml``, one inline table per rule option.

    lr = { type = "float", low = 1e-4, high = 1e-1, log = true }
    f_scale = { type = "float", low = 0.01, high = 0.5, log = true }
    threshold = { type = "categorical", choices = [1.0, 2.0, 4.0] }

Keys are options of the rule's config (``python -m bench list --options``). The learning rate is always
searched, log-uniformly. A rule without a file gets the default space: lr log-uniform over
[default / 30, default * 30], so a rule is sweepable the moment it is registered.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from bench.errors import ConfigError

SPACES_DIR = Path(__file__).resolve().parent / "spaces"
DEFAULT_LR_FACTOR = 30.0
"""The default space searches lr in [default / 30, default * 30] (about three decades)."""
KINDS = ("float", "int", "categorical")


@dataclass(frozen=True)
class Param:
    """One searched option: a float or int range (optionally log-scaled) or a list of choices."""

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple | None = None

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))

    def extremes(self) -> list[Any]:
        """Values at the edges of the range (every choice for a categorical), for validation before a sweep."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.choices)}"
        scale = "log-uniform" if self.log else "uniform"
        return f"{self.name} {self.kind} {scale} [{self.low:g}, {self.high:g}]" + (
            f" step {self.step:g}" if self.step else ""
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": self.kind}
        if self.kind == "categorical":
            d["choices"] = list(self.choices)
        else:
            d.update(low=self.low, high=self.high, log=self.log)
            if self.step is not None:
                d["step"] = self.step
        return d


@dataclass(frozen=True)
class Space:
    """The searched options of one rule and where they were defined."""

    method: str
    params: tuple[Param, ...]
    source: str
    """The space file, or ``default (lr around the rule's default)``."""

    def suggest(self, trial, only: set[str] | None = None) -> dict[str, Any]:
        """Sample every searched option (``only``: just these)."""
        return {p.name: p.suggest(trial) for p in self.params if only is None or p.name in only}

    def describe(self) -> str:
        return "; ".join(p.describe() for p in self.params)

    def to_dict(self) -> dict[str, Any]:
        return {p.name: p.to_dict() for p in self.params}


def space_file(method: str) -> Path:
    return SPACES_DIR / f"{method}.toml"


def default_space(method: str) -> Space:
    """lr log-uniform over [default / 30, default * 30] of the rule's own default lr."""
    from methods.registry import get_rule

    default = get_rule(method).Config().lr
    lr = Param(
        "lr", "float", low=_round(default / DEFAULT_LR_FACTOR), high=_round(default * DEFAULT_LR_FACTOR), log=True
    )
    return Space(
        method, (lr,), f"default (lr log-uniform, x/{DEFAULT_LR_FACTOR:g} around the rule's default {default:g})"
    )


def _round(x: float) -> float:
    return float(f"{x:.3g}")


def load_space(method: str, path: str | Path | None = None, fixed: dict[str, Any] | None = None) -> Space:
    """``path``, else ``sweeps/spaces/<method>.toml``, else the default space; validated against the rule's
    config together with the options held fixed in the sweep (``fixed``)."""
    import methods  # noqa: F401 - registers the rules
    from methods.registry import get_rule

    rule_cls = get_rule(method)
    if path is None and not space_file(method).exists():
        space = default_space(method)
    else:
        path = Path(path) if path else space_file(method)
        if not path.exists():
            raise ConfigError(f"search-space file {path} does not exist")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"search-space file {path} is not valid TOML: {e}") from None
        space = Space(method, tuple(_parse_param(name, spec, path) for name, spec in raw.items()), _show(path))
    validate_space(space, rule_cls, fixed or {})
    return space


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(SPACES_DIR.parents[1]))
    except ValueError:
        return str(path)


def _parse_param(name: str, spec: Any, path: Path) -> Param:
    where = f"{path}: {name}"
    if not isinstance(spec, dict):
        raise ConfigError(f'{where} must be a table like {{ type = "float", low = 1e-4, high = 1e-1, log = true }}')
    unknown = set(spec) - {"type", "low", "high", "log", "step", "choices"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (type, low, high, log, step, choices)")
    kind = spec.get("type", "categorical" if "choices" in spec else "float")
    if kind not in KINDS:
        raise ConfigError(f"{where}: type={kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: a categorical option needs a non-empty list `choices`")
        return Param(name, kind, choices=tuple(choices))
    low, high = spec.get("low"), spec.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{where}: a {kind} option needs numbers `low` and `high`")
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ConfigError(f"{where}: needs finite low < high, got low={low}, high={high}")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-scaled range needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None and log:
        raise ConfigError(f"{where}: `step` and `log` cannot be combined (Optuna)")
    if kind == "int":
        if not all(float(v).is_integer() for v in (low, high)):
            raise ConfigError(f"{where}: an int option needs integer bounds, got {low}, {high}")
        return Param(name, kind, low=int(low), high=int(high), log=log, step=int(step) if step is not None else None)
    return Param(name, kind, low=float(low), high=float(high), log=log, step=float(step) if step is not None else None)


def validate_space(space: Space, rule_cls, fixed: dict[str, Any]) -> None:
    """Every key is an option of the rule and not held fixed; lr is searched log-uniformly; every edge of a
    range (with the fixed options) is a valid config."""
    from methods.config import build_config

    fields = {f.name for f in dataclasses.fields(rule_cls.Config)}
    hints = get_type_hints(rule_cls.Config)
    where = f"search space of {space.method} ({space.source})"
    names = [p.name for p in space.params]
    unknown = sorted(set(names) - fields)
    if unknown:
        raise ConfigError(
            f"{where}: {', '.join(unknown)} is not an option of rule {space.method!r}; "
            f"valid options: {', '.join(sorted(fields))}"
        )
    clash = sorted(set(names) & set(fixed))
    if clash:
        raise ConfigError(f"{where}: {', '.join(clash)} is searched; it cannot also be fixed with --set")
    lr = next((p for p in space.params if p.name == "lr"), None)
    if lr is None or lr.kind != "float" or not lr.log:
        raise ConfigError(
            f"{where}: every space searches lr log-uniformly; add "
            'lr = { type = "float", low = ..., high = ..., log = true }'
        )
    for p in space.params:
        base = _base_type(hints[p.name])
        if p.kind == "int" and base not in (int, float):
            raise ConfigError(
                f"{where}: {p.name} is a {base.__name__ if isinstance(base, type) else base} option; "
                "an int range does not fit it"
            )
        if p.kind == "float" and base is not float:
            raise ConfigError(f'{where}: {p.name} is not a float option; use type = "int" or "categorical"')
        for value in p.extremes():
            try:
                build_config(rule_cls.Config, {**fixed, p.name: value}, owner=f"rule {space.method!r}")
            except ConfigError as e:
                raise ConfigError(f"{where}: {p.name}={value!r} is not a valid value: {e}") from None


def _base_type(tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return _base_type(args[0]) if args else tp
    return tp
