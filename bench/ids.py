"""Names made from configs: the config hash and the file-name slug of an architecture.

One source for both: a run's name (``bench.run``), a sweep's study name (``sweeps.study``), a report's setting
(``reports.collect``) and an efficiency file's name (``bench.efficiency``) are made here. Changing either renames
every existing run, study and file: the grid would no longer find completed runs, nor the sweeps their studies.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def config_hash(config: Any) -> str:
    """The first 8 hex digits of the SHA-1 of ``config`` as JSON, keys sorted (a value JSON cannot hold as its
    ``str()``): equal configs give equal hashes whatever their key order."""
    return hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:8]


def slug(text: str) -> str:
    """``text`` fit for a file name: ``:`` becomes ``-``, ``/`` becomes ``_`` (``mlp:1024-C`` -> ``mlp-1024-C``)."""
    return text.replace(":", "-").replace("/", "_")
