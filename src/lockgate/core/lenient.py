"""Lenient readers for JSON the gateway did not write (upstream answers, their stream events):
a field of the wrong type reads as absent, because a provider that bends its own format a
little must not fail an answer the client can still use. Dialects and providers both read this
way, so the one copy lives here, below both.
"""

from __future__ import annotations

from typing import Any


def as_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one (so ``.get`` chains need no checks)."""
    return value if isinstance(value, dict) else {}


def integer(value: Any, default: int) -> int:
    """``value`` if it is a JSON integer, else ``default``. A boolean is no integer here,
    although Python counts it as one."""
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# The two defaults differ on purpose: a count that is missing counts nothing (0), while an index
# that is missing must match no block at all, and -1 is never a real block's index.


def token_count(value: Any) -> int:
    """A token count; 0 where the upstream left it out or sent something else."""
    return integer(value, 0)


def block_index(value: Any) -> int:
    """A stream's block index; -1 (no block) where the upstream left it out. Read once per
    stream event, so it is ``integer(value, -1)`` written out, without the second call."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
