"""What the providers of model servers without a V2 API share (TorchServe, MLflow): a JSON POST
to one URL, with the answer read as nested lists into tensors; neither server describes its
model's inputs, so their metadata says so (``described`` False) and requests go unchecked."""

from __future__ import annotations

from typing import Any

import orjson

from lockgate.core.tensors import ModelMetadata, Tensor, datatype_of, shape_of
from lockgate.errors import InvalidRequest
from lockgate.providers.base import Provider
from lockgate.providers.http import merge_headers, open_response, read_raw
from lockgate.wire.v2 import flatten


class RestModelProvider(Provider):
    platform = ""

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        return merge_headers(headers, self.config.headers)

    async def post(self, url: str, body: Any, timeout: float) -> Any:
        response = await open_response(self.session, url, body=orjson.dumps(body),
                                       headers=self.request_headers, timeout=timeout)
        return orjson.loads(await read_raw(response, timeout, self.limits.max_response_bytes))

    async def metadata(self, model: str, timeout: float) -> ModelMetadata:
        return ModelMetadata(name=model, inputs=(), outputs=(), platform=self.platform, described=False)


def tensor(name: str, nested: Any) -> Tensor:
    """A JSON answer's nested lists (or scalar) as a tensor, its datatype read from the values."""
    flat = flatten(nested)
    return Tensor(name, datatype_of(flat), shape_of(nested), flat)


def pick(named: dict[str, Any], wanted: tuple[str, ...]) -> tuple[Tensor, ...]:
    """The outputs asked for (all where none is), from an answer's outputs by name."""
    for name in wanted:
        if name not in named:
            raise InvalidRequest(f"output {name!r}: the model gave no such output "
                                 f"(it gave: {', '.join(named) or 'nothing'})")
    return tuple(tensor(name, named[name]) for name in wanted or tuple(named))
