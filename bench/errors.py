"""Errors a user can fix. The CLI prints their message and exits with status 2, no stack trace."""

import signal
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


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: the work stops, what was running is recorded ``interrupted``, and the command
    exits with 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as shells and schedulers expect.
    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in a run or a library does not eat it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise_interrupted(signum, _frame) -> None:
    # a second signal while the first one is being handled (records written, workers stopped) is ignored
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """Turn SIGINT and SIGTERM into ``Interrupted`` (main thread only). Lightning chains its own SIGTERM handler
    in front of this one, and lets any exception but KeyboardInterrupt through."""
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _raise_interrupted)


def exit_status(command: Callable[..., int], *args) -> int:
    """Run a CLI command: a BenchError is one line on stderr and status 2; SIGINT/SIGTERM stop it with status
    130/143; anything else is a bug and keeps its traceback."""
    install_signal_handlers()
    try:
        return command(*args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"interrupted ({e})", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted (SIGINT)", file=sys.stderr)
        return 130
