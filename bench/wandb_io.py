"""Read runs back from W&B: offline run folders (their binary ``.wandb`` record files) or the W&B API.

W&B 0.31 offline writes only ``run-<id>.wandb``: a LevelDB-style log (7-byte file header ``:W&B``,
magic 0xBEE1, version; then 32 KiB blocks of chunks ``crc32 | length | type`` with types
FULL/FIRST/MIDDLE/LAST) whose payloads are ``wandb_internal_pb2.Record`` protobufs. We read it with
W&B's own protobuf definitions; a damaged tail (a run killed mid-write) ends the read, and the run is
reported as partial.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class WandbRun:
    """What a report needs of one W&B run."""

    id: str
    name: str
    project: str = ""
    group: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False
    """An exit record was written (the run ended, successfully or not)."""
    exit_code: int | None = None
    start_time: float = 0.0
    path: str = ""
    damaged: bool = False


def _records(data: bytes) -> tuple[list[bytes], bool]:
    """Payloads of the log's records, and whether the read stopped at a damaged chunk."""
    if data[:4] != b":W&B":
        raise ValueError("not a W&B record file (bad header)")
    out: list[bytes] = []
    pos, pending = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        if (
            len(chunk) < length
            or kind not in (_FULL, _FIRST, _MIDDLE, _LAST)
            or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc
        ):
            return out, True
        pos += 7 + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        else:
            out.append(pending + chunk)
            pending = b""
    return out, False


def _value(item) -> Any:
    try:
        return json.loads(item.value_json)
    except (ValueError, TypeError):
        return item.value_json


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_wandb_file(path: str | Path) -> WandbRun:
    """Parse one ``run-<id>.wandb`` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    run = WandbRun(id=path.stem.removeprefix("run-"), name=path.stem, path=str(path))
    payloads, run.damaged = _records(path.read_bytes())
    for payload in payloads:
        rec = pb.Record()
        try:
            rec.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - a garbled record ends the useful part
            run.damaged = True
            break
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.name, run.project, run.group = r.run_id, r.display_name or r.run_id, r.project, r.run_group
            run.start_time = r.start_time.seconds + r.start_time.nanos / 1e9
            for item in r.config.update:
                run.config[_key(item)] = _value(item)
        elif kind == "config":
            for item in rec.config.update:
                run.config[_key(item)] = _value(item)
            for item in rec.config.remove:
                run.config.pop(_key(item), None)
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[_key(item)] = _value(item)
            for item in rec.summary.remove:
                run.summary.pop(_key(item), None)
        elif kind == "history":
            run.history.append({_key(i): _value(i) for i in rec.history.item if not _key(i).startswith("_")})
        elif kind == "exit":
            run.finished, run.exit_code = True, rec.exit.exit_code
    run.config.pop("_wandb", None)
    run.summary = {k: v for k, v in run.summary.items() if not k.startswith("_")}
    return run


def iter_offline_runs(root: str | Path) -> Iterator[WandbRun]:
    """Every offline run under ``root`` (its ``wandb/`` folder or the folder itself)."""
    root = Path(root)
    base = root / "wandb" if (root / "wandb").is_dir() else root
    seen: set[Path] = set()
    for f in sorted(base.glob("*run-*/run-*.wandb")):
        # ``latest-run`` is W&B's link to the newest run folder (a copy of it after copytree/rsync): skip it
        if f.parent.name == "latest-run" or f.resolve() in seen:
            continue
        seen.add(f.resolve())
        try:
            yield read_wandb_file(f)
        except (OSError, ValueError):
            yield WandbRun(id=f.stem, name=f.parent.name, path=str(f), damaged=True)


API_TIMEOUT = 30.0
"""Seconds the W&B API may take to answer the first request (``$BENCH_WANDB_TIMEOUT``)."""


def _api_error(entity_project: str, e: BaseException):
    from bench.errors import BenchError

    lines = str(e).strip().splitlines()
    return BenchError(
        f"cannot read W&B project {entity_project}: {type(e).__name__}: {lines[0] if lines else ''}".rstrip(": ")
        + " (a W&B account (wandb login) and network are needed; or pass a runs folder as --source)"
    )


def _first_page(entity_project: str, timeout: float):
    """The W&B API's run iterator for ``entity_project`` and its first run (None: no runs), fetched in a helper
    thread so that no network, a busy W&B service or a missing account is a ``BenchError`` after at most
    ``timeout`` seconds, not a traceback after a minute."""
    import threading

    import wandb

    from bench.errors import BenchError

    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            runs = iter(wandb.Api(timeout=max(1, int(timeout))).runs(entity_project))
            box["ok"] = (runs, next(runs, None))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=connect, daemon=True, name="wandb-api")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise BenchError(
            f"W&B did not answer within {timeout:.0f} s for {entity_project} (no network, or its service is "
            "busy); pass a runs folder as --source, or raise $BENCH_WANDB_TIMEOUT"
        )
    if "error" in box:
        raise _api_error(entity_project, box["error"]) from None
    return box["ok"]


def iter_api_runs(entity_project: str, timeout: float | None = None) -> Iterator[WandbRun]:
    """Runs of ``ENTITY/PROJECT`` through the W&B API (needs a configured account and network). A project that
    cannot be read (no account, no network, no such project) is a ``BenchError``; the first answer is awaited at
    most ``timeout`` seconds (default ``$BENCH_WANDB_TIMEOUT`` or ``API_TIMEOUT``)."""
    import os

    if timeout is None:
        timeout = float(os.environ.get("BENCH_WANDB_TIMEOUT") or API_TIMEOUT)
    runs, first = _first_page(entity_project, timeout)
    if first is None:
        return
    try:
        yield from (_api_run(r) for r in _chain(first, runs))
    except Exception as e:  # noqa: BLE001 - a lost connection mid-listing: one line
        raise _api_error(entity_project, e) from None


def _chain(first, rest):
    yield first
    yield from rest


def _api_run(r) -> WandbRun:
    """One W&B API run as a ``WandbRun``."""
    history = [{k: v for k, v in row.items() if not k.startswith("_")} for row in r.scan_history()]
    return WandbRun(
        id=r.id,
        name=r.name,
        project=r.project,
        group=r.group or "",
        config={k: v for k, v in r.config.items() if not k.startswith("_")},
        summary={k: v for k, v in dict(r.summary).items() if not k.startswith("_")},
        history=history,
        finished=r.state in ("finished", "failed", "crashed"),
        exit_code=0 if r.state == "finished" else 1,
        path=r.url,
    )
