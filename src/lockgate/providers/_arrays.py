"""Canonical tensors to numpy arrays and back, for the in-process runtimes (imported only by
them: numpy is loaded where a model is)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lockgate.core.tensors import Tensor
from lockgate.errors import InvalidRequest

NUMPY_TYPES: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}


def to_array(tensor: Tensor) -> Any:
    dtype = np.dtype(NUMPY_TYPES[tensor.datatype])
    try:
        if isinstance(tensor.data, bytes) and tensor.datatype != "BYTES":
            return np.frombuffer(tensor.data, dtype=dtype.newbyteorder("<")).reshape(tensor.shape)
        return np.asarray(tensor.values(), dtype=dtype).reshape(tensor.shape)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidRequest(f"input {tensor.name!r}: {exc}") from None


def datatype_of(dtype: Any) -> str:
    kind = np.dtype(dtype)
    for name, numpy_type in NUMPY_TYPES.items():
        if kind == np.dtype(numpy_type):
            return name
    return "BYTES" if kind.kind in "OUS" else "FP64"


def from_array(name: str, value: Any) -> Tensor:
    array = np.asarray(value)
    datatype = datatype_of(array.dtype)
    if datatype == "BYTES":
        data: list[Any] = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
    elif datatype == "FP64" and array.dtype.kind not in "f":
        data = array.astype(np.float64).ravel().tolist()
    else:
        data = array.ravel().tolist()
    return Tensor(name, datatype, tuple(int(d) for d in array.shape), data)
