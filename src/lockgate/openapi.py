"""``GET /openapi.json``: an OpenAPI 3.1 description of the client and admin endpoints.

Built from code once (``spec_bytes`` is cached) and served as the same bytes to every caller,
without auth: it describes the interface, which is public, and holds nothing of the config.
The client request bodies are described at the level a client or a fuzzer needs (required
fields and their types); the admin bodies and query strings come from the admin API's own
pydantic models (``admin.schemas``), so they cannot drift from what it accepts.
``tests/test_openapi.py`` checks the document is valid OpenAPI and names every mounted route.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson
from pydantic import BaseModel

from lockgate import __version__
from lockgate.asgi import Receive, Scope, Send, send_body

PATH = "/openapi.json"

_JSON = "application/json"
_Schema = dict[str, Any]


def _ref(name: str) -> _Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **properties: _Schema) -> _Schema:
    return {"type": "object", "required": required, "properties": properties}


_STR: _Schema = {"type": "string"}
_INT: _Schema = {"type": "integer"}
_NUM: _Schema = {"type": "number"}
_BOOL: _Schema = {"type": "boolean"}
_ANY_OBJ: _Schema = {"type": "object"}
_MODEL: _Schema = {"type": "string", "minLength": 1, "description": "a model name the gateway serves"}

# --- client request bodies ---------------------------------------------------------------------

_CLIENT_SCHEMAS: dict[str, _Schema] = {
    "ChatMessage": _obj(
        ["role"],
        role={"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
        content={"anyOf": [_STR, {"type": "array", "items": _ANY_OBJ}, {"type": "null"}]},
        name=_STR, tool_call_id=_STR, tool_calls={"type": "array", "items": _ANY_OBJ}),
    "ChatCompletionRequest": _obj(
        ["model", "messages"],
        model=_MODEL, messages={"type": "array", "items": _ref("ChatMessage"), "minItems": 1},
        stream=_BOOL, max_tokens=_INT, max_completion_tokens=_INT,
        temperature={"type": "number", "minimum": 0, "maximum": 2},
        top_p={"type": "number", "minimum": 0, "maximum": 1}, n=_INT,
        stop={"anyOf": [_STR, {"type": "array", "items": _STR}]},
        tools={"type": "array", "items": _ANY_OBJ}, tool_choice={"anyOf": [_STR, _ANY_OBJ]},
        response_format=_ANY_OBJ, user=_STR, seed=_INT,
        stream_options=_obj([], include_usage=_BOOL)),
    "AnthropicMessage": _obj(
        ["role", "content"],
        role={"type": "string", "enum": ["user", "assistant"]},
        content={"anyOf": [_STR, {"type": "array", "items": _ANY_OBJ}]}),
    "MessagesRequest": _obj(
        ["model", "max_tokens", "messages"],
        model=_MODEL, max_tokens={"type": "integer", "minimum": 1},
        messages={"type": "array", "items": _ref("AnthropicMessage"), "minItems": 1},
        system={"anyOf": [_STR, {"type": "array", "items": _ANY_OBJ}]}, stream=_BOOL,
        temperature={"type": "number", "minimum": 0, "maximum": 1},
        top_p=_NUM, top_k=_INT, stop_sequences={"type": "array", "items": _STR},
        tools={"type": "array", "items": _ANY_OBJ}, tool_choice=_ANY_OBJ, metadata=_ANY_OBJ),
    "CountTokensRequest": _obj(
        ["model", "messages"],
        model=_MODEL, messages={"type": "array", "items": _ref("AnthropicMessage"), "minItems": 1},
        system={"anyOf": [_STR, {"type": "array", "items": _ANY_OBJ}]},
        tools={"type": "array", "items": _ANY_OBJ}),
    "ResponsesRequest": _obj(
        ["model", "input"],
        model=_MODEL, input={"anyOf": [_STR, {"type": "array", "items": _ANY_OBJ}]},
        instructions=_STR, stream=_BOOL, store=_BOOL, previous_response_id=_STR,
        max_output_tokens=_INT, temperature=_NUM, tools={"type": "array", "items": _ANY_OBJ}),
    "CompletionRequest": _obj(
        ["model", "prompt"],
        model=_MODEL, prompt={"anyOf": [_STR, {"type": "array", "items": _STR}]},
        max_tokens=_INT, stream=_BOOL, temperature=_NUM,
        stop={"anyOf": [_STR, {"type": "array", "items": _STR}]},
        echo=_BOOL, suffix=_STR),
    "EmbeddingsRequest": _obj(
        ["model", "input"],
        model=_MODEL,
        input={"anyOf": [_STR, {"type": "array", "items": _STR},
                         {"type": "array", "items": _INT},
                         {"type": "array", "items": {"type": "array", "items": _INT}}]},
        encoding_format={"type": "string", "enum": ["float", "base64"]}, dimensions=_INT,
        user=_STR),
    "FeedbackRequest": _obj(
        ["request_id"],
        request_id={"type": "string", "minLength": 1, "description": "the x-request-id of a request"},
        score=_NUM, label=_STR),
    "InferenceTensor": _obj(
        ["name", "shape", "datatype", "data"],
        name=_STR, shape={"type": "array", "items": {"type": "integer", "minimum": 0}},
        datatype={"type": "string", "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64",
                                               "INT8", "INT16", "INT32", "INT64", "FP16",
                                               "FP32", "FP64", "BYTES"]},
        data={"type": "array"}, parameters=_ANY_OBJ),
    "InferenceRequest": _obj(
        ["inputs"],
        id=_STR, inputs={"type": "array", "items": _ref("InferenceTensor"), "minItems": 1},
        outputs={"type": "array", "items": _obj(["name"], name=_STR, parameters=_ANY_OBJ)},
        parameters=_ANY_OBJ),
    # --- errors, in each dialect's own shape ---
    "OpenAIError": _obj(
        ["error"], error=_obj(["message", "type"], message=_STR, type=_STR,
                              code={"type": ["string", "null"]}, param={"type": ["string", "null"]})),
    "AnthropicError": _obj(
        ["type", "error"], type={"const": "error"}, error=_obj(["type", "message"], type=_STR, message=_STR)),
    "V2Error": _obj(["error"], error=_STR),
}

# --- operations ----------------------------------------------------------------------------------

_SSE = "text/event-stream"
_CLIENT_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
_ADMIN_SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]


def _errors(schema: str, *statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/{schema}{s}"} for s in statuses}


_CLIENT_ERRORS = (400, 401, 403, 404, 413, 429, 502, 503, 504)


def _post(summary: str, body: str, *, error: str = "OpenAIError", streams: bool = False,
          tag: str = "client") -> dict[str, Any]:
    ok: dict[str, Any] = {_JSON: {"schema": _ANY_OBJ}}
    if streams:
        ok[_SSE] = {"schema": _STR}
    return {"post": {
        "summary": summary, "tags": [tag], "security": _CLIENT_SECURITY,
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref(body)}}},
        "responses": {"200": {"description": "the answer", "content": ok},
                      **_errors(error, *_CLIENT_ERRORS)},
    }}


def _get(summary: str, *, error: str = "OpenAIError", params: list[dict[str, Any]] | None = None,
         tag: str = "client", security: list[dict[str, list[str]]] | None = None,
         errors: tuple[int, ...] = (401, 404, 503)) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "tags": [tag],
        "responses": {"200": {"description": "found", "content": {_JSON: {"schema": _ANY_OBJ}}},
                      **_errors(error, *errors)},
    }
    if security is not None:
        operation["security"] = security
    if params:
        operation["parameters"] = params
    return operation


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _client_paths() -> dict[str, Any]:
    one_response = {
        "parameters": [_path_param("id")],
        "get": _get("a stored Responses answer", security=_CLIENT_SECURITY, errors=(400, 401, 404)),
        "delete": {**_get("delete a stored Responses answer", security=_CLIENT_SECURITY,
                          errors=(401, 404)), "summary": "delete a stored Responses answer"},
    }
    v2_model = [_path_param("name")]
    v2_version = [_path_param("name"), _path_param("version")]
    infer_errors = (400, 401, 403, 404, 413, 429, 502, 503, 504)
    infer = {"post": {
        "summary": "V2 inference (JSON tensors, or binary tensor data after the JSON header)",
        "tags": ["v2"], "security": _CLIENT_SECURITY,
        "requestBody": {"required": True, "content": {_JSON: {"schema": _ref("InferenceRequest")}}},
        "responses": {"200": {"description": "the outputs", "content": {_JSON: {"schema": _ANY_OBJ}}},
                      **_errors("V2Error", *infer_errors)},
    }}
    v2_get = _get("model metadata", error="V2Error", security=_CLIENT_SECURITY, tag="v2")
    v2_ready = _get("model readiness", error="V2Error", security=_CLIENT_SECURITY, tag="v2")
    return {
        "/v1/chat/completions": _post("OpenAI Chat Completions", "ChatCompletionRequest", streams=True),
        "/v1/messages": _post("Anthropic Messages", "MessagesRequest", error="AnthropicError", streams=True),
        "/v1/messages/count_tokens": _post("Anthropic token count", "CountTokensRequest",
                                           error="AnthropicError"),
        "/v1/responses": _post("OpenAI Responses", "ResponsesRequest", streams=True),
        "/v1/responses/{id}": one_response,
        "/v1/completions": _post("OpenAI legacy Completions", "CompletionRequest", streams=True),
        "/v1/embeddings": _post("OpenAI Embeddings", "EmbeddingsRequest"),
        "/v1/models": {"get": _get("the models this key may use", security=_CLIENT_SECURITY,
                                   errors=(401,))},
        "/v1/models/{id}": {"parameters": [_path_param("id")],
                            "get": _get("one model", security=_CLIENT_SECURITY, errors=(401, 404))},
        "/v1/feedback": _post("feedback on a request, for experiments", "FeedbackRequest"),
        "/v2": {"get": _get("V2 server metadata", tag="v2", security=[], errors=())},
        "/v2/health/live": {"get": _get("V2 liveness", tag="v2", security=[], errors=())},
        "/v2/health/ready": {"get": _get("V2 readiness", tag="v2", security=[], errors=(503,))},
        "/v2/models/{name}": {"parameters": v2_model, "get": v2_get},
        "/v2/models/{name}/ready": {"parameters": v2_model, "get": v2_ready},
        "/v2/models/{name}/infer": {"parameters": v2_model, **infer},
        "/v2/models/{name}/versions/{version}": {"parameters": v2_version, "get": v2_get},
        "/v2/models/{name}/versions/{version}/ready": {"parameters": v2_version, "get": v2_ready},
        "/v2/models/{name}/versions/{version}/infer": {"parameters": v2_version, **infer},
        "/healthz": {"get": {**_get("liveness", security=[], errors=()), "tags": ["operations"]}},
        "/readyz": {"get": {**_get("readiness: storage and Redis usable", security=[], errors=()),
                            "tags": ["operations"],
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "not ready, naming what is down"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (the master key when metrics_auth)",
                             "tags": ["operations"], "security": [{}, {"bearer": []}],
                             "responses": {"200": {"description": "metrics",
                                                   "content": {"text/plain": {"schema": _STR}}},
                                           "401": {"description": "metrics_auth and no master key"}}}},
        PATH: {"get": {"summary": "this document", "tags": ["operations"], "security": [],
                       "responses": {"200": {"description": "OpenAPI 3.1",
                                             "content": {_JSON: {"schema": _ANY_OBJ}}}}}},
    }


# --- admin ------------------------------------------------------------------------------------


def _admin_paths(schemas: dict[str, _Schema]) -> dict[str, Any]:
    from lockgate.admin import schemas as admin  # the admin API's own models

    def body(model: type[BaseModel]) -> dict[str, Any]:
        schemas[model.__name__] = _model_schema(model, schemas)
        return {"required": True, "content": {_JSON: {"schema": _ref(model.__name__)}}}

    def query(model: type[BaseModel]) -> list[dict[str, Any]]:
        schema = _model_schema(model, schemas)
        required = set(schema.get("required", []))
        return [{"name": name, "in": "query", "required": name in required,
                 "schema": _query_schema(name, prop)}
                for name, prop in schema.get("properties", {}).items()]

    def op(summary: str, ok: int = 200, errors: tuple[int, ...] = (400, 401, 404),
           **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "tags": ["admin"], "security": _ADMIN_SECURITY, **extra,
                "responses": {str(ok): {"description": "done", "content": {_JSON: {"schema": _ANY_OBJ}}},
                              **_errors("OpenAIError", *errors)}}

    paths: dict[str, Any] = {}
    for noun, create, update in (("keys", admin.KeyCreate, admin.KeyUpdate),
                                 ("teams", admin.TeamCreate, admin.TeamUpdate)):
        paths[f"/admin/{noun}"] = {
            "get": op(f"list {noun}", errors=(401,)),
            "post": op(f"create one of the {noun}", ok=201, errors=(400, 401, 409),
                       requestBody=body(create)),
        }
        paths[f"/admin/{noun}/{{id}}"] = {
            "parameters": [_path_param("id")],
            "get": op(f"one of the {noun}", errors=(401, 404)),
            "patch": op(f"change one of the {noun}", errors=(400, 401, 404, 409), requestBody=body(update)),
            "delete": op(f"{'revoke' if noun == 'keys' else 'delete'} one of the {noun}",
                         errors=(401, 404, 409)),
        }
    paths["/admin/usage"] = {"get": op("spend and tokens, grouped", parameters=query(admin.UsageParams))}
    paths["/admin/logs"] = {
        "get": op("request records, newest first", parameters=query(admin.LogParams)),
        "delete": op("erase an end user's records", parameters=query(admin.EraseParams)),
    }
    paths["/admin/logs/{request_id}"] = {"parameters": [_path_param("request_id")],
                                         "get": op("one request's record", errors=(401, 404))}
    paths["/admin/audit"] = {"get": op("the audit log, newest first", parameters=query(admin.AuditParams))}
    paths["/admin/experiments"] = {"get": op("every experiment's state", errors=(401, 404))}
    one = [_path_param("name")]
    paths["/admin/experiments/{name}"] = {"parameters": one, "get": op("one experiment's analysis",
                                                                        errors=(401, 404))}
    for action in ("promote", "stop"):
        paths[f"/admin/experiments/{{name}}/{action}"] = {
            "parameters": one, "post": op(f"{action} an experiment", errors=(400, 401, 404, 409))}
    return paths


def _model_schema(model: type[BaseModel], schemas: dict[str, _Schema]) -> _Schema:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(schema.pop("$defs", {}))
    return schema


def _query_schema(name: str, prop: _Schema) -> _Schema:
    """A query parameter's schema: pydantic's, minus what cannot be in a query string."""
    variants = [v for v in prop.get("anyOf", [prop]) if v.get("type") not in ("null", "array")]
    if len(variants) == 1:
        return {k: v for k, v in variants[0].items() if k != "title"}
    return {"type": "string"}


def build_spec() -> dict[str, Any]:
    schemas = dict(_CLIENT_SCHEMAS)
    paths = {**_client_paths(), **_admin_paths(schemas)}
    responses = {}
    for name in ("OpenAIError", "AnthropicError", "V2Error"):
        for status in (400, 401, 403, 404, 409, 413, 429, 502, 503, 504):
            responses[f"{name}{status}"] = {
                "description": f"an error ({status})",
                "content": {_JSON: {"schema": _ref(name)}},
            }
    return {
        "openapi": "3.1.0",
        "info": {"title": "lockgate", "version": __version__,
                 "description": "An AI model gateway: OpenAI, Anthropic and V2 inference "
                                "endpoints in front of many providers, and its admin API."},
        "security": _CLIENT_SECURITY,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a lockgate key; the master key for /admin"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                           "description": "a lockgate key, as the Anthropic SDK sends it"},
            },
            "schemas": schemas,
            "responses": responses,
        },
    }


@cache
def spec_bytes() -> bytes:
    return orjson.dumps(build_spec())


async def serve_spec(scope: Scope, receive: Receive, send: Send) -> None:
    """The document, the same cached bytes for every request."""
    await send_body(send, 200, spec_bytes(), [])
