"""Micro-batching of concurrent predictions to one in-process model: requests that fit run as
one prediction and each gets its own rows back; one that fails, fails alone."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from classical import models
from lockgate.core.tensors import PredictRequest, PredictResponse, Tensor
from lockgate.errors import InvalidRequest
from lockgate.providers._batching import merge, split
from lockgate.providers.base import Provider
from lockgate.providers.registry import provider_class


def request(rows: Any, rid: str | None = None, **extra: Any) -> PredictRequest:
    tensor = Tensor("input-0", "FP64", tuple(rows.shape), rows.ravel().tolist())
    return PredictRequest("iris", (tensor,), ("predict", "predict_proba"), id=rid, **extra)


def test_requests_merge_along_the_first_axis_and_split_back() -> None:
    a, b = np.arange(8.0).reshape(2, 4), np.arange(8.0, 20.0).reshape(3, 4)
    merged = merge([request(a, "a"), request(b, "b")])
    assert merged.inputs[0].shape == (5, 4) and merged.inputs[0].values() == list(range(20))
    out = PredictResponse((Tensor("p", "INT64", (5,), [0, 1, 2, 3, 4]),
                           Tensor("q", "FP64", (5, 2), list(range(10)))))
    first, second = split(out, [request(a, "a"), request(b, "b")]) or []
    assert (first.id, first.outputs[0].data, first.outputs[1].data) == ("a", [0, 1], [0, 1, 2, 3])
    assert (second.outputs[0].shape, second.outputs[1].data) == ((3,), [4, 5, 6, 7, 8, 9])
    assert split(PredictResponse((Tensor("s", "FP64", (1,), [1.0]),)), [request(a), request(b)]) is None


class Counting:
    def __init__(self, runtime: Any) -> None:
        self.runtime, self.metadata = runtime, runtime.metadata
        self.batches: list[int] = []

    def predict(self, request: PredictRequest) -> PredictResponse:
        self.batches.append(request.inputs[0].shape[0])
        answer: PredictResponse = self.runtime.predict(request)
        return answer


async def batching_provider(wait_ms: float) -> tuple[Provider, Counting]:
    cls = provider_class("sklearn")
    assert cls is not None
    settings = cls.settings_model.model_validate(
        {"type": "sklearn", "path": models().path("iris-v1.skops"), "batch_wait_ms": wait_ms, "threads": 2})
    provider = cls("iris", settings, None)  # type: ignore[arg-type]  # no HTTP session in-process
    await provider.start()
    counting = Counting(provider._runtime)  # type: ignore[attr-defined]
    provider._runtime = counting  # type: ignore[attr-defined]
    return provider, counting


async def test_concurrent_requests_run_as_one_batch_and_get_their_own_rows() -> None:
    provider, counting = await batching_provider(50)
    rows = models().rows
    parts = [rows[:1], rows[1:3], rows[3:4], rows[4:]]
    answers = await asyncio.gather(*(provider.predict(request(p, f"r{i}"), 5.0) for i, p in enumerate(parts)))
    await provider.aclose()
    assert counting.batches == [7]
    for i, (part, answer) in enumerate(zip(parts, answers, strict=True)):
        assert answer.id == f"r{i}"
        assert answer.outputs[0].values() == models().v1.predict(part).tolist()
        np.testing.assert_allclose(np.asarray(answer.outputs[1].values()).reshape(answer.outputs[1].shape),
                                   models().v1.predict_proba(part))


async def test_a_request_that_fails_in_a_batch_fails_alone() -> None:
    provider, counting = await batching_provider(50)
    good = request(models().rows[:2])
    bad = PredictRequest("iris", (Tensor("input-0", "FP64", (1, 4), [1.0, "x", 2.0, 3.0]),), ("predict",))
    fine, refused = await asyncio.gather(provider.predict(only_predict(good), 5.0),
                                         provider.predict(bad, 5.0), return_exceptions=True)
    await provider.aclose()
    assert isinstance(fine, PredictResponse) and fine.outputs[0].values() == [0, 0]
    assert isinstance(refused, InvalidRequest)
    assert counting.batches == [3, 2, 1]  # the batch failed; then each alone


def only_predict(r: PredictRequest) -> PredictRequest:
    return PredictRequest(r.model, r.inputs, ("predict",))


async def test_a_request_with_parameters_runs_alone() -> None:
    provider, counting = await batching_provider(1000)
    answer = await provider.predict(request(models().rows[:2], parameters={"x": 1}), 5.0)
    await provider.aclose()
    assert counting.batches == [2] and answer.outputs[0].values() == [0, 0]
