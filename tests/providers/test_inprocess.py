"""The in-process runtimes (``sklearn``, ``onnx``) as providers: what they load and refuse to
load, their metadata, and the thread pool that keeps predictions off the event loop."""

from __future__ import annotations

import asyncio
import logging
import operator
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from classical import models
from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse, Tensor
from lockgate.errors import UpstreamTimeout
from lockgate.providers import registry
from lockgate.providers._inprocess import InProcessProvider, InProcessSettings, Runtime
from lockgate.providers.base import Provider


def provider(type_name: str, path: str, **settings: object) -> Provider:
    cls = registry.provider_class(type_name)
    assert cls is not None
    entry = cls.settings_model.model_validate({"type": type_name, "path": path, **settings})
    return cls(type_name, entry, None)  # type: ignore[arg-type]  # no HTTP session in-process


def rows(datatype: str = "FP64") -> Tensor:
    data = models().rows
    return Tensor("input-0", datatype, data.shape, data.ravel().tolist())


def test_the_runtimes_and_model_servers_offer_predictions_only() -> None:
    for type_name in ("sklearn", "onnx", "kserve", "tfserving", "torchserve", "mlflow"):
        cls = registry.provider_class(type_name)
        assert cls is not None and cls.capabilities == {"predict"}


async def test_a_skops_file_is_served_with_its_metadata() -> None:
    p = provider("sklearn", models().path("iris-v1.skops"))
    await p.start()
    try:
        metadata = await p.metadata("iris", 1.0)
        assert [(s.name, s.datatype, s.shape) for s in metadata.inputs] == [("input-0", "FP64", (-1, 4))]
        answer = await p.predict(PredictRequest("iris", (rows(),), ("predict_proba",)), 5.0)
        (proba,) = answer.outputs
        np.testing.assert_allclose(np.asarray(proba.data).reshape(proba.shape),
                                   models().v1.predict_proba(models().rows))
    finally:
        await p.aclose()


async def test_a_skops_file_with_untrusted_types_is_refused_unless_trusted(tmp_path: Path) -> None:
    x = np.arange(40, dtype=float).reshape(20, 2)
    pipeline = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    pipeline.fit(x, (x[:, 0] > 20).astype(int))
    skops.io.dump(pipeline, tmp_path / "neg.skops")
    refused = provider("sklearn", str(tmp_path / "neg.skops"))
    with pytest.raises(RuntimeError, match=r"does not trust: _operator\.neg; list them in trusted_types"):
        await refused.start()
    await refused.aclose()
    trusted = provider("sklearn", str(tmp_path / "neg.skops"), trusted_types=["_operator.neg"])
    await trusted.start()
    await trusted.aclose()


async def test_a_joblib_file_is_loaded_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    p = provider("sklearn", models().path("iris-v2.joblib"))
    with caplog.at_level(logging.WARNING, logger="lockgate"):
        await p.start()
    await p.aclose()
    assert "which executes code from the file" in caplog.text


async def test_a_missing_file_is_named(tmp_path: Path) -> None:
    p = provider("onnx", str(tmp_path / "nope.onnx"))
    with pytest.raises(RuntimeError, match=r"provider 'onnx': no model file at .*nope\.onnx"):
        await p.start()


async def test_another_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"")
    p = provider("sklearn", str(tmp_path / "model.bin"))
    with pytest.raises(RuntimeError, match=r"is not a \.skops, \.joblib or \.pkl file"):
        await p.start()
    await p.aclose()


async def test_onnx_metadata_comes_from_the_graph() -> None:
    p = provider("onnx", models().path("affine.onnx"))
    await p.start()
    metadata = await p.metadata("affine", 1.0)
    await p.aclose()
    assert [(s.name, s.datatype, s.shape) for s in (*metadata.inputs, *metadata.outputs)] == [
        ("x", "FP32", (-1, 3)), ("y", "FP32", (-1, 2))]


class Slow:
    """A runtime whose predictions take ``seconds`` and note the threads they ran on."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.metadata = ModelMetadata("slow", (), ())
        self.threads: set[str] = set()

    def predict(self, request: PredictRequest) -> PredictResponse:
        self.threads.add(threading.current_thread().name)
        time.sleep(self.seconds)
        return PredictResponse(())


class SlowProvider(InProcessProvider):
    runtime_to_load: Slow

    def load(self) -> Runtime:
        return self.runtime_to_load


async def started_slow(seconds: float, threads: int) -> tuple[SlowProvider, Slow]:
    settings = InProcessSettings(type="slow", path=__file__, threads=threads)
    p = SlowProvider("slow", settings, None)
    p.runtime_to_load = Slow(seconds)
    await p.start()
    return p, p.runtime_to_load


async def test_predictions_run_in_the_pool_side_by_side_and_the_loop_stays_free() -> None:
    p, runtime = await started_slow(0.3, threads=2)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await asyncio.gather(*(p.predict(PredictRequest("slow", ()), 5.0) for _ in range(2)))
    elapsed = time.perf_counter() - started
    ticker.cancel()
    await p.aclose()
    assert elapsed < 0.55  # two at once, not one after the other
    assert ticks >= 10  # the event loop went on meanwhile
    assert len(runtime.threads) == 2 and all(t.startswith("lockgate-slow") for t in runtime.threads)


async def test_a_prediction_over_its_timeout_is_an_upstream_timeout() -> None:
    p, _ = await started_slow(0.5, threads=1)
    with pytest.raises(UpstreamTimeout, match=r"longer than 0.05 s"):
        await p.predict(PredictRequest("slow", ()), 0.05)
    await p.aclose()
