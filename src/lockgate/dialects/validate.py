"""Small field readers for request bodies: each checks one field's type and raises
``InvalidRequest`` naming the field (``where`` is the path of the enclosing object).

Below them, the same checks as a table for ``check_fields``: a dialect declares which check
each top-level field gets, and only the fields a body has are looked at (a handful of dict
lookups per request, on the relay path too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from lockgate.errors import InvalidRequest


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def req_str(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{_name(where, key)}: a non-empty string is required")
    return value


def opt_str(obj: dict[str, Any], key: str, where: str = "") -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{_name(where, key)}: must be a string")
    return value


def opt_bool(obj: dict[str, Any], key: str, where: str = "") -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise InvalidRequest(f"{_name(where, key)}: must be true or false")
    return value


def opt_int(obj: dict[str, Any], key: str, where: str = "", minimum: int | None = None) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{_name(where, key)}: must be an integer")
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{_name(where, key)}: must be at least {minimum}")
    return value


def opt_number(obj: dict[str, Any], key: str, where: str = "") -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidRequest(f"{_name(where, key)}: must be a number")
    return float(value)


def req_list(obj: dict[str, Any], key: str, where: str = "") -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list):
        raise InvalidRequest(f"{_name(where, key)}: an array is required")
    return value


def plain_turn(turn: Any, roles: frozenset[str], content_types: frozenset[object]) -> bool:
    """Whether a chat turn is an object with a known role and content of a usual type: three
    lookups, so that a dialect looks at a turn closely only when it is wrong. A role that is
    an object or array cannot be looked up in a set: that turn is not plain either."""
    try:
        return (type(turn) is dict and turn.get("role") in roles
                and type(turn.get("content")) in content_types)
    except TypeError:
        return False


def loads_object(data: str) -> dict[str, Any]:
    """A JSON object from an event we only read for bookkeeping; anything else reads as empty."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


# --- checks by table -------------------------------------------------------------------------

# A check returns what is wrong with a present, non-null value (None: nothing), or raises
# ``InvalidRequest`` itself where it looks inside the value.
Check = Callable[[Any], str | None]


def check_fields(body: dict[str, Any], checks: Mapping[str, Check]) -> None:
    for key, value in body.items():
        check = checks.get(key)
        if check is not None and value is not None:
            problem = check(value)
            if problem is not None:
                raise InvalidRequest(f"{key}: {problem}")


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def number(value: Any) -> str | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return None if ok else "must be a number"


def string(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be a string"


def obj(value: Any) -> str | None:
    return None if isinstance(value, dict) else "must be an object"


def array(value: Any) -> str | None:
    return None if isinstance(value, list) else "must be an array"


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def check(value: Any) -> str | None:
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if minimum is not None and value < minimum:
            return f"must be at least {minimum}"
        if maximum is not None and value > maximum:
            return f"must be at most {maximum}"
        return None

    return check


def strings(value: Any) -> str | None:
    """A string or an array of strings (OpenAI's ``stop``)."""
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        return None
    return "must be a string or an array of strings"
