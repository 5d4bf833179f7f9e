"""The local key snapshot: stored keys survive a restart while storage is down, as digests only."""

from __future__ import annotations

import stat
from pathlib import Path

from lockgate.pipeline.auth import digest
from lockgate.pipeline.keycache import principals
from lockgate.state import key_snapshot
from lockgate.state.store import AuthSnapshot

SECRET = "lg-snapshot-secret-0123456789"


def stored_snapshot() -> AuthSnapshot:
    team = {"id": "team_1", "name": "research", "models": ["gpt"], "rpm": 5, "tpm": None,
            "max_parallel": None, "budget_usd": 2.0, "budget_period": "monthly", "metadata": None,
            "created_at": 1.0, "updated_at": 1.0}
    key = {"id": "key_1", "name": "alice", "key_hash": digest(SECRET), "key_prefix": SECRET[:8],
           "team_id": "team_1", "expires_at": None, "revoked_at": None, "privacy": None,
           "models": None, "rpm": None, "tpm": None, "max_parallel": None, "budget_usd": None,
           "budget_period": "total", "metadata": {"owner": "a"}, "created_at": 1.0, "updated_at": 1.0}
    return AuthSnapshot(marker=(7,), teams=[team], keys=[key])


def test_a_saved_snapshot_loads_the_same_principals(tmp_path: Path) -> None:
    path = key_snapshot.snapshot_path(tmp_path / "spool")
    key_snapshot.save(path, stored_snapshot())
    loaded = key_snapshot.load(path)
    assert loaded is not None and loaded.marker == ()  # the first load from storage replaces it
    assert principals(loaded) == principals(stored_snapshot())


def test_the_snapshot_holds_no_secret_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    path = key_snapshot.snapshot_path(tmp_path)
    key_snapshot.save(path, stored_snapshot())
    text = path.read_text()
    assert SECRET[:8] not in text and SECRET not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [key_snapshot.FILE_NAME]  # no temporary left


def test_a_missing_or_unreadable_snapshot_is_none(tmp_path: Path) -> None:
    path = key_snapshot.snapshot_path(tmp_path)
    assert key_snapshot.load(path) is None
    path.write_bytes(b'{"keys": [')
    assert key_snapshot.load(path) is None
