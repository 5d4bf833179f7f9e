"""Micro-batching for the in-process runtimes: concurrent requests to one model that fit
together (the same inputs, datatypes and shapes past the first axis, the same outputs asked
for, no parameters) wait up to ``batch_wait_ms`` and run as one prediction, their rows stacked
along the first axis; each gets its own rows of every output back. A scikit-learn or ONNX
model pays most of its cost per call, not per row, so a batch of 32 rows costs little more
than one.

A batch whose outputs are not one row per input row, or that fails, is run again request by
request, so that one request's bad input fails only that request.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace

from lockgate.core.tensors import PredictRequest, PredictResponse, Tensor

Run = Callable[[PredictRequest], Awaitable[PredictResponse]]
Waiting = list[tuple[PredictRequest, "asyncio.Future[PredictResponse]"]]


class Batcher:
    def __init__(self, run: Run, wait_s: float, max_rows: int) -> None:
        self._run = run
        self._wait_s = wait_s
        self._max_rows = max_rows
        self._pending: dict[Hashable, Waiting] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def predict(self, request: PredictRequest) -> PredictResponse:
        key = _signature(request)
        if key is None:
            return await self._run(request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PredictResponse] = loop.create_future()
        waiting = self._pending.setdefault(key, [])
        waiting.append((request, future))
        if sum(_rows(r) for r, _ in waiting) >= self._max_rows:
            self._flush(key)
        elif len(waiting) == 1:
            loop.call_later(self._wait_s, self._flush, key)
        return await future

    def _flush(self, key: Hashable) -> None:
        waiting = self._pending.pop(key, None)
        if waiting:
            task = asyncio.get_running_loop().create_task(self._serve(waiting))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, waiting: Waiting) -> None:
        waiting = [(r, f) for r, f in waiting if not f.done()]  # a request that timed out is gone
        if len(waiting) > 1:
            try:
                parts = split(await self._run(merge([r for r, _ in waiting])), [r for r, _ in waiting])
            except Exception:  # each request is run again alone, and fails alone
                parts = None
            if parts is not None:
                for (_, future), part in zip(waiting, parts, strict=True):
                    if not future.done():
                        future.set_result(part)
                return
        for request, future in waiting:
            await self._serve_one(request, future)

    async def _serve_one(self, request: PredictRequest, future: asyncio.Future[PredictResponse]) -> None:
        try:
            response = await self._run(request)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(response)


def _signature(request: PredictRequest) -> Hashable | None:
    """What requests must share to run as one; None for a request that cannot be batched."""
    if request.parameters or not request.inputs:
        return None
    if any(not t.shape or t.shape[0] != request.inputs[0].shape[0] or t.parameters for t in request.inputs):
        return None
    inputs = tuple(sorted((t.name, t.datatype, t.shape[1:]) for t in request.inputs))
    return inputs, request.outputs


def _rows(request: PredictRequest) -> int:
    return request.inputs[0].shape[0]


def merge(requests: list[PredictRequest]) -> PredictRequest:
    """One request whose inputs hold every request's rows, in order."""
    first = requests[0]
    inputs = []
    for tensor in first.inputs:
        parts = [next(t for t in r.inputs if t.name == tensor.name) for r in requests]
        binary = tensor.datatype != "BYTES" and all(isinstance(p.data, bytes) for p in parts)
        data = (b"".join(p.data for p in parts if isinstance(p.data, bytes)) if binary
                else [v for p in parts for v in p.values()])
        rows = sum(p.shape[0] for p in parts)
        inputs.append(Tensor(tensor.name, tensor.datatype, (rows, *tensor.shape[1:]), data))
    return replace(first, inputs=tuple(inputs), id=None)


def split(response: PredictResponse, requests: list[PredictRequest]) -> list[PredictResponse] | None:
    """Each request's rows of every output; None where an output is not one row per input row."""
    total = sum(_rows(r) for r in requests)
    if any(not t.shape or t.shape[0] != total for t in response.outputs):
        return None
    outputs = [(t, t.values(), math.prod(t.shape[1:])) for t in response.outputs]
    parts, start = [], 0
    for request in requests:
        rows = _rows(request)
        tensors = tuple(Tensor(t.name, t.datatype, (rows, *t.shape[1:]),
                               values[start * width:(start + rows) * width])
                        for t, values, width in outputs)
        parts.append(PredictResponse(tensors, id=request.id))
        start += rows
    return parts
