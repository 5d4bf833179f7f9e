"""Canonical, I/O-free types for predictions (the V2 open inference protocol's vocabulary):
tensors, what a model takes and gives (its metadata), a prediction request and its answer.

A tensor's ``data`` is flat, in row-major order, with ``size(shape)`` items: a list of Python
values as JSON carries them, or ``bytes`` (little-endian, packed) where the client sent the
binary tensor extension; ``values()`` gives the list either way. An in-process runtime reads
the bytes without a copy.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The V2 datatypes and the ``array``/``struct`` code of one element ('' for BYTES: each item is
# length-prefixed, of its own size).
DATATYPES: Mapping[str, str] = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
    "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "FP16": "e", "FP32": "f", "FP64": "d", "BYTES": "",
}

INTEGER_TYPES = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"})
FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


def size(shape: Sequence[int]) -> int:
    return math.prod(shape)


@dataclass(frozen=True, slots=True)
class Tensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any] | bytes
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def values(self) -> list[Any]:
        """The elements as Python values, flat (JSON data as it is: not to be changed)."""
        if isinstance(self.data, bytes):
            return unpack(self.datatype, self.data)
        return self.data if isinstance(self.data, list) else list(self.data)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output a model declares; -1 in ``shape``: any size along that axis."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """What a model takes and gives. ``described`` False: the server does not say (TorchServe,
    MLflow), so requests go to it unchecked and it refuses what it cannot take."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str = ""
    versions: tuple[str, ...] = ()
    described: bool = True


@dataclass(frozen=True, slots=True)
class PredictRequest:
    """``model`` is the upstream model id; ``outputs`` the outputs asked for (empty: the
    model's default ones)."""

    model: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[str, ...] = ()
    version: str | None = None
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PredictResponse:
    outputs: tuple[Tensor, ...]
    id: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


def unpack(datatype: str, raw: bytes) -> list[Any]:
    """Binary tensor data (the V2 binary extension: little-endian, packed; BYTES items each
    after a 4-byte little-endian length) as Python values. Raises ``ValueError`` on a length
    that does not divide or a truncated item."""
    code = DATATYPES[datatype]
    if not code:
        return _unpack_bytes(raw)
    if code in ("?", "e"):
        width = struct.calcsize(code)
        if len(raw) % width:
            raise ValueError(f"{len(raw)} bytes are not a whole number of {datatype} items")
        return list(struct.unpack(f"<{len(raw) // width}{code}", raw))
    values = array(code)
    if len(raw) % values.itemsize:
        raise ValueError(f"{len(raw)} bytes are not a whole number of {datatype} items")
    values.frombytes(raw)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tolist()


def _unpack_bytes(raw: bytes) -> list[Any]:
    items: list[Any] = []
    at = 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise ValueError("a BYTES item is cut short")
        (length,) = struct.unpack_from("<I", raw, at)
        at += 4
        if at + length > len(raw):
            raise ValueError("a BYTES item is cut short")
        item = raw[at:at + length]
        at += length
        try:
            items.append(item.decode())
        except UnicodeDecodeError:
            items.append(item)
    return items


def count(datatype: str, data: Sequence[Any] | bytes) -> int:
    """How many elements ``data`` holds."""
    if not isinstance(data, bytes):
        return len(data)
    code = DATATYPES[datatype]
    return len(_unpack_bytes(data)) if not code else len(data) // struct.calcsize(code)


def nest(flat: Sequence[Any], shape: Sequence[int]) -> Any:
    """Flat row-major values as nested lists of ``shape`` (what row-oriented JSON APIs take)."""
    if not shape:
        return flat[0]
    values = list(flat)
    for dim in reversed(shape[1:]):
        values = [values[i:i + dim] for i in range(0, len(values), dim)] if dim else []
    return values


def shape_of(nested: Any) -> tuple[int, ...]:
    """The shape of nested lists (by their first items), and () for a scalar."""
    shape: list[int] = []
    while isinstance(nested, list):
        shape.append(len(nested))
        if not nested:
            break
        nested = nested[0]
    return tuple(shape)


def datatype_of(values: Sequence[Any]) -> str:
    """The datatype of JSON values read back without a declared one."""
    if all(type(v) is bool for v in values):
        return "BOOL"
    if all(type(v) is int for v in values):
        return "INT64"
    if all(type(v) in (int, float) for v in values):
        return "FP64"
    return "BYTES"
