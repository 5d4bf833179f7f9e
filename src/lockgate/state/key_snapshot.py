"""The last stored keys and teams that were loaded, kept in a local file next to the record
spool, so that a gateway started while storage is down still knows its stored keys.

Keys are stored as SHA-256 digests only (as in storage); the secret itself is never written.
The key prefix is left out too: authentication does not need it. The file is replaced whole
(written to a temporary name, then renamed), so a reader sees the old or the new one, never a
mix, even with several workers writing it.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from lockgate.state.store import AuthSnapshot

FILE_NAME = "keys-snapshot.json"
_LEFT_OUT = ("key_prefix",)


def snapshot_path(spool_dir: str | Path) -> Path:
    return Path(spool_dir) / FILE_NAME


def save(path: Path, snapshot: AuthSnapshot) -> None:
    """Blocking (file I/O): call it in a thread."""
    # str(): row keys are str subclasses (SQLAlchemy's quoted names), which orjson refuses
    keys = [{str(k): v for k, v in key.items() if k not in _LEFT_OUT} for key in snapshot.keys]
    teams = [{str(k): v for k, v in team.items()} for team in snapshot.teams]
    data = orjson.dumps({"saved_at": time.time(), "teams": teams, "keys": keys}, default=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


def load(path: Path) -> AuthSnapshot | None:
    """The saved snapshot, or None when there is none (or it cannot be read). Its marker is
    empty: the first load from storage replaces it whole."""
    try:
        raw: dict[str, Any] = orjson.loads(path.read_bytes())
        return AuthSnapshot(marker=(), teams=list(raw["teams"]), keys=list(raw["keys"]))
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
