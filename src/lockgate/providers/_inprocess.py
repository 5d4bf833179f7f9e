"""What the in-process model runtimes (``sklearn``, ``onnx``) share: a model file loaded at
start-up, off the event loop, and predictions run in a thread pool of ``threads`` threads, so
that one slow prediction never stalls the other requests the event loop serves.

The runtime itself (``Runtime``) is built by the provider's ``load`` in a pool thread; its
libraries (numpy, scikit-learn, onnxruntime) are imported there, never when the registry scans
the providers: a gateway without classical models never loads them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import Field

from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse
from lockgate.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from lockgate.providers._batching import Batcher
from lockgate.providers.base import Provider, ProviderSettings

log = logging.getLogger("lockgate")

DEFAULT_THREADS = min(4, os.cpu_count() or 1)


class InProcessSettings(ProviderSettings):
    path: str  # the model file; a relative path is relative to the working directory
    threads: int = Field(default=DEFAULT_THREADS, ge=1, le=256)  # predictions run at once
    # > 0: concurrent requests wait up to this long to run as one batch (``_batching``).
    batch_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    max_batch_rows: int = Field(default=256, ge=1)  # a batch this large runs at once


class Runtime(Protocol):
    """A loaded model: what it takes and gives, and one prediction (called in a pool thread;
    raises ``InvalidRequest`` for input the model refuses)."""

    metadata: ModelMetadata

    def predict(self, request: PredictRequest) -> PredictResponse: ...


class InProcessProvider(Provider):
    settings_model = InProcessSettings
    model_in_path = False

    def __init__(self, name: str, config: ProviderSettings, session: Any) -> None:
        super().__init__(name, config, session)
        assert isinstance(config, InProcessSettings)
        self.settings = config
        self._pool: ThreadPoolExecutor | None = None
        self._runtime: Runtime | None = None
        self._batcher = (Batcher(self._in_pool, config.batch_wait_ms / 1000, config.max_batch_rows)
                         if config.batch_wait_ms > 0 else None)

    def load(self) -> Runtime:
        """Loads the model file (in a pool thread, at start-up)."""
        raise NotImplementedError

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.settings.threads, thread_name_prefix=f"lockgate-{self.name}")
        loop = asyncio.get_running_loop()
        self._runtime = await loop.run_in_executor(self._pool, self._load)
        log.info("provider %s: loaded %s (%s), %d inference thread(s)", self.name, self.settings.path,
                 self.type_name, self.settings.threads)

    def _load(self) -> Runtime:
        if not os.path.isfile(self.settings.path):
            raise RuntimeError(f"provider {self.name!r}: no model file at {self.settings.path} "
                               f"(from {os.getcwd()})")
        return self.load()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise UpstreamError(f"the model of provider {self.name!r} is not loaded", status=503)
        return self._runtime

    async def metadata(self, model: str, timeout: float) -> ModelMetadata:
        return self.runtime.metadata

    async def predict(self, request: PredictRequest, timeout: float) -> PredictResponse:
        answer = self._batcher.predict(request) if self._batcher is not None else self._in_pool(request)
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            raise UpstreamTimeout(f"the prediction took longer than {timeout:g} s") from None

    def _in_pool(self, request: PredictRequest) -> asyncio.Future[PredictResponse]:
        return asyncio.get_running_loop().run_in_executor(self._pool, _predict, self.runtime, request)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _predict(runtime: Runtime, request: PredictRequest) -> PredictResponse:
    try:
        return runtime.predict(request)
    except InvalidRequest:
        raise
    except Exception as exc:  # the model's own failure: an upstream error, never a 500
        raise UpstreamError(f"the model failed: {type(exc).__name__}: {exc}", status=500,
                            retryable=False) from None


def missing_library(type_name: str, exc: ImportError) -> RuntimeError:
    return RuntimeError(f"provider type {type_name!r} needs {exc.name or 'a library'} "
                        "(pip install 'lockgate[ml]')")
