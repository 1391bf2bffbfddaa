"""The run record: the one contract between a run and everything after it (grid skip/resume, claims, sweeps,
reports).

A record is ``<runs>/records/<run name>.json``, written once, when an attempt ends, by atomic replace (a
temporary file in the same folder, fsync, rename): a reader sees the old record or the new one, never half of
one. An attempt that did not complete never replaces a completed (or diverged) record; it is kept beside it in
``records/attempts/`` instead. While a run trains, its cell is held by a *claim*, ``records/<name>.claim``:
created atomically (hard link of a complete file: exclusive on local and NFS filesystems), holding host, pid
(with the process's start time), job id and the owner's token; the owner touches it every ``HEARTBEAT``
seconds. Another worker takes over a claim whose heartbeat is older than ``GRACE`` seconds, or at once when the
owner is a process of this host that no longer exists.

This module imports no training code (no torch): reports and launchers read records through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.paths import runs_root

DONE = ("completed", "diverged")
"""Final states: the grid skips these cells (a diverged run is a result, not a failure)."""
FAILED = ("crashed", "interrupted")
"""An attempt ended without a result: the next launch runs the cell again."""
RUN_META = (
    "name",
    "config_hash",
    "dataset",
    "method",
    "arch",
    "arch_full",
    "seed",
    "epochs",
    "group",
    "git_commit",
    "versions",
    "host",
    "labels",
    "tuned",
    "protocol",
    "setting",
    "job_type",
)
"""Record fields a run carries beside its config (W&B config ``meta``), in W&B and in the report's record runs."""
RUN_SUMMARY = ("status", "train_time_s", "peak_mem_bytes", "peak_mem_kind", "epochs_done")
"""Record fields a run's summary carries (with its test accuracies), in W&B and in the report's record runs."""
HEARTBEAT = 30.0
"""Seconds between two touches of a claim by its owner."""
GRACE = 120.0
"""A claim untouched for this long belongs to a dead worker (on another host; on this host the pid tells)."""


def records_dir(runs_dir: str | os.PathLike | None = None) -> Path:
    return runs_root(runs_dir) / "records"


def record_path(name: str, runs_dir: str | os.PathLike | None = None) -> Path:
    return records_dir(runs_dir) / f"{name}.json"


RECORD_STATUSES = ("running", *DONE, *FAILED)
_NUMBER = (int, float)
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(
        (
            "id",
            "config_hash",
            "dataset",
            "method",
            "arch",
            "arch_full",
            "group",
            "profile",
            "job_type",
            "protocol",
            "setting",
            "host",
            "git_commit",
            "started",
            "finished",
            "error",
            "traceback",
            "device",
            "peak_mem_kind",
        ),
        (str,),
    ),
    **dict.fromkeys(("seed", "epochs", "epochs_done", "world_size"), (int,)),
    **dict.fromkeys(("test_acc", "train_time_s", "peak_mem_bytes", "finished_ts"), _NUMBER),
    **dict.fromkeys(("test", "config", "rule_sources", "versions", "labels", "sweep"), (dict,)),
    "history": (list,),
    **dict.fromkeys(("tuned", "compiled"), (bool,)),
}
"""The record's schema beside ``name`` and ``status``: the type of each field a reader (grid, report, ledger) uses;
a field may be missing or null."""


def record_problem(rec: Any) -> str | None:
    """Why ``rec`` is not a run record (None: it is one): not an object, no ``name`` string, no known ``status``, a
    field of the wrong type (``RECORD_FIELDS``), test values that are not numbers, history rows that are not
    objects."""
    if not isinstance(rec, dict):
        return f"not a JSON object ({type(rec).__name__})"
    if not isinstance(rec.get("name"), str) or not rec["name"]:
        return "no run name"
    if rec.get("status") not in RECORD_STATUSES:
        return f"status {rec.get('status')!r} is none of {', '.join(RECORD_STATUSES)}"
    for key, types in RECORD_FIELDS.items():
        v = rec.get(key)
        if v is not None and (not isinstance(v, types) or (isinstance(v, bool) and bool not in types)):
            return f"{key} is {type(v).__name__}, not {' or '.join(t.__name__ for t in types)}"
    for k, v in (rec.get("test") or {}).items():
        if v is not None and (not isinstance(v, _NUMBER) or isinstance(v, bool)):
            return f"test value {k!r} is {type(v).__name__}, not a number"
    if not all(isinstance(row, dict) for row in rec.get("history") or []):
        return "a history row is not an object"
    return None


def check_record(path: str | os.PathLike) -> tuple[dict[str, Any] | None, str | None]:
    """(the record at ``path``, None), or (None, why it is not one); (None, None) when there is no file."""
    try:
        rec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"unreadable or not JSON ({type(e).__name__})"
    why = record_problem(rec)
    return (None, why) if why else (rec, None)


def read_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record at ``path``, or None when it is missing, unreadable or does not fit the record's schema
    (``record_problem``)."""
    return check_record(path)[0]


def load_record(name: str, runs_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    return read_record(record_path(name, runs_dir))


def iter_records(runs_dir: str | os.PathLike, on_skip=None) -> list[tuple[Path, dict[str, Any]]]:
    """Every record of a runs folder that fits the schema (attempts left out), sorted by file name; each file left
    out is passed to ``on_skip(path, why)``."""
    out = []
    for f in sorted((Path(runs_dir) / "records").glob("*.json")):
        rec, why = check_record(f)
        if rec is not None:
            out.append((f, rec))
        elif why and on_skip is not None:
            on_skip(f, why)
    return out


def json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    return str(o)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (its folder made if missing) for the block to write; when the block ends,
    the file replaces ``path`` in one rename, so a reader sees either the old file or the whole new one. When the
    block or the rename fails (a full or read-only disk) the temporary file is removed and the error raised;
    ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:6]}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through ``atomic_file``, on disk (fsync) before the rename."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_record(path: str | os.PathLike, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=1, default=json_default))


def save_attempt(path: str | os.PathLike, record: dict[str, Any], retries: int = 3, wait: float = 2.0) -> Path:
    """Store the record of a finished attempt. It replaces the record at ``path`` unless that one is done
    (completed or diverged) and this attempt is not: then it goes to ``records/attempts/`` and the result stays.
    A write that fails (e.g. a full disk) is retried; the last error is raised. Returns where it was written."""
    path = Path(path)
    old = read_record(path)
    if record.get("status") not in DONE and old is not None and old.get("status") in DONE:
        path = path.parent / "attempts" / f"{path.stem}.{record.get('id', uuid.uuid4().hex[:6])}.json"
    for i in range(retries):
        try:
            write_record(path, record)
            return path
        except OSError:
            if i == retries - 1:
                raise
            time.sleep(wait)
    return path


# ----------------------------------------------------------------------------------------------------- claims


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell it from a later process given the
    same pid; None where /proc is not there."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs (not a zombie) and is the one that started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: the pid exists, trust it
    if state in ("Z", "X"):  # killed, not yet waited for by its parent
        return False
    return started is None or process_start(pid) in (None, started)


def job_id() -> str | None:
    """The SLURM job (array task) this process runs in, if any."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def claim_path(name: str, runs_dir: str | os.PathLike | None = None) -> Path:
    return records_dir(runs_dir) / f"{name}.claim"


@dataclass
class ClaimInfo:
    """What a claim file says about its owner, and how fresh its heartbeat is."""

    token: str
    host: str
    pid: int
    pid_start: str | None
    job: str | None
    started: float
    age: float
    """Seconds since the owner last touched the claim."""

    @property
    def owner(self) -> str:
        return f"{self.host} pid {self.pid}" + (f" job {self.job}" if self.job else "")

    def stale(self, grace: float = GRACE) -> bool:
        if self.host == socket.gethostname() and not process_alive(self.pid, self.pid_start):
            return True
        return self.age > grace


def read_claim(path: str | os.PathLike) -> ClaimInfo | None:
    """The claim at ``path``; None when there is none. An unreadable claim reads as stale (age infinite)."""
    path = Path(path)
    try:
        age = time.time() - path.stat().st_mtime
        d = json.loads(path.read_text())
        return ClaimInfo(
            str(d["token"]),
            str(d["host"]),
            int(d["pid"]),
            d.get("pid_start"),
            d.get("job"),
            float(d.get("started", 0)),
            age,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return ClaimInfo("?", "?", -1, None, None, 0.0, float("inf"))


class CellClaim:
    """A held claim on one cell. ``CellClaim.acquire`` returns one or None (held by a live worker elsewhere). The
    owner's heartbeat thread touches the file until ``release`` (or the process's death)."""

    def __init__(self, path: Path, token: str, heartbeat: float):
        self.path, self.token = path, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat,), daemon=True, name="claim-heartbeat")
        self._thread.start()

    @classmethod
    def acquire(cls, path: str | os.PathLike, grace: float = GRACE, heartbeat: float = HEARTBEAT) -> CellClaim | None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        body = json.dumps(
            {
                "token": token,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "pid_start": process_start(os.getpid()),
                "job": job_id(),
                "started": time.time(),
            }
        )
        tmp = path.with_name(f".{path.name}.{token}")
        tmp.write_text(body)
        try:
            for _ in range(2):  # a free cell, or a stale claim taken over then the cell again
                try:
                    os.link(tmp, path)  # atomic and exclusive: fails when the claim exists
                    return cls(path, token, heartbeat)
                except FileExistsError:
                    info = read_claim(path)
                    if info is not None and not info.stale(grace):
                        return None
                    if info is not None and not _take_over(path, info):
                        return None
            return None
        finally:
            tmp.unlink(missing_ok=True)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            info = read_claim(self.path)
            if info is None or info.token != self.token:
                return  # taken over (we were judged dead): stop touching someone else's claim
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        """Stop the heartbeat and remove the claim. Never raises: a claim that cannot be removed (a folder turned
        read-only) goes stale once its heartbeat stops, and the error that ended the run is the one to see."""
        self._stop.set()
        info = read_claim(self.path)
        if info is not None and info.token == self.token:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass


def _take_over(path: Path, stale: ClaimInfo) -> bool:
    """Remove a stale claim, at most once per stale owner: the worker that creates the takeover marker (exclusive
    create, named after the stale owner's token) removes it; every other contender backs off."""
    marker = path.with_name(f".{path.name}.takeover-{stale.token}")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    try:
        now = read_claim(path)
        if now is not None and now.token == stale.token:
            path.unlink(missing_ok=True)
        return True
    finally:
        marker.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ cell states

STATES = (*DONE, "running", "failed", "pending")
"""What the grid shows per cell: done (completed, diverged), running elsewhere (a live claim), failed (the last
attempt crashed or was interrupted: run again), pending (no record, or a stale claim)."""


def cell_state(
    name: str, config_hash: str, runs_dir: str | os.PathLike | None = None, grace: float = GRACE
) -> tuple[str, dict[str, Any] | ClaimInfo | None]:
    """The state of one grid cell and what it was read from (the record, or the live claim)."""
    rec = load_record(name, runs_dir)
    if rec is not None and rec.get("config_hash") == config_hash and rec.get("status") in DONE:
        return rec["status"], rec
    info = read_claim(claim_path(name, runs_dir))
    if info is not None and not info.stale(grace):
        return "running", info
    if rec is not None and rec.get("config_hash") == config_hash and rec.get("status") in FAILED:
        return "failed", rec
    return "pending", rec


def stated_lr(rule_sources: dict[str, str] | None) -> bool:
    """True when a profile, a claim or ``--set`` gave the run's learning rate (not a tuned file, not the default)."""
    source = (rule_sources or {}).get("lr")
    return source is not None and not str(source).startswith("tuned")


def ran_untuned(tuned: bool | None, rule_sources: dict[str, str] | None) -> bool:
    """A run on the rule's defaults: no tuned settings applied (``tuned`` False) and no stated learning rate. Records
    the grid wrote before it told the two apart stored False for a claim's or profile's own settings too."""
    return tuned is False and not stated_lr(rule_sources)
