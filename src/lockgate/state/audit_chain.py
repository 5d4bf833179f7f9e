"""The audit log's hash chain: what an entry's hash covers, and how a chain is checked.

Each entry carries ``prev_hash`` (the hash of the entry before it; ``GENESIS`` for the first)
and ``hash``, the SHA-256 of its canonical encoding: a JSON object of its fields (``seq``, ``ts``,
``actor``, ``action``, ``target``, ``detail``, ``prev_hash``) with sorted keys, no spaces and
UTF-8 text. Changing any field of any entry, deleting an entry from the middle or dropping the
newest ones (the chain head, kept in its own row, then names an entry that is not there) breaks
the chain at a place ``verify`` names. Pure functions, no I/O: the store writes and reads the rows.

The encoding is part of the stored data: changing it would make every existing chain fail
verification, so it must stay as it is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

GENESIS = "0" * 64
_FIELDS = ("seq", "ts", "actor", "action", "target", "detail", "prev_hash")


def normalise_detail(detail: Any) -> Any:
    """``detail`` as it reads back from the JSON column (tuples become lists, and so on), so
    that the hash written is the hash recomputed from the stored row."""
    return None if detail is None else json.loads(json.dumps(detail, default=str))


def entry_hash(entry: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of an entry's canonical encoding; ``entry`` has at least ``_FIELDS``."""
    canonical = json.dumps({f: entry[f] for f in _FIELDS}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking a chain: ``bad_seq`` is the first entry that does not hold
    (None when all do), ``reason`` says why."""

    entries: int
    bad_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.bad_seq is None and not self.reason


def verify(entries: Iterable[Mapping[str, Any]], head: Mapping[str, Any] | None) -> Verdict:
    """Checks ``entries`` (in ``seq`` order) link up from ``GENESIS`` and end at ``head`` (the
    chain-head row: ``seq`` and ``hash`` of the newest entry written)."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    for entry in entries:
        count += 1
        seq = int(entry["seq"])
        if seq != expected_seq:
            return Verdict(count, expected_seq, f"entry {expected_seq} is missing "
                                                f"(the next one found is {seq})")
        if entry["prev_hash"] != prev_hash:
            return Verdict(count, seq, "its prev_hash does not match the entry before it "
                                       "(an entry was removed or changed)")
        if entry_hash(entry) != entry["hash"]:
            return Verdict(count, seq, "its content does not match its hash (it was changed)")
        prev_hash, expected_seq = entry["hash"], seq + 1
    last_seq = expected_seq - 1
    head_seq, head_hash = (0, GENESIS) if head is None else (int(head["seq"]), head["hash"])
    if head_seq != last_seq or head_hash != prev_hash:
        return Verdict(count, last_seq + 1 if head_seq > last_seq else head_seq,
                       f"the chain head says {head_seq} entries, the log ends at {last_seq} "
                       "(entries were removed from the end, or the head was changed)")
    return Verdict(count)
