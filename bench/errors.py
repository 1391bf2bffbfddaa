"""Errors a user can fix. The CLI prints their message and exits with status 2, no stack trace."""

import errno
import signal
import sys
from collections.abc import Callable

from methods.errors import ArchError, BenchError, ConfigError, DataError  # noqa: F401 - the rule library's errors


class StorageError(BenchError):
    """A folder the command must write to is read-only, full or not ours; found before anything loads."""


DISK_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
"""OSErrors that are the machine's state, not a bug: one line instead of a traceback."""


def disk_problem(e: OSError) -> str | None:
    """What a disk-side OSError means in words (None for any other error)."""
    if e.errno not in DISK_ERRNOS:
        return None
    where = f" ({e.filename})" if e.filename else ""
    return f"cannot write{where}: {DISK_ERRNOS[e.errno]}"


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
    """Run a CLI command: a BenchError is one line on stderr and status 2 (or the error's own ``exit_code``: 1 for a
    record a full disk kept from being written), a full or read-only disk met while working one line and status 1;
    SIGINT/SIGTERM stop it with status 130/143; anything else is a bug and keeps its traceback."""
    install_signal_handlers()
    try:
        return command(*args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return int(getattr(e, "exit_code", 2))
    except OSError as e:  # a disk that filled up (or turned read-only) while the command ran
        problem = disk_problem(e)
        if problem is None:
            raise
        print(f"error: {problem}; free space or write elsewhere (--runs-dir, --out)", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"interrupted ({e})", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted (SIGINT)", file=sys.stderr)
        return 130
