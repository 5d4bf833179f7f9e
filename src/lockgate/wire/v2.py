"""The V2 open inference protocol's JSON (KServe, Triton, Seldon MLServer), where the V2
dialect and the ``kserve`` provider share it: tensors, inference requests and responses, and
model metadata, to and from the canonical ``core.tensors`` types.

Readers raise ``ValueError`` naming the part that is wrong: the dialect turns it into a 400
for the client, and an upstream answer that cannot be read is an upstream failure (502).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lockgate.core.tensors import (
    DATATYPES,
    FLOAT_TYPES,
    INTEGER_TYPES,
    ModelMetadata,
    PredictRequest,
    PredictResponse,
    Tensor,
    TensorSpec,
    count,
    size,
)

# The binary tensor extension: the JSON header's length, sent as a request and response header.
HEADER_LENGTH = "inference-header-content-length"


def flatten(data: Any) -> list[Any]:
    """Nested lists (``[[1, 2], [3, 4]]``) as one flat list; a flat list as it is."""
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data  # flat (a list mixed in is caught by the value check)
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def tensor_from_json(raw: Any, where: str, binary: memoryview | None = None) -> tuple[Tensor, int]:
    """One tensor object, and how many bytes of ``binary`` (the binary extension's data after
    the JSON header) it took. ``where``: how errors name it (``input 'x'``)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: an object is required")
    name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'name' must be a non-empty string")
    where = f"{where.split(' ')[0]} {name!r}"
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ValueError(f"{where}: unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"{where}: 'shape' must be a list of non-negative integers")
    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ValueError(f"{where}: 'parameters' must be an object")
    taken = 0
    data: list[Any] | bytes
    binary_size = parameters.get("binary_data_size")
    if binary_size is not None:
        if binary is None or type(binary_size) is not int or not 0 <= binary_size <= len(binary):
            raise ValueError(f"{where}: binary_data_size {binary_size!r} does not match the "
                             "binary data sent")
        data, taken = bytes(binary[:binary_size]), binary_size
        parameters = {k: v for k, v in parameters.items() if k != "binary_data_size"}
    elif "data" in raw:
        data = flatten(raw["data"])
        _check_values(datatype, data, where)
    else:
        raise ValueError(f"{where}: 'data' is required")
    shape_t = tuple(shape)
    try:
        n = count(datatype, data)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if n != size(shape_t):
        raise ValueError(f"{where}: shape {list(shape_t)} holds {size(shape_t)} items, "
                         f"but {n} were sent")
    return Tensor(name, datatype, shape_t, data, parameters), taken


def _check_values(datatype: str, data: list[Any], where: str) -> None:
    types = set(map(type, data))  # at C speed: a 1 MB tensor is 262,144 values
    if datatype in INTEGER_TYPES:
        ok = types <= {int}
    elif datatype in FLOAT_TYPES:
        ok = types <= {int, float}
    elif datatype == "BOOL":
        ok = types <= {bool}
    else:
        ok = types <= {str}
    if not ok:
        raise ValueError(f"{where}: data holds values that are not {datatype}")


def tensor_json(tensor: Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                           "shape": list(tensor.shape), "data": tensor.values()}
    if tensor.parameters:
        out["parameters"] = dict(tensor.parameters)
    return out


def request_from_json(body: Mapping[str, Any], model: str, binary: bytes = b"") -> PredictRequest:
    """An inference request body (``inputs``, ``outputs``, ``id``, ``parameters``)."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ValueError("inputs: a non-empty list is required")
    view, tensors = memoryview(binary), []
    for i, raw in enumerate(inputs):
        tensor, taken = tensor_from_json(raw, f"input {i}", view)
        view = view[taken:]
        tensors.append(tensor)
    if len(view):
        raise ValueError(f"{len(view)} bytes of binary data belong to no input")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise ValueError("inputs: each input may be given once")
    return PredictRequest(model=model, inputs=tuple(tensors), outputs=_output_names(body.get("outputs")),
                          id=_optional_str(body, "id"), parameters=_parameters(body))


def _output_names(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("outputs: a list is required")
    names = []
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not name:
            raise ValueError(f"outputs.{i}: an object with a 'name' is required")
        names.append(name)
    return tuple(names)


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key}: a string is required")
    return value


def _parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    """The request's parameters, less the binary extension's: the gateway answers in JSON,
    which every client reads, and sends JSON upstream, which it reads itself."""
    value = body.get("parameters") or {}
    if not isinstance(value, dict):
        raise ValueError("parameters: an object is required")
    return {k: v for k, v in value.items() if k != "binary_data_output"}


def request_json(request: PredictRequest) -> dict[str, Any]:
    """An inference request as JSON tensors, for an upstream V2 server."""
    out: dict[str, Any] = {"inputs": [tensor_json(t) for t in request.inputs]}
    if request.outputs:
        out["outputs"] = [{"name": name} for name in request.outputs]
    if request.id is not None:
        out["id"] = request.id
    if request.parameters:
        out["parameters"] = dict(request.parameters)
    return out


def response_json(response: PredictResponse, model: str, version: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"model_name": model}
    if version is not None:
        out["model_version"] = version
    if response.id is not None:
        out["id"] = response.id
    if response.parameters:
        out["parameters"] = dict(response.parameters)
    out["outputs"] = [tensor_json(t) for t in response.outputs]
    return out


def response_from_json(body: Any) -> PredictResponse:
    if not isinstance(body, dict) or not isinstance(body.get("outputs"), list):
        raise ValueError("an inference response needs a list of outputs")
    outputs = tuple(tensor_from_json(raw, f"output {i}")[0] for i, raw in enumerate(body["outputs"]))
    rid = body.get("id")
    return PredictResponse(outputs=outputs, id=rid if isinstance(rid, str) else None,
                           parameters=body.get("parameters") or {})


def metadata_json(metadata: ModelMetadata, model: str, versions: tuple[str, ...]) -> dict[str, Any]:
    """Model metadata as V2 answers ``GET /v2/models/{name}``, under the client's name."""
    def spec(s: TensorSpec) -> dict[str, Any]:
        return {"name": s.name, "datatype": s.datatype, "shape": list(s.shape)}

    return {"name": model, "versions": list(versions), "platform": metadata.platform,
            "inputs": [spec(s) for s in metadata.inputs],
            "outputs": [spec(s) for s in metadata.outputs]}


def metadata_from_json(body: Any) -> ModelMetadata:
    if not isinstance(body, dict):
        raise ValueError("model metadata must be an object")

    def specs(key: str) -> tuple[TensorSpec, ...]:
        raw = body.get(key) or []
        return tuple(TensorSpec(str(s["name"]), str(s["datatype"]), tuple(int(d) for d in s["shape"]))
                     for s in raw)

    versions = body.get("versions") or []
    return ModelMetadata(name=str(body.get("name", "")), inputs=specs("inputs"), outputs=specs("outputs"),
                         platform=str(body.get("platform") or ""),
                         versions=tuple(str(v) for v in versions))
