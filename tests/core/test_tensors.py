"""Binary tensor data (the V2 binary extension) read into Python values, for every datatype."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from lockgate.core.tensors import DATATYPES, Tensor, count, unpack

NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
         "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
         "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


@pytest.mark.parametrize("datatype", sorted(NUMPY))
def test_every_fixed_size_datatype_reads_as_numpy_wrote_it(datatype: str) -> None:
    values: Any = np.array([0, 1, 0, 1, 1] if datatype == "BOOL" else [0, 1, 2, 3, 100],
                      dtype=NUMPY[datatype])
    raw = values.astype(values.dtype.newbyteorder("<")).tobytes()
    assert unpack(datatype, raw) == values.tolist()
    assert count(datatype, raw) == 5
    assert Tensor("t", datatype, (5,), raw).values() == values.tolist()


def test_bytes_items_are_length_prefixed() -> None:
    raw = b"".join(struct.pack("<I", len(item)) + item for item in (b"ab", b"", "é".encode(), b"\xff"))
    assert unpack("BYTES", raw) == ["ab", "", "é", b"\xff"]
    assert count("BYTES", raw) == 4


@pytest.mark.parametrize(("datatype", "raw"), [
    ("INT32", b"\x00\x00\x00"), ("FP16", b"\x00"), ("BYTES", b"\x05\x00\x00\x00ab"), ("BYTES", b"\x01")])
def test_data_that_does_not_divide_is_refused(datatype: str, raw: bytes) -> None:
    with pytest.raises(ValueError):
        unpack(datatype, raw)


def test_every_datatype_is_known() -> None:
    assert set(DATATYPES) == {*NUMPY, "BYTES"}


def test_json_data_is_a_list_already() -> None:
    data: list[Any] = [1.5, 2.5]
    assert Tensor("t", "FP64", (2,), data).values() == data
