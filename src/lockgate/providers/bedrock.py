"""AWS Bedrock Runtime: chat through the Converse / ConverseStream API, embeddings through
InvokeModel (Titan and Cohere embedding models).

Wire format (Bedrock API reference, ``bedrock-runtime`` 2023-09-30):

* ``POST {root}/model/{modelId}/converse`` and ``/converse-stream``, the model id
  percent-encoded as one path segment (``anthropic.claude-3-5-sonnet-20241022-v2%3A0``, an
  inference profile ``us.anthropic...``, or an ARN with its ``/`` encoded), exactly as boto3
  sends it; the default root is ``https://bedrock-runtime.{region}.amazonaws.com``.
* Requests are signed with SigV4 (service ``bedrock``) by botocore's own signer, with the
  config's keys or botocore's default credential chain; a Bedrock API key (``api_key``, or
  ``AWS_BEARER_TOKEN_BEDROCK`` as botocore reads it) is sent as a bearer token instead
  (``_aws_auth``).
* ConverseStream answers in the binary AWS event-stream format (``_eventstream``); its events
  are ``messageStart``, ``contentBlockStart`` (a tool call's id and name), ``contentBlockDelta``
  (text, or a fragment of a tool call's JSON input), ``contentBlockStop``, ``messageStop``
  (the stop reason) and ``metadata`` (usage), or an exception message (``throttlingException``
  ...) that fails the stream.

Anthropic, Llama, Mistral, Nova and the other chat models all speak Converse, so one encoding
serves them. Where the families differ (see ``_family_fields``): ``top_k`` exists only as a
model-specific field (Anthropic's ``top_k``, Nova's ``inferenceConfig.topK``; other models
drop it, as a sampling hint), and Claude models refuse ``temperature`` with ``top_p`` and can
report the matched stop sequence. Bedrock takes images inline only: an image URL is refused.

Translation is done by module-level functions, pure and testable with plain values; the
``BedrockProvider`` class only adds credentials, signing and HTTP.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from lockgate.core.chat import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    FinishReason,
    ImagePart,
    Message,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
)
from lockgate.core.embeddings import EmbeddingsRequest, EmbeddingsResponse
from lockgate.core.lenient import as_object, block_index, token_count
from lockgate.errors import (
    InvalidRequest,
    UpstreamError,
)
from lockgate.providers._aws_auth import AwsSettings, endpoint_url, make_auth, resolve_region
from lockgate.providers._embed_batches import Batch, batches, gather_batches
from lockgate.providers._eventstream import EventMessage, EventStreamDecoder
from lockgate.providers.anthropic import alternating_turns, system_text
from lockgate.providers.base import Provider, ProviderSettings
from lockgate.providers.http import (
    drive,
    error_message,
    iter_chunks,
    merge_headers,
    open_response,
    retry_after_seconds,
)
from lockgate.wire.anthropic import compact_json, parse_arguments

JSON = dict[str, Any]

# Cross-region inference profiles prefix a model id with a geography: ``us.anthropic.claude...``
_GEOGRAPHIES = frozenset({"us", "us-gov", "eu", "apac", "global", "jp", "au", "ca"})
_IMAGE_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg",
                  "image/gif": "gif", "image/webp": "webp"}

FINISH_FROM_STOP_REASON: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

# Modelled stream exceptions and the HTTP status each stands for in the API model.
STATUS_FROM_EXCEPTION = {
    "throttlingException": 429,
    "modelNotReadyException": 429,
    "validationException": 400,
    "modelStreamErrorException": 424,
    "modelTimeoutException": 408,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}


# --- model families ----------------------------------------------------------------------------


def model_family(model_id: str) -> str:
    """The vendor a Bedrock model id names (``anthropic``, ``meta``, ``mistral``, ``amazon``,
    ``cohere`` ...), through inference-profile prefixes and ARNs; "" when the id does not say
    (a provisioned-throughput or application-inference-profile ARN)."""
    name = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    parts = name.split(".")
    if len(parts) > 2 and parts[0] in _GEOGRAPHIES:
        parts = parts[1:]
    return parts[0] if len(parts) > 1 else ""


def model_path(model_id: str, operation: str) -> str:
    """``/model/{modelId}/{operation}``, the id encoded as one segment, as boto3 encodes it."""
    return f"/model/{quote(model_id, safe='')}/{operation}"


# --- request -----------------------------------------------------------------------------------


def encode_request(request: ChatRequest) -> JSON:
    """The Converse body for ``request`` (the model id travels in the path). Parameters
    Converse lacks (seed, penalties, user) are hints and are dropped; ``n`` > 1 is refused."""
    if request.n is not None and request.n > 1:
        raise InvalidRequest("n: provider type 'bedrock' returns a single choice")
    family = model_family(request.model)
    body: JSON = {"messages": encode_messages(request.messages)}
    # JSON mode as an instruction: Converse's structured output (outputConfig) exists only on a
    # few models, an instruction works on all of them.
    system = system_text(request)
    if system:
        body["system"] = [{"text": system}]
    inference = _inference_config(request, family)
    if inference:
        body["inferenceConfig"] = inference
    tool_config = encode_tool_config(request, body["messages"])
    if tool_config is not None:
        body["toolConfig"] = tool_config
    body.update(_family_fields(request, family))
    return body


def _inference_config(request: ChatRequest, family: str) -> JSON:
    config: JSON = {}
    if request.max_tokens is not None:
        config["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        # Bedrock's chat models take 0..1 where OpenAI's range is 0..2; the top of one is the
        # top of the other.
        config["temperature"] = min(max(request.temperature, 0.0), 1.0)
    if request.top_p is not None and not (family == "anthropic" and "temperature" in config):
        # Recent Claude models refuse temperature and top_p together: temperature wins.
        config["topP"] = request.top_p
    if request.stop:
        config["stopSequences"] = list(request.stop)
    return config


def _family_fields(request: ChatRequest, family: str) -> JSON:
    """What only some model families take, through ``additionalModelRequestFields``."""
    fields: JSON = {}
    if request.top_k is not None and family == "anthropic":
        fields["additionalModelRequestFields"] = {"top_k": request.top_k}
    elif request.top_k is not None and family == "amazon" and "nova-" in request.model:
        fields["additionalModelRequestFields"] = {"inferenceConfig": {"topK": request.top_k}}
    if request.stop and family == "anthropic":
        # Claude reports which stop sequence matched, when asked for it.
        fields["additionalModelResponseFieldPaths"] = ["/stop_sequence"]
    return fields


def encode_messages(messages: list[Message]) -> list[JSON]:
    """Canonical messages as Converse turns. Converse wants user and assistant turns in
    alternation and refuses empty content, so tool results join the user turn, consecutive
    turns of one role are merged, empty messages are skipped, and (as Claude requires) tool
    results lead their turn."""
    return alternating_turns(messages, _encode_blocks, lambda block: "toolResult" in block)


def _encode_blocks(message: Message) -> list[JSON]:
    if message.role == "tool":
        return [_tool_result(message)]
    blocks = _encode_parts(message.content)
    blocks.extend(
        {"toolUse": {"toolUseId": c.id, "name": c.name, "input": parse_arguments(c.arguments)}}
        for c in message.tool_calls
    )
    return blocks


def _tool_result(message: Message) -> JSON:
    # Sent as text, which every family takes (``json`` content is not universal); the
    # canonical form has no error flag, so ``status`` (a Claude-only field) is left out.
    return {"toolResult": {"toolUseId": message.tool_call_id or "",
                           "content": _encode_parts(message.content)}}


def _encode_parts(parts: list[ContentPart]) -> list[JSON]:
    blocks: list[JSON] = []
    for part in parts:
        if isinstance(part, ImagePart):
            blocks.append(encode_image(part))
        elif part.text.strip():  # Converse refuses blank text blocks
            blocks.append({"text": part.text})
    return blocks


def encode_image(image: ImagePart) -> JSON:
    """An inline image block; Bedrock cannot fetch URLs, and the gateway does not fetch them
    on a client's behalf."""
    if image.data is None:
        raise InvalidRequest(
            "image URLs: provider type 'bedrock' takes images inline only; send the image as a "
            "base64 data: URL instead of a link"
        )
    media_type = (image.media_type or "image/png").lower()
    image_format = _IMAGE_FORMATS.get(media_type)
    if image_format is None:
        raise InvalidRequest(f"provider type 'bedrock' does not take {media_type} images "
                             "(png, jpeg, gif and webp only)")
    return {"image": {"format": image_format, "source": {"bytes": image.data}}}


def encode_tool_config(request: ChatRequest, turns: list[JSON]) -> JSON | None:
    """``toolConfig``. Converse has no "none" choice, and refuses tool blocks in the history
    without a ``toolConfig``: so "none" sends no tools unless the history holds tool blocks,
    and a history with tool blocks but no tools declares the tools it names (schema-free)."""
    mode = request.tool_choice.mode if request.tool_choice is not None else "auto"
    history = _tools_in_history(turns)
    if mode == "none" and not history:
        return None
    tools = [_encode_tool(t) for t in request.tools]
    if not tools:
        tools = [_encode_tool(Tool(name)) for name in history]
    if not tools:
        return None
    config: JSON = {"tools": tools}
    choice = request.tool_choice
    if choice is not None and choice.mode == "required":
        config["toolChoice"] = {"any": {}}
    elif choice is not None and choice.mode == "tool" and choice.name:
        config["toolChoice"] = {"tool": {"name": choice.name}}
    elif choice is not None and choice.mode == "auto":
        config["toolChoice"] = {"auto": {}}
    return config


def _tools_in_history(turns: list[JSON]) -> list[str]:
    """The names of the tools called in the history, in order of first use."""
    names = {b["toolUse"]["name"]: None for t in turns for b in t["content"] if "toolUse" in b}
    return list(names)


def _encode_tool(tool: Tool) -> JSON:
    spec: JSON = {"name": tool.name, "inputSchema": {"json": tool.parameters}}
    if tool.description:
        spec["description"] = tool.description
    return {"toolSpec": spec}


# --- answer ------------------------------------------------------------------------------------


def decode_response(data: Any, model: str, response_id: str) -> ChatResponse:
    """A Converse response as a ``ChatResponse``. Converse answers carry no id and no model:
    the id is the request's ``x-amzn-requestid``, the model the one asked for."""
    if not isinstance(data, dict):
        raise UpstreamError("the upstream sent an answer that is not a Converse response")
    message = as_object(as_object(data.get("output")).get("message"))
    content = message.get("content")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append(ToolCall(id=str(use.get("toolUseId", "")), name=str(use.get("name", "")),
                                  arguments=compact_json(use.get("input") or {})))
    return ChatResponse(
        id=response_id,
        model=model,
        content="".join(texts) if texts or not calls else None,
        tool_calls=calls,
        finish_reason=finish_reason(data.get("stopReason"), bool(calls)),
        stop_sequence=_stop_sequence(data.get("additionalModelResponseFields")),
        usage=decode_usage(data.get("usage")),
        created=int(time.time()),
    )


def finish_reason(stop_reason: Any, has_tool_calls: bool) -> FinishReason:
    finish = FINISH_FROM_STOP_REASON.get(str(stop_reason))
    if finish is None:  # malformed_model_output, malformed_tool_use, reasons added later
        return "tool_calls" if has_tool_calls else "stop"
    return finish


def _stop_sequence(fields: Any) -> str | None:
    value = as_object(fields).get("stop_sequence")
    return value if isinstance(value, str) else None


def decode_usage(usage: Any) -> Usage:
    """Bedrock counts cache reads and writes apart from ``inputTokens`` (as Anthropic does);
    the canonical prompt count is their sum, cached = the reads."""
    usage = as_object(usage)
    read = token_count(usage.get("cacheReadInputTokens"))
    fresh = token_count(usage.get("inputTokens")) + token_count(usage.get("cacheWriteInputTokens"))
    return Usage(prompt_tokens=fresh + read, completion_tokens=token_count(usage.get("outputTokens")),
                 cached_tokens=read)


# --- stream ------------------------------------------------------------------------------------


class ConverseStreamParser:
    """ConverseStream event messages in, canonical stream events out. Created per stream.

    Tool calls are numbered by their position among tool calls (Bedrock numbers every content
    block). ``messageStop`` gives the finish; the ``metadata`` event after it gives usage.
    """

    def __init__(self, model: str, response_id: str) -> None:
        self.model = model
        self.response_id = response_id
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool position
        self._finished = False
        self._usage: Usage | None = None

    def feed(self, message: EventMessage) -> list[StreamEvent]:
        if message.message_type == "exception":
            raise stream_exception(message)
        if message.message_type == "error":
            text = message.header(":error-message") or message.header(":error-code")
            raise UpstreamError(text or "the upstream stream failed", retryable=False)
        handler = self._HANDLERS.get(message.event_type)
        if handler is None:
            return []
        return handler(self, _payload(message))

    def close(self) -> list[StreamEvent]:
        """Called when the body ends: a stream cut before ``messageStop`` fails."""
        if not self._finished:
            raise UpstreamError("the upstream stream ended early", retryable=False)
        return [UsageEvent(self._usage)] if self._usage is not None else []

    def _message_start(self, data: JSON) -> list[StreamEvent]:
        return [StreamStart(id=self.response_id, model=self.model, created=int(time.time()))]

    def _block_start(self, data: JSON) -> list[StreamEvent]:
        use = as_object(as_object(data.get("start")).get("toolUse"))
        if not use:
            return []
        position = len(self._tools)
        self._tools[block_index(data.get("contentBlockIndex"))] = position
        return [ToolCallStart(position, str(use.get("toolUseId", "")), str(use.get("name", "")))]

    def _block_delta(self, data: JSON) -> list[StreamEvent]:
        delta = as_object(data.get("delta"))
        text = delta.get("text")
        if isinstance(text, str):
            return [TextDelta(text)] if text else []
        fragment = as_object(delta.get("toolUse")).get("input")
        position = self._tools.get(block_index(data.get("contentBlockIndex")))
        if isinstance(fragment, str) and fragment and position is not None:
            return [ToolCallDelta(position, fragment)]
        return []  # reasoning, citations: no canonical form

    def _message_stop(self, data: JSON) -> list[StreamEvent]:
        self._finished = True
        finish = finish_reason(data.get("stopReason"), bool(self._tools))
        return [StreamFinish(finish, _stop_sequence(data.get("additionalModelResponseFields")))]

    def _metadata(self, data: JSON) -> list[StreamEvent]:
        if "usage" not in data:
            return []
        self._usage = decode_usage(data["usage"])
        if not self._finished:
            return []  # held until close(): usage follows the finish
        usage, self._usage = self._usage, None
        return [UsageEvent(usage)]

    _HANDLERS = {
        "messageStart": _message_start,
        "contentBlockStart": _block_start,
        "contentBlockDelta": _block_delta,
        "messageStop": _message_stop,
        "metadata": _metadata,
    }


def stream_exception(message: EventMessage) -> UpstreamError:
    """A modelled exception sent inside the stream, with the status it stands for (429 for
    ``throttlingException``, retryable like any 429)."""
    kind = message.exception_type
    text = error_message(message.payload) or kind or "the upstream stream failed"
    return UpstreamError(f"{_error_name(kind)}: {text}" if kind else text,
                         status=STATUS_FROM_EXCEPTION.get(kind, 502))


def stream_events(
    chunks: AsyncIterator[bytes], parser: ConverseStreamParser
) -> AsyncIterator[StreamEvent]:
    """Decodes the event stream as its bytes arrive and runs ``parser`` over its messages."""
    decoder = EventStreamDecoder()

    def feed(chunk: bytes) -> Iterator[StreamEvent]:
        for message in decoder.decode(chunk):  # lazily: events before a failing message go out
            yield from parser.feed(message)

    def end() -> list[StreamEvent]:
        decoder.close()
        return parser.close()

    return drive(chunks, feed, end)


def _payload(message: EventMessage) -> JSON:
    try:
        value = orjson.loads(message.payload) if message.payload else {}
    except orjson.JSONDecodeError:
        raise UpstreamError("the upstream sent a stream event that is not JSON",
                            retryable=False) from None
    return as_object(value)


# --- errors ------------------------------------------------------------------------------------


def error_from_response(status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamError:
    """An HTTP error: its status says whether it is retried (ThrottlingException 429,
    ModelTimeoutException 408, ServiceUnavailableException 503 ...); the error's name comes
    from ``x-amzn-errortype`` (``ThrottlingException:http://internal.amazon.com/...``)."""
    kind = _error_name(headers.get("x-amzn-errortype", "").partition(":")[0])
    text = error_message(raw) if raw else ""
    message = f"{kind}: {text}" if kind and text else text or kind or f"upstream answered {status}"
    return UpstreamError(message, status=status, retry_after=retry_after_seconds(headers))


def _error_name(kind: str) -> str:
    """``throttlingException`` (a stream member) -> ``ThrottlingException`` (its type)."""
    return kind[:1].upper() + kind[1:]


# --- embeddings --------------------------------------------------------------------------------

COHERE_BATCH = 96  # Cohere's embed takes at most 96 texts per call
TITAN_PARALLEL = 8  # Titan embeds one text per call: this many calls at once


def titan_body(text: str, dimensions: int | None) -> JSON:
    body: JSON = {"inputText": text}
    if dimensions is not None:  # Titan Text Embeddings v2: 256, 512 or 1024
        body["dimensions"] = dimensions
    return body


def cohere_body(texts: list[str], dimensions: int | None) -> JSON:
    body: JSON = {"texts": texts, "input_type": "search_document"}
    if dimensions is not None:  # Embed v4 only
        body["output_dimension"] = dimensions
    return body


def cohere_vectors(data: Any) -> list[list[float]]:
    """Embed v3 answers ``embeddings`` as a list; v4 as ``{"float": [...]}``."""
    embeddings = as_object(data).get("embeddings")
    if isinstance(embeddings, dict):
        embeddings = embeddings.get("float")
    if not isinstance(embeddings, list):
        raise UpstreamError("the upstream answered without embeddings", retryable=True)
    return [list(v) for v in embeddings]


# --- the provider ------------------------------------------------------------------------------


class BedrockProvider(Provider):
    type_name: ClassVar[str] = "bedrock"
    default_base_url: ClassVar[str] = "https://bedrock-runtime.{region}.amazonaws.com"
    api_key_env: ClassVar[str | None] = "AWS_BEARER_TOKEN_BEDROCK"
    settings_model: ClassVar[type[ProviderSettings]] = AwsSettings

    def __init__(self, name: str, config: AwsSettings, session: aiohttp.ClientSession) -> None:
        super().__init__(name, config, session)
        self.region = resolve_region(config)
        if not config.base_url:
            self.base_url = endpoint_url(self.region)
        self.auth, self.credentials = make_auth(name, config, self.api_key, self.region)

    def secrets(self) -> list[str]:
        extra = self.credentials.secrets() if self.credentials is not None else []
        return [*super().secrets(), *extra]

    async def chat(self, request: ChatRequest, timeout: float) -> ChatResponse:
        path = model_path(request.model, "converse")
        response = await self.post(path, encode_request(request), timeout)
        response_id = _response_id(response)
        return decode_response(await self.read_json(response, timeout), request.model, response_id)

    async def chat_stream(self, request: ChatRequest, timeout: float) -> AsyncIterator[StreamEvent]:
        path = model_path(request.model, "converse-stream")
        response = await self.post(path, encode_request(request), timeout)
        parser = ConverseStreamParser(request.model, _response_id(response))
        return stream_events(iter_chunks(response, self.limits.stream_idle_timeout_s), parser)

    async def embeddings(self, request: EmbeddingsRequest, timeout: float) -> EmbeddingsResponse:
        family = model_family(request.model)
        if family == "cohere":
            calls = [self._cohere(request, texts, timeout)
                     for texts in batches(request.inputs, COHERE_BATCH)]
        elif family == "amazon" and "titan-embed" in request.model:
            gate = asyncio.Semaphore(TITAN_PARALLEL)
            calls = [self._titan(request, text, gate, timeout) for text in request.inputs]
        else:
            raise InvalidRequest(f"embeddings: provider type 'bedrock' offers them for Amazon Titan "
                                 f"and Cohere embedding models, and {request.model!r} is neither")
        return await gather_batches(request.model, calls)

    async def _titan(self, request: EmbeddingsRequest, text: str, gate: asyncio.Semaphore,
                     timeout: float) -> Batch:
        async with gate:
            response = await self.post(model_path(request.model, "invoke"),
                                       titan_body(text, request.dimensions), timeout)
            data = as_object(await self.read_json(response, timeout))
        vector = data.get("embedding")
        if not isinstance(vector, list):
            raise UpstreamError("the upstream answered without an embedding", retryable=True)
        return [vector], token_count(data.get("inputTextTokenCount"))

    async def _cohere(self, request: EmbeddingsRequest, texts: list[str],
                      timeout: float) -> Batch:
        response = await self.post(model_path(request.model, "invoke"),
                                   cohere_body(texts, request.dimensions), timeout)
        tokens = _int_header(response.headers, "x-amzn-bedrock-input-token-count")
        vectors = cohere_vectors(await self.read_json(response, timeout))
        if len(vectors) != len(texts):
            raise UpstreamError("the upstream answered a different number of embeddings")
        return vectors, tokens

    async def post(self, path: str, body: JSON, timeout: float) -> aiohttp.ClientResponse:
        """Signs and sends ``body`` to ``path``; waits for the status line within ``timeout``
        and raises an error status as ``UpstreamError``."""
        data = orjson.dumps(body)
        url = self.base_url + path
        async with asyncio.timeout(timeout):  # a credential refresh counts against the deadline
            # The signed headers win over configured ones of the same name (any case).
            headers = merge_headers(self.config.headers, await self.auth.headers(url, data))
        # encoded=True: the path goes out exactly as signed (yarl would otherwise decode the
        # model id's %3A, and the signature would no longer match).
        return await open_response(self.session, URL(url, encoded=True), body=data,
                                   headers=headers, timeout=timeout, on_error=error_from_response)


def _response_id(response: aiohttp.ClientResponse) -> str:
    request_id = response.headers.get("x-amzn-requestid")
    return f"bedrock-{request_id}" if request_id else f"bedrock-{secrets.token_hex(12)}"


def _int_header(headers: Mapping[str, str], name: str) -> int:
    value = headers.get(name, "")
    return int(value) if value.isdigit() else 0
