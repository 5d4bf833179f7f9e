"""Small field readers for request bodies: each checks one field's type and raises
``InvalidRequest`` naming the field (``where`` is the path of the enclosing object)."""

from __future__ import annotations

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


def loads_object(data: str) -> dict[str, Any]:
    """A JSON object from an event we only read for bookkeeping; anything else reads as empty."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
