"""A fake Amazon Bedrock Runtime: ``POST /model/{modelId}/converse``, ``/converse-stream`` and
``/invoke`` (Titan and Cohere embedding models).

Point boto3 at it with ``boto3.client("bedrock-runtime", endpoint_url=fake.root_url,
region_name=fake.region, aws_access_key_id=fake.access_key, aws_secret_access_key=fake.secret_key)``.

Authentication is checked as AWS checks it: every request must carry a SigV4 signature (service
``bedrock``, the fake's region) that the fake recomputes with botocore from the request as
received, with its own secret key; a mismatch is 403 ``InvalidSignatureException``, an unknown
access key 403 ``UnrecognizedClientException``, no signature 403
``MissingAuthenticationTokenException``. A Bedrock API key (``Authorization: Bearer``) is taken
when the fake has an ``api_key``.

Errors are AWS rest-json errors: the status, ``x-amzn-ErrorType: <Name>:<namespace>`` and a
``{"message"}`` body. ConverseStream answers in the binary ``application/vnd.amazon.eventstream``
format, one message per event with both CRC32s, as Bedrock streams it::

    messageStart; text as contentBlockDelta {text} then contentBlockStop (no start event);
    per tool call contentBlockStart {toolUse: {toolUseId, name}}, contentBlockDelta
    {toolUse: {input: <JSON fragment>}}..., contentBlockStop; messageStop {stopReason};
    metadata {usage, metrics}

Every event payload carries Bedrock's ``p`` padding field. A mid-stream failure is an
``exception`` message (``:exception-type: throttlingException`` ...). ``inputTokens`` excludes
cache reads, as Bedrock counts them: ``prompt_tokens - cached_tokens``. Embeddings are
``fake_vector`` of each text (8 dimensions unless Titan's ``dimensions`` asks for others).
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import datetime
import hmac
import itertools
import re
import struct
import uuid
import zlib
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]

from .base import Answer, FakeServer, RecordedRequest, dumps, json_answer, random_id
from .scripts import Fail, FakeToolCall, Reply, fake_vector, json_pieces, text_pieces

ACCESS_KEY = "AKIAFAKEBEDROCK00001"
SECRET_KEY = "fake/bedrock/secret+key/0123456789abcdefXYZ"

_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

_ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
# The union members ConverseStream uses for its in-stream exceptions.
_STREAM_EXCEPTIONS = {
    400: "validationException",
    424: "modelStreamErrorException",
    429: "throttlingException",
    500: "internalServerException",
    503: "serviceUnavailableException",
}
_NAMESPACE = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

_BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your "
    "AWS Secret Access Key and signing method. Consult the service documentation for details."
)
_BAD_TOKEN = "The security token included in the request is invalid."
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)
_SKEW = datetime.timedelta(minutes=5)

# The raw request target (path and query, still percent-encoded) of the request being served:
# the signature covers the path as sent, which RecordedRequest.path holds decoded.
_RAW_TARGET: contextvars.ContextVar[str] = contextvars.ContextVar("raw_target", default="")


class FakeBedrock(FakeServer):
    def __init__(
        self,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        region: str = "us-east-1",
        session_token: str | None = None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(api_key=api_key)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.session_token = session_token

    @property
    def base_url(self) -> str:
        """What a bedrock provider's ``base_url`` (and boto3's ``endpoint_url``) takes."""
        return self.root_url

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/model/{model:.+}/{operation:converse|converse-stream|invoke}", self._model)]

    async def _model(self, request: web.Request) -> web.StreamResponse:
        _RAW_TARGET.set(request.raw_path)
        if request.match_info["operation"] == "invoke":
            return await self.serve(request, self._invoke)
        return await self.serve(request, self._converse, ("messages",))

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        authorization = rec.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            if self.api_key is None or not hmac.compare_digest(authorization[7:], self.api_key):
                return self.error(403, _BAD_TOKEN, "UnrecognizedClientException")
        elif not authorization:
            return self.error(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        else:
            failure = self.check_signature(rec)
            if failure is not None:
                return self.error(403, failure[1], failure[0])
        if rec.path.endswith(("/converse", "/converse-stream")) and isinstance(rec.body, dict):
            problem = converse_problem(rec.body)
            if problem is not None:
                return self.error(400, problem)
        return None

    def check_signature(self, rec: RecordedRequest) -> tuple[str, str] | None:
        keys = Credentials(self.access_key, self.secret_key, self.session_token)
        url = f"http://{rec.headers.get('host', '')}{_RAW_TARGET.get() or rec.path}"
        return verify_sigv4(rec.method, url, rec.headers, rec.raw, keys, self.region)

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        kind = error_type or _ERROR_TYPES.get(status, "InternalServerException" if status >= 500
                                              else "ValidationException")
        headers = {"x-amzn-ErrorType": f"{kind}:{_NAMESPACE}", "x-amzn-RequestId": str(uuid.uuid4())}
        return json_answer({"message": message}, status, headers=headers)

    def stream_error(self, fail: Fail) -> bytes:
        kind = fail.error_type or _STREAM_EXCEPTIONS.get(fail.status, "internalServerException")
        headers = {":exception-type": kind, ":content-type": "application/json",
                   ":message-type": "exception"}
        return event_message(headers, dumps({"message": fail.message}).encode())

    def missing_field(self, name: str) -> str:
        return (f"1 validation error detected: Value null at '{name}' failed to satisfy "
                "constraint: Member must not be null")

    # -- Converse and ConverseStream ----------------------------------------------------------

    def _converse(self, rec: RecordedRequest, reply: Reply) -> Answer:
        request_id = {"x-amzn-RequestId": str(uuid.uuid4())}
        calls = [_with_id(c) for c in reply.tool_calls]
        if rec.path.endswith("/converse"):
            return json_answer(_response(reply, calls), headers=request_id)
        pieces = [event(name, payload) for name, payload in _stream_events(reply, calls)]
        return Answer(pieces=pieces, content_type="application/vnd.amazon.eventstream",
                      headers=request_id)

    # -- InvokeModel: embeddings --------------------------------------------------------------

    def _invoke(self, rec: RecordedRequest, reply: Reply) -> Answer:
        model = rec.path.removeprefix("/model/").rsplit("/", 1)[0]
        body = rec.json
        answer: dict[str, object]
        if "cohere.embed" in model and isinstance(body.get("texts"), list):
            texts = [str(t) for t in body["texts"]]
            answer = {"embeddings": [fake_vector(t) for t in texts],
                      "id": str(uuid.uuid4()), "response_type": "embeddings_floats", "texts": texts}
        elif "titan-embed" in model and isinstance(body.get("inputText"), str):
            texts = [body["inputText"]]
            vector = fake_vector(texts[0], int(body.get("dimensions") or 8))
            answer = {"embedding": vector, "embeddingsByType": {"float": vector},
                      "inputTextTokenCount": _tokens(texts)}
        else:
            return self.error(400, "Malformed input request, please reformat your input and try again.")
        headers = {"x-amzn-RequestId": str(uuid.uuid4()),
                   "X-Amzn-Bedrock-Input-Token-Count": str(_tokens(texts))}
        return json_answer(answer, headers=headers)


# --- SigV4 verification --------------------------------------------------------------------------


def verify_sigv4(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    keys: Credentials,
    region: str,
    service: str = "bedrock",
    now: datetime.datetime | None = None,
) -> tuple[str, str] | None:
    """Recomputes the SigV4 signature of a received request with botocore and the known secret
    key; None when it matches, else (AWS error name, AWS message). ``url`` is the request's
    URL exactly as received (path still percent-encoded); ``headers`` have lower-case names."""
    match = _AUTH.match(headers.get("authorization", ""))
    if match is None:
        return "IncompleteSignatureException", "Authorization header requires 'Credential', " \
            "'SignedHeaders' and 'Signature' parameters."
    scope = match["credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return "IncompleteSignatureException", "Credential is malformed."
    access_key, day, scope_region, scope_service, _ = scope
    if access_key != keys.access_key:
        return "UnrecognizedClientException", _BAD_TOKEN
    if scope_region != region:
        return "InvalidSignatureException", "Credential should be scoped to a valid region."
    if scope_service != service:
        return "InvalidSignatureException", f"Credential should be scoped to correct service: '{service}'."
    if keys.token is not None and headers.get("x-amz-security-token") != keys.token:
        return "UnrecognizedClientException", _BAD_TOKEN
    signed = match["signed"].split(";")
    timestamp = headers.get("x-amz-date", "")
    if "host" not in signed or "x-amz-date" not in signed or not timestamp.startswith(day):
        return "InvalidSignatureException", _BAD_SIGNATURE
    if not _fresh(timestamp, now):
        return "InvalidSignatureException", f"Signature expired: {timestamp} is now earlier or " \
            "later than the allowed 5 minutes."
    request = AWSRequest(method=method, url=url, data=body,
                         headers={name: headers.get(name, "") for name in signed})
    request.context["timestamp"] = timestamp
    signer = SigV4Auth(keys, service, region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)),
                                request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "InvalidSignatureException", _BAD_SIGNATURE
    return None


def _fresh(timestamp: str, now: datetime.datetime | None) -> bool:
    try:
        signed_at = datetime.datetime.strptime(timestamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return False
    return abs((now or datetime.datetime.now(datetime.UTC)) - signed_at) <= _SKEW


# --- what Bedrock validates in a Converse request ------------------------------------------------


def converse_problem(body: dict[str, Any]) -> str | None:
    """The ValidationException message Bedrock gives for the first problem it finds, if any."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "The model returned the following errors: messages: at least one message is required"
    if any(not isinstance(m, dict) for m in messages):
        return "1 validation error detected: messages must be a list of objects"
    roles = [m.get("role") for m in messages]
    if roles[0] != "user":
        return "A conversation must start with a user message. Try again with a conversation " \
            "that starts with a user message."
    if any(a == b for a, b in itertools.pairwise(roles)) or not set(roles) <= {"user", "assistant"}:
        return "A conversation must alternate between user and assistant roles. Make sure the " \
            "conversation alternates between user and assistant roles and try again."
    for i, message in enumerate(messages):
        problem = _content_problem(message.get("content"), f"messages.{i}.content")
        if problem is not None:
            return problem
    uses_tools = any("toolUse" in b or "toolResult" in b for m in messages for b in m["content"])
    if uses_tools and not isinstance(body.get("toolConfig"), dict):
        return "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    return None


def _content_problem(content: Any, where: str) -> str | None:
    if not isinstance(content, list) or not content:
        return f"The content field in the Message object at {where[:-8]} is empty. Add a " \
            "ContentBlock object to the content field and try again."
    for j, block in enumerate(content):
        if not isinstance(block, dict) or len(block) != 1:
            return f"1 validation error detected: {where}.{j} must set exactly one member"
        if "text" in block and not str(block["text"]).strip():
            return f"The text field in the ContentBlock object at {where}.{j} is blank. Add text " \
                "to the text field, and try again."
        if "image" in block and not _valid_image(block["image"]):
            return f"The image in the ContentBlock object at {where}.{j} is not valid."
    return None


def _valid_image(image: Any) -> bool:
    if not isinstance(image, dict) or image.get("format") not in ("png", "jpeg", "gif", "webp"):
        return False
    data = (image.get("source") or {}).get("bytes")
    try:
        return isinstance(data, str) and bool(base64.b64decode(data, validate=True))
    except binascii.Error:
        return False


# --- rendering -----------------------------------------------------------------------------------


def _with_id(call: FakeToolCall) -> FakeToolCall:
    return call if call.id else FakeToolCall(random_id("tooluse_", 22), call.name, call.arguments)


def _response(reply: Reply, calls: list[FakeToolCall]) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"text": reply.text}] if reply.text else []
    content += [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in calls]
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": _STOP_REASONS[reply.finish_reason],
        "usage": _usage(reply),
        "metrics": {"latencyMs": 312},
    }


def _usage(reply: Reply) -> dict[str, int]:
    usage = {"inputTokens": reply.prompt_tokens - reply.cached_tokens,
             "outputTokens": reply.completion_tokens, "totalTokens": reply.total_tokens}
    if reply.cached_tokens:
        usage["cacheReadInputTokens"] = reply.cached_tokens
        usage["cacheWriteInputTokens"] = 0
    return usage


def _stream_events(reply: Reply, calls: list[FakeToolCall]) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    index = 0
    if reply.text:
        events += [("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
                   for piece in text_pieces(reply.text)]
        events.append(("contentBlockStop", {"contentBlockIndex": 0}))
        index = 1
    for offset, call in enumerate(calls):
        block = index + offset
        events.append(("contentBlockStart", {"contentBlockIndex": block, "start": {
            "toolUse": {"toolUseId": call.id, "name": call.name}}}))
        events += [("contentBlockDelta", {"contentBlockIndex": block,
                                          "delta": {"toolUse": {"input": piece}}})
                   for piece in json_pieces(call.arguments_json())]
        events.append(("contentBlockStop", {"contentBlockIndex": block}))
    events.append(("messageStop", {"stopReason": _STOP_REASONS[reply.finish_reason]}))
    events.append(("metadata", {"usage": _usage(reply), "metrics": {"latencyMs": 312}}))
    return events


def event(name: str, payload: dict[str, Any]) -> bytes:
    """One ConverseStream event message, with Bedrock's padding field."""
    padded = {**payload, "p": _PADDING[: 1 + len(name) * 2 % len(_PADDING)]}
    headers = {":event-type": name, ":content-type": "application/json", ":message-type": "event"}
    return event_message(headers, dumps(padded).encode())


def event_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """An AWS event-stream message: prelude (total length, headers length, prelude CRC32),
    string headers, payload, and the CRC32 of everything before it."""
    encoded = b"".join(_header(name, value) for name, value in headers.items())
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def _header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    # type 7: a UTF-8 string with a 2-byte length
    return (struct.pack(">B", len(raw_name)) + raw_name + b"\x07"
            + struct.pack(">H", len(raw_value)) + raw_value)


def _tokens(texts: list[str]) -> int:
    return sum(len(t.split()) for t in texts)
