"""Where a study lives: SQLite (default, one file, no server), Optuna's journal file (a shared filesystem),
or any SQLAlchemy database URL (PostgreSQL for a cluster).

    (nothing)                         sqlite:///<project>/sweeps/studies/optuna.db
    sqlite:///path/to/file.db         SQLite (several workers on one machine)
    journal:/shared/path/study.log    Optuna's JournalFileStorage (append-only file; NFS-safe lock)
    postgresql://user:pw@host/db      any database URL; PostgreSQL for many workers on many nodes

Database storages get Optuna's heartbeat: a trial whose worker died (killed, node lost) is marked FAIL after
``grace`` seconds by the next worker that starts a trial, and is re-queued once with the same parameters.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from bench.errors import ConfigError
from bench.paths import PROJECT_ROOT

STUDIES_DIR = PROJECT_ROOT / "sweeps" / "studies"
DEFAULT_STORAGE = f"sqlite:///{STUDIES_DIR / 'optuna.db'}"
JOURNAL_PREFIX = "journal:"


def default_storage() -> str:
    """$BENCH_SWEEP_STORAGE, else the project's SQLite file."""
    return os.environ.get("BENCH_SWEEP_STORAGE") or DEFAULT_STORAGE


def normalise(url: str | None) -> str:
    """A storage URL from what the user typed (a bare *.db path means SQLite, *.log/*.jsonl a journal)."""
    url = (url or "").strip() or default_storage()
    if url.startswith(("postgresql://", "postgres://")):
        return _postgres_driver(url)
    if "://" in url or url.startswith(JOURNAL_PREFIX):
        return url
    path = Path(url).expanduser().resolve()
    if path.suffix in (".db", ".sqlite", ".sqlite3"):
        return f"sqlite:///{path}"
    if path.suffix in (".log", ".jsonl", ".journal"):
        return f"{JOURNAL_PREFIX}{path}"
    raise ConfigError(
        f"storage {url!r} is neither a database URL (sqlite:///..., postgresql://...), "
        "journal:<file>, a *.db file nor a *.log journal file"
    )


def _postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; use psycopg2 (the project's driver) when only it is
    installed."""
    import importlib.util

    rest = url.split("://", 1)[1]
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return f"postgresql+psycopg2://{rest}"
    return f"postgresql://{rest}"


def kind(url: str) -> str:
    """sqlite, journal or the database dialect (postgresql, mysql, ...)."""
    if url.startswith(JOURNAL_PREFIX):
        return "journal"
    return url.split(":", 1)[0].split("+", 1)[0]


def redact(url: str) -> str:
    """The URL with any password masked (for logs and exported files)."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def check_sqlite(url: str) -> None:
    """Refuse a damaged SQLite study file in one line: ``PRAGMA quick_check`` reads every page (a page damaged
    inside, past the header, only shows when a query reaches it). A missing file is fine (it gets created)."""
    import sqlite3

    if not url.startswith("sqlite:///"):
        return
    db = Path(url.split(":///", 1)[1])
    if str(db) in ("", ":memory:") or not db.is_file():
        return
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=120)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
        lines = [ln for r in rows for ln in str(r[0]).splitlines() if ln.strip() and not ln.startswith("***")]
        problem = None if rows == [("ok",)] else f"malformed: {lines[0] if lines else rows}"
    except sqlite3.DatabaseError as e:
        problem = str(e)
    if problem:
        raise ConfigError(
            f"the study file {db} is damaged ({problem}); restore it from a backup, or move it aside "
            "and re-run (a new file is created and the study starts over)"
        )


def open_storage(
    url: str, *, heartbeat: int | None = 30, grace: int | None = None, retries: int = 1, check: bool = False
):
    """An Optuna storage object for ``url`` (see the module docstring). ``check``: first verify that a SQLite file is
    intact (``check_sqlite``); the launcher does, once per sweep."""
    if check:
        check_sqlite(url)
    import optuna
    from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        # the open(O_CREAT|O_EXCL) lock works on NFS v3+ and local filesystems alike
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    engine_kwargs: dict = {}
    if url.startswith("sqlite:"):
        db = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if db is not None and str(db) not in ("", ":memory:"):
            db.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 120}}  # several writers wait for the lock instead of failing
    else:
        engine_kwargs = {"pool_pre_ping": True}
    try:
        with warnings.catch_warnings():  # heartbeats and retries are marked experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            hb = {}
            if heartbeat:
                hb = {
                    "heartbeat_interval": heartbeat,
                    "grace_period": grace or 4 * heartbeat,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=retries),
                }
            return RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
    except ImportError as e:
        raise ConfigError(
            f"storage {redact(url)} needs a database driver: {e}. For PostgreSQL: "
            "pip install psycopg2-binary (pip install -e '.[postgres]')"
        ) from None
    except optuna.exceptions.StorageInternalError as e:
        raise ConfigError(f"cannot open the study storage {redact(url)}: {e}") from None
    except Exception as e:  # noqa: BLE001 - sqlalchemy's OperationalError and friends: one clear line
        if type(e).__module__.startswith("sqlalchemy"):
            raise ConfigError(f"cannot connect to the study storage {redact(url)}: {str(e).splitlines()[0]}") from None
        raise
