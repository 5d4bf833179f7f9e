"""Google AI Studio's Gemini API (the Generative Language API, ``v1beta``): chat, streams and
embeddings, translated from and to the canonical types of ``lockgate.core``.

Wire format (https://ai.google.dev/api): ``POST {root}/v1beta/models/{model}:generateContent``,
``:streamGenerateContent?alt=sse`` (SSE, one whole ``GenerateContentResponse`` per event) and
``:batchEmbedContents``; the key travels in ``x-goog-api-key``, as the google-genai SDK sends it.

Where Gemini differs from the canonical (OpenAI-like) shape:

* turns are ``contents`` of role ``user`` / ``model`` that must alternate, so consecutive turns
  of one role are merged; the system prompt is ``systemInstruction``;
* a tool result is a ``functionResponse`` part in a ``user`` turn, paired with its call by the
  function's *name* (ids are optional on the Developer API and not sent), and its ``response``
  must be a JSON object;
* tool parameters are an OpenAPI subset that rejects unknown JSON-Schema keys (``gemini_schema``);
* Gemini 3 models sign their function calls (``thoughtSignature``) and refuse a replayed call
  without its signature. Canonical tool calls have no room for it, so the provider keeps recent
  signatures by tool-call id (``SignatureCache``) and, for a call it never saw (another worker,
  another provider), sends the sentinel Google documents for that case.

Translation is done by the module-level functions, pure and testable without a server; the
``GeminiProvider`` class only does I/O.
"""

from __future__ import annotations

import mimetypes
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Mapping, MutableMapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
import orjson

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    Usage,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.core.lenient import as_object
from lockgate.errors import InvalidRequest, UpstreamError
from lockgate.providers._embed_batches import Batch, batches, gather_batches
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import drive, iter_sse, merge_headers, open_response
from lockgate.wire.sse import SSEEvent

JSON = dict[str, Any]

API_VERSION = "v1beta"
# batchEmbedContents takes at most 100 requests; OpenAI clients may send up to 2048 inputs.
EMBED_BATCH = 100
# Google's documented stand-in for a thought signature the client no longer has.
SKIP_SIGNATURE = "skip_thought_signature_validator"

_FILTERED = frozenset({
    "SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR",
})
_ROLES = {"user": "user", "assistant": "model", "tool": "user"}


# --- request ---------------------------------------------------------------------------------


def build_request(request: ChatRequest, signatures: Mapping[str, str] | None = None) -> JSON:
    """The ``generateContent`` body for ``request``. ``signatures`` maps tool-call ids to the
    thought signatures Gemini gave them, to be sent back with the replayed calls."""
    body: JSON = {"contents": build_contents(request, signatures or {})}
    system = request.system_text()
    if system:
        body["systemInstruction"] = {"parts": [{"text": system}]}
    if request.tools:
        body["tools"] = [{"functionDeclarations": [function_declaration(t) for t in request.tools]}]
    if request.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": tool_config(request.tool_choice)}
    config = generation_config(request)
    if config:
        body["generationConfig"] = config
    return body


def build_contents(request: ChatRequest, signatures: Mapping[str, str]) -> list[JSON]:
    """The alternating ``contents`` turns, with tool results named after their calls."""
    names: dict[str, str] = {}
    sign = _needs_signatures(request.model)
    turns: list[JSON] = []
    for message in request.messages:
        if message.role == "system":
            continue
        parts = _message_parts(message, names, signatures, sign)
        if not parts:
            continue  # Gemini rejects a turn without parts
        role = _ROLES[message.role]
        if turns and turns[-1]["role"] == role:
            turns[-1]["parts"].extend(parts)
        else:
            turns.append({"role": role, "parts": parts})
    return turns


def _message_parts(
    message: Message, names: dict[str, str], signatures: Mapping[str, str], sign: bool
) -> list[JSON]:
    if message.role == "tool":
        return [_function_response(message, names)]
    parts = [_content_part(p) for p in message.content if not _is_empty_text(p)]
    calls = [_function_call_part(c, signatures) for c in message.tool_calls]
    for call in message.tool_calls:
        names[call.id] = call.name
    if sign and calls and not any("thoughtSignature" in c for c in calls):
        calls[0]["thoughtSignature"] = SKIP_SIGNATURE
    return parts + calls


def _needs_signatures(model: str) -> bool:
    """Gemini 3 and later refuse a replayed function call without its thought signature."""
    match = re.match(r"(?:models/)?gemini-(\d+)", model)
    return match is not None and int(match.group(1)) >= 3


def _is_empty_text(part: TextPart | ImagePart) -> bool:
    return isinstance(part, TextPart) and not part.text


def _content_part(part: TextPart | ImagePart) -> JSON:
    if isinstance(part, TextPart):
        return {"text": part.text}
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type or "image/png", "data": part.data}}
    url = part.url or ""
    return {"fileData": {"mimeType": part.media_type or guess_mime_type(url), "fileUri": url}}


def guess_mime_type(url: str) -> str:
    """The image type a URL's path suggests; JPEG, the commonest, when it suggests none."""
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or "image/jpeg"


def _function_call_part(call: ToolCall, signatures: Mapping[str, str]) -> JSON:
    part: JSON = {"functionCall": {"name": call.name, "args": parse_arguments(call)}}
    signature = signatures.get(call.id)
    if signature:
        part["thoughtSignature"] = signature
    return part


def parse_arguments(call: ToolCall) -> JSON:
    """A call's JSON arguments text as the object Gemini wants (empty text: no arguments)."""
    if not call.arguments.strip():
        return {}
    try:
        args = orjson.loads(call.arguments)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not JSON") from None
    if not isinstance(args, dict):
        raise InvalidRequest(f"tool call {call.id!r} has arguments that are not a JSON object")
    return args


def _function_response(message: Message, names: Mapping[str, str]) -> JSON:
    name = message.name or names.get(message.tool_call_id or "")
    if not name:
        raise InvalidRequest(
            f"tool result {message.tool_call_id!r} answers no earlier tool call; "
            "Gemini needs the function's name"
        )
    return {"functionResponse": {"name": name, "response": tool_result_object(message.text())}}


def tool_result_object(text: str) -> JSON:
    """Gemini wants an object: a JSON object result is sent as is, anything else under
    ``output``, the key Google documents for a function's output."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"output": text}


def function_declaration(tool: Tool) -> JSON:
    declaration: JSON = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    parameters = gemini_schema(tool.parameters)
    # A parameterless function must omit ``parameters``: Gemini answers 400 to an OBJECT schema
    # whose ``properties`` is empty.
    if parameters.get("properties"):
        declaration["parameters"] = parameters
    return declaration


def tool_config(choice: ToolChoice) -> JSON:
    if choice.mode == "none":
        return {"mode": "NONE"}
    if choice.mode == "required":
        return {"mode": "ANY"}
    if choice.mode == "tool" and choice.name:
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": "AUTO"}


def generation_config(request: ChatRequest) -> JSON:
    fields = {
        "temperature": request.temperature,
        "topP": request.top_p,
        "topK": request.top_k,
        "maxOutputTokens": request.max_tokens,
        "seed": request.seed,
        "presencePenalty": request.presence_penalty,
        "frequencyPenalty": request.frequency_penalty,
        "stopSequences": request.stop or None,
    }
    config: JSON = {k: v for k, v in fields.items() if v is not None}
    # ``n`` is not forwarded: a ChatResponse carries one choice, more would be billed unseen.
    config.update(_response_format(request.response_format))
    return config


def _response_format(response_format: ResponseFormat | None) -> JSON:
    if response_format is None or response_format.type == "text":
        return {}
    if response_format.type == "json_schema" and response_format.schema is not None:
        # responseJsonSchema takes JSON Schema as clients write it (responseSchema would take
        # only the OpenAPI subset); it requires the JSON MIME type beside it.
        return {"responseMimeType": "application/json",
                "responseJsonSchema": response_format.schema}
    return {"responseMimeType": "application/json"}


# --- tool parameter schemas --------------------------------------------------------------------
# ``functionDeclarations[].parameters`` is Gemini's OpenAPI 3.0 subset, and the Developer API
# answers 400 ("Unknown name ... Cannot find field") to any other key, e.g. the
# ``additionalProperties``, ``$schema`` and ``strict`` that OpenAI-style tools carry. So the
# schema is rebuilt from the keys Gemini knows: ``$ref`` is inlined from ``$defs`` /
# ``definitions``, ``"type": [T, "null"]`` becomes ``nullable``, ``const`` a one-value enum,
# ``oneOf`` an ``anyOf``; what Gemini cannot express (other keys, string formats other than
# enum/date-time, non-string enums) is dropped rather than failing the whole request.

_SCHEMA_KEYS = frozenset({
    "type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
    "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
    "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum", "maximum",
})
_FORMATS = frozenset({"enum", "date-time", "int32", "int64", "float", "double"})


def gemini_schema(schema: Mapping[str, Any]) -> JSON:
    """``schema`` (JSON Schema) reduced to what Gemini's function parameters accept."""
    defs: JSON = {**as_object(schema.get("definitions")), **as_object(schema.get("$defs"))}
    return _clean_schema(schema, defs, frozenset())


def _clean_schema(node: Mapping[str, Any], defs: JSON, seen: frozenset[str]) -> JSON:
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        if name in seen or not isinstance(defs.get(name), dict):
            return {"type": "object"}  # a recursive type cannot be inlined
        node, seen = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}, seen | {name}
    node = _normalized(node)
    out: JSON = {}
    for key, value in node.items():
        if key in _SCHEMA_KEYS:
            cleaned = _clean_value(key, value, defs, seen)
            if cleaned is not None:
                out[key] = cleaned
    if isinstance(out.get("required"), list) and isinstance(out.get("properties"), dict):
        out["required"] = [n for n in out["required"] if n in out["properties"]]
    return out


def _clean_value(key: str, value: Any, defs: JSON, seen: frozenset[str]) -> Any:
    if key == "properties":
        return {n: _clean_schema(s, defs, seen) for n, s in as_object(value).items()
                if isinstance(s, dict)}
    if key == "items":
        return _clean_schema(value, defs, seen) if isinstance(value, dict) else None
    if key == "anyOf":
        return [_clean_schema(s, defs, seen) for s in value if isinstance(s, dict)] or None
    if key == "format":
        return value if value in _FORMATS else None
    if key == "enum":
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None
    return value


def _normalized(node: Mapping[str, Any]) -> JSON:
    """JSON-Schema spellings Gemini lacks, rewritten into ones it has."""
    out = dict(node)
    if "oneOf" in out and "anyOf" not in out:
        out["anyOf"] = out.pop("oneOf")
    types = out.get("type")
    if isinstance(types, list):
        kinds = [t for t in types if t != "null"]
        out.pop("type")
        if len(kinds) == 1:
            out["type"] = kinds[0]
        elif kinds:
            out["anyOf"] = [{"type": t} for t in kinds]
        if "null" in types:
            out["nullable"] = True
    if isinstance(out.get("anyOf"), list):
        _fold_null_branch(out)
    if isinstance(out.get("const"), str) and "enum" not in out:
        out["enum"] = [out["const"]]
    return out


def _fold_null_branch(out: JSON) -> None:
    branches = [b for b in out["anyOf"] if b != {"type": "null"}]
    if len(branches) == len(out["anyOf"]):
        return
    out["nullable"] = True
    if len(branches) == 1 and isinstance(branches[0], dict):
        del out["anyOf"]
        out.update({k: v for k, v in branches[0].items() if k not in out})
    else:
        out["anyOf"] = branches


# --- response ----------------------------------------------------------------------------------


def parse_response(
    data: JSON, model: str, signatures: MutableMapping[str, str] | None = None
) -> ChatResponse:
    """A ``GenerateContentResponse`` as a ``ChatResponse`` (the first candidate). The thought
    signatures of its function calls are stored in ``signatures`` by tool-call id."""
    candidate = _first_candidate(data)
    usage = parse_usage(data.get("usageMetadata"))
    response_id = str(data.get("responseId") or new_id())
    answer_model = str(data.get("modelVersion") or model)
    if candidate is None:
        # No candidate at all: the prompt itself was blocked (promptFeedback.blockReason).
        return ChatResponse(id=response_id, model=answer_model, content="",
                            finish_reason="content_filter", usage=usage, created=int(time.time()))
    texts: list[str] = []
    calls: list[ToolCall] = []
    for part in _parts(candidate):
        if "functionCall" in part:
            calls.append(_tool_call(part, signatures))
        elif isinstance(part.get("text"), str) and not part.get("thought"):
            texts.append(part["text"])
    content = "".join(texts) if texts or not calls else None
    finish = finish_reason(candidate.get("finishReason"), bool(calls))
    return ChatResponse(id=response_id, model=answer_model, content=content, tool_calls=calls,
                        finish_reason=finish, usage=usage, created=int(time.time()))


def _first_candidate(data: JSON) -> JSON | None:
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def _parts(candidate: JSON) -> list[JSON]:
    parts = as_object(candidate.get("content")).get("parts")
    return [p for p in parts if isinstance(p, dict)] if isinstance(parts, list) else []


def _tool_call(part: JSON, signatures: MutableMapping[str, str] | None) -> ToolCall:
    call = as_object(part.get("functionCall"))
    call_id = str(call.get("id") or f"call_{secrets.token_hex(12)}")
    signature = part.get("thoughtSignature")
    if signatures is not None and isinstance(signature, str):
        signatures[call_id] = signature
    arguments = orjson.dumps(call.get("args") or {}).decode()
    return ToolCall(id=call_id, name=str(call.get("name") or ""), arguments=arguments)


def finish_reason(reason: Any, has_tool_calls: bool) -> FinishReason:
    """Gemini's ``finishReason`` in canonical terms; a function call ends with STOP in Gemini
    but is ``tool_calls`` to clients."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def parse_usage(meta: Any) -> Usage:
    """``usageMetadata`` in canonical terms. Thinking tokens are billed as output, so they count
    in ``completion_tokens`` as OpenAI counts reasoning tokens; tokens of tool-use prompts
    (e.g. search results) are billed as input."""
    meta = as_object(meta)
    thoughts = _count(meta, "thoughtsTokenCount")
    return Usage(
        prompt_tokens=_count(meta, "promptTokenCount") + _count(meta, "toolUsePromptTokenCount"),
        completion_tokens=_count(meta, "candidatesTokenCount") + thoughts,
        cached_tokens=_count(meta, "cachedContentTokenCount"),
        reasoning_tokens=thoughts,
    )


def _count(meta: JSON, key: str) -> int:
    value = meta.get(key)
    return value if isinstance(value, int) else 0


def new_id() -> str:
    return f"gen-{secrets.token_hex(12)}"


def upstream_error(error: Any) -> UpstreamError:
    """An ``{"error": {"code", "message", "status"}}`` object met inside a stream."""
    error = as_object(error)
    code = error.get("code")
    status = code if isinstance(code, int) and 400 <= code <= 599 else 502
    message = error.get("message") or error.get("status") or "the upstream reported an error"
    return UpstreamError(str(message), status=status)


# --- stream ------------------------------------------------------------------------------------


class StreamParser:
    """Turns the chunks of ``streamGenerateContent?alt=sse`` into canonical stream events.

    Created per stream. Each SSE event is a whole ``GenerateContentResponse`` with the newest
    parts; ``finishReason`` comes with the last candidate chunk, and ``usageMetadata`` (running
    totals) with every chunk, so usage is held until ``close`` to report the final count.
    Gemini sends a function call whole, never in fragments: each becomes one ``ToolCallStart``
    and one ``ToolCallDelta`` carrying all its arguments.
    """

    def __init__(self, model: str, signatures: MutableMapping[str, str] | None = None) -> None:
        self.model = model
        self.signatures = signatures
        self._started = False
        self._finished = False
        self._calls = 0
        self._usage: JSON | None = None

    def feed(self, chunk: Any) -> list[StreamEvent]:
        """The events of one decoded chunk; an ``error`` chunk raises ``UpstreamError``."""
        if not isinstance(chunk, dict):
            raise UpstreamError("the upstream sent a stream event that is not a JSON object")
        if "error" in chunk:
            raise upstream_error(chunk["error"])
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(id=str(chunk.get("responseId") or new_id()),
                                      model=str(chunk.get("modelVersion") or self.model),
                                      created=int(time.time())))
        if isinstance(chunk.get("usageMetadata"), dict):
            self._usage = chunk["usageMetadata"]
        if not self._finished:
            events.extend(self._candidate_events(chunk))
        return events

    def close(self) -> list[StreamEvent]:
        """The closing events; a stream cut before its ``finishReason`` raises."""
        if not self._finished:
            raise UpstreamError("the Gemini stream ended early", retryable=False)
        return [UsageEvent(parse_usage(self._usage))] if self._usage is not None else []

    def _candidate_events(self, chunk: JSON) -> list[StreamEvent]:
        candidate = _first_candidate(chunk)
        if candidate is None:
            if as_object(chunk.get("promptFeedback")).get("blockReason"):
                self._finished = True
                return [StreamFinish("content_filter")]
            return []
        events: list[StreamEvent] = []
        for part in _parts(candidate):
            events.extend(self._part_events(part))
        reason = candidate.get("finishReason")
        if reason:
            self._finished = True
            events.append(StreamFinish(finish_reason(reason, self._calls > 0)))
        return events

    def _part_events(self, part: JSON) -> list[StreamEvent]:
        if "functionCall" in part:
            call = _tool_call(part, self.signatures)
            index, self._calls = self._calls, self._calls + 1
            return [ToolCallStart(index=index, id=call.id, name=call.name),
                    ToolCallDelta(index=index, arguments=call.arguments)]
        text = part.get("text")
        if isinstance(text, str) and text and not part.get("thought"):
            return [TextDelta(text)]
        return []


def stream_events(
    sse: AsyncIterator[SSEEvent], parser: StreamParser
) -> AsyncIterator[StreamEvent]:
    """Runs ``parser`` over an SSE stream as its events arrive."""

    def feed(event: SSEEvent) -> list[StreamEvent]:
        if not event.data:
            return []
        try:
            chunk = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamError("the upstream sent a stream event that is not JSON") from None
        return parser.feed(chunk)

    return drive(sse, feed, parser.close)


# --- embeddings --------------------------------------------------------------------------------


def model_path(model: str) -> str:
    """``models/{model}``, unless the id already names its collection (``tunedModels/x``)."""
    return model if "/" in model else f"models/{model}"


def build_embed_request(request: EmbeddingsRequest, inputs: Iterable[str]) -> JSON:
    name = model_path(request.model)
    requests: list[JSON] = []
    for text in inputs:
        item: JSON = {"model": name, "content": {"parts": [{"text": text}]}}
        if request.dimensions is not None:
            item["outputDimensionality"] = request.dimensions
        requests.append(item)
    return {"requests": requests}


def parse_embeddings(data: JSON) -> tuple[list[list[float]], int]:
    """The vectors of a ``batchEmbedContents`` answer, and its prompt tokens (0 where Gemini
    does not report them)."""
    embeddings = data.get("embeddings")
    if not isinstance(embeddings, list):
        raise UpstreamError("the upstream answered without embeddings", retryable=True)
    vectors = [list(as_object(e).get("values") or []) for e in embeddings]
    return vectors, _count(as_object(data.get("usageMetadata")), "promptTokenCount")


# --- the provider ------------------------------------------------------------------------------


class SignatureCache(OrderedDict[str, str]):
    """The thought signatures of recent function calls, by tool-call id; the oldest go first
    past ``size``. One per provider instance: a call replayed to another worker or replica
    misses, and is sent with the sentinel instead."""

    def __init__(self, size: int = 4096) -> None:
        super().__init__()
        self.size = size

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class GeminiProvider(Provider):
    type_name: ClassVar[str] = "gemini"
    default_base_url: ClassVar[str] = "https://generativelanguage.googleapis.com"
    api_key_env: ClassVar[str | None] = "GEMINI_API_KEY"
    default_model: ClassVar[str | None] = "gemini-2.5-flash"
    native_dialect: ClassVar[str | None] = None

    def __init__(self, name: str, config: ProviderSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        if self.api_key is None:
            # The google-genai SDK reads GOOGLE_API_KEY too.
            self.api_key = os.environ.get("GOOGLE_API_KEY")
        if self.api_key is not None:
            self.api_key = self.api_key.strip()
        self._signatures = SignatureCache()

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["x-goog-api-key"] = self.api_key
        return merge_headers(headers, self.config.headers)

    def url(self, model: str, method: str) -> str:
        """``{root}/v1beta/models/{model}:{method}``; a configured root that already ends in an
        API version keeps it."""
        root = self.base_url
        if not re.search(r"/v1(?:alpha|beta)?$", root):
            root = f"{root}/{API_VERSION}"
        return f"{root}/{model_path(model)}:{method}"

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        body = orjson.dumps(build_request(request, self._signatures))
        response = await open_response(self.session, self.url(request.model, "generateContent"),
                                       body=body, headers=self.headers(), timeout=timeout)
        data = await self.read_json(response, timeout)
        if not isinstance(data, dict):
            raise UpstreamError("the upstream answered with a JSON value that is not an object")
        return parse_response(data, request.model, self._signatures)

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        body = orjson.dumps(build_request(request, self._signatures))
        url = self.url(request.model, "streamGenerateContent") + "?alt=sse"
        response = await open_response(self.session, url, body=body, headers=self.headers(),
                                       timeout=timeout)
        parser = StreamParser(request.model, self._signatures)
        return stream_events(iter_sse(response, self.limits), parser)

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        return await gather_batches(request.model, (
            self._embed(request, texts, timeout) for texts in batches(request.inputs, EMBED_BATCH)))

    async def _embed(
        self, request: EmbeddingsRequest, inputs: list[str], timeout: float
    ) -> Batch:
        body = orjson.dumps(build_embed_request(request, inputs))
        response = await open_response(self.session, self.url(request.model, "batchEmbedContents"),
                                       body=body, headers=self.headers(), timeout=timeout)
        data = await self.read_json(response, timeout)
        if not isinstance(data, dict):
            raise UpstreamError("the upstream answered with a JSON value that is not an object")
        vectors, tokens = parse_embeddings(data)
        if len(vectors) != len(inputs):
            raise UpstreamError("the upstream answered a different number of embeddings")
        return vectors, tokens
