"""The V2 open inference protocol as clients speak it (``tritonclient``, KServe's and
MLServer's clients, raw HTTP): the model a path names, inference requests in JSON tensors or
with the binary tensor extension, and the check of a request against the model's metadata.

Every refusal is ``InvalidRequest`` naming the input and the reason (a shape, datatype or
data-length mismatch), rendered in the V2 error shape ``{"error": "..."}`` by the operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from lockgate.core.tensors import ModelMetadata, PredictRequest, PredictResponse, TensorSpec
from lockgate.errors import InvalidRequest, ModelNotFound
from lockgate.wire.v2 import request_from_json, response_json

PREFIX = "/v2/models/"
ACTIONS = ("infer", "ready")


@dataclass(frozen=True, slots=True)
class ModelPath:
    """What ``/v2/models/{name}[/versions/{version}][/{action}]`` names."""

    name: str
    version: str | None
    action: str | None  # "infer", "ready", or None for the metadata

    @property
    def model(self) -> str:
        """The name the router looks up: ``name`` or ``name@version``."""
        return self.name if self.version is None else f"{self.name}@{self.version}"


def model_path(path: str) -> ModelPath:
    """Reads a V2 model path; a model name may hold '/' (``openai/gpt-4o``)."""
    rest = path[len(PREFIX):] if path.startswith(PREFIX) else ""
    action = None
    head, _, last = rest.rpartition("/")
    if head and last in ACTIONS:
        rest, action = head, last
    name, marker, version = rest.rpartition("/versions/")
    if not marker:
        name, version = rest, ""
    if not name or (marker and not version) or "/" in version:
        raise ModelNotFound(f"no model is named by the path {path!r}")
    return ModelPath(name, version or None, action)


def split_binary(raw: bytes, header_length: bytes | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary data of a request that uses the binary tensor extension
    (``Inference-Header-Content-Length``); without the header, the whole body is JSON."""
    if header_length is None:
        return raw, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 <= length <= len(raw):
        raise InvalidRequest(f"Inference-Header-Content-Length {header_length.decode('latin-1')!r} "
                             f"does not fit a body of {len(raw)} bytes")
    return raw[:length], raw[length:]


def parse_infer(body: dict[str, Any], model: str, binary: bytes = b"") -> PredictRequest:
    try:
        return request_from_json(body, model, binary)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def check(request: PredictRequest, metadata: ModelMetadata) -> None:
    """Refuses a request the model cannot take, naming the input: an unknown or missing input,
    another datatype, another rank or size along a fixed axis; and an output it does not have.
    A model its server does not describe is not checked; nor is a side (inputs or outputs) it
    leaves empty, as Seldon MLServer does for a model whose settings declare none: no model
    takes nothing, so an empty list means "not declared", not "refuse every input"."""
    if not metadata.described:
        return
    if metadata.inputs:
        _check_inputs(request, metadata.inputs)
    known = {s.name for s in metadata.outputs}
    for name in request.outputs if known else ():
        if name not in known:
            raise InvalidRequest(f"output {name!r}: the model has no such output "
                                 f"(it gives: {_names(metadata.outputs)})")


def _check_inputs(request: PredictRequest, inputs: tuple[TensorSpec, ...]) -> None:
    specs = {s.name: s for s in inputs}
    for tensor in request.inputs:
        spec = specs.get(tensor.name)
        if spec is None:
            raise InvalidRequest(f"input {tensor.name!r}: the model has no such input "
                                 f"(it takes: {_names(inputs)})")
        if tensor.datatype != spec.datatype:
            raise InvalidRequest(f"input {tensor.name!r}: datatype {tensor.datatype} given, "
                                 f"the model takes {spec.datatype}")
        if not _shape_fits(tensor.shape, spec.shape):
            raise InvalidRequest(f"input {tensor.name!r}: shape {list(tensor.shape)} given, the model "
                                 f"takes {list(spec.shape)} (-1: any size)")
    missing = sorted(specs.keys() - {t.name for t in request.inputs})
    if missing:
        raise InvalidRequest(f"input {missing[0]!r} is missing (the model takes: {_names(inputs)})")


def _shape_fits(shape: tuple[int, ...], spec: tuple[int, ...]) -> bool:
    return len(shape) == len(spec) and all(s == -1 or s == d for d, s in zip(shape, spec, strict=True))


def _names(specs: tuple[TensorSpec, ...]) -> str:
    return ", ".join(s.name for s in specs) or "nothing"


def render(response: PredictResponse, model: str, version: str | None) -> bytes:
    return orjson.dumps(response_json(response, model, version))
