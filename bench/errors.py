"""Errors a user can fix. The CLI prints their message and exits with status 2, no stack trace."""

import sys
from collections.abc import Callable


class BenchError(Exception):
    """Base class: bad input detected before (or instead of) training."""


class ConfigError(BenchError, ValueError):
    """An unknown name, an invalid value or an impossible combination of options."""


class ArchError(ConfigError):
    """An architecture string that cannot be parsed, or a rule/architecture pairing that cannot work."""


class DataError(BenchError):
    """A data file that is missing or corrupt; the message names the file and how to obtain it."""


def exit_status(command: Callable[..., int], *args) -> int:
    """Run a CLI command: a BenchError is one line on stderr and status 2, Ctrl-C (or SIGTERM turned into it)
    status 130; anything else is a bug and keeps its traceback."""
    try:
        return command(*args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
