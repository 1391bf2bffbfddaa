"""Errors a user can fix. The CLI prints their message and exits with status 2, no stack trace."""

import errno
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


class StorageError(BenchError):
    """A folder the command must write to is read-only, full or not ours; found before anything loads."""


DISK_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
               errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}
"""OSErrors that are the machine's state, not a bug: one line instead of a traceback."""


def disk_problem(e: OSError) -> str | None:
    """What a disk-side OSError means in words (None for any other error)."""
    if e.errno not in DISK_ERRNOS:
        return None
    where = f" ({e.filename})" if e.filename else ""
    return f"cannot write{where}: {DISK_ERRNOS[e.errno]}"


def exit_status(command: Callable[..., int], *args) -> int:
    """Run a CLI command: a BenchError is one line on stderr and status 2, a full or read-only disk met while working
    one line and status 1, Ctrl-C (or SIGTERM turned into it) status 130; anything else is a bug and keeps its
    traceback."""
    try:
        return command(*args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk that filled up (or turned read-only) while the command ran
        problem = disk_problem(e)
        if problem is None:
            raise
        print(f"error: {problem}; free space or write elsewhere (--runs-dir, --out)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
