"""``errors``: every error a client can see renders in the client's own shape (OpenAI,
Anthropic, V2) with the status, code and type its SDK expects, says when to retry, and carries
no secret once scrubbed."""

from __future__ import annotations

from typing import NamedTuple

import anthropic.types
import orjson
import pytest
from openai.types.shared import ErrorObject

from lockgate.errors import (
    AuthenticationFailed,
    GatewayError,
    HeadersTooLarge,
    HeadTimeout,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    RateLimited,
    RequestTooLarge,
    ShuttingDown,
    UpstreamConnectError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreadable,
    scrub,
)

SECRET = "sk-upstream-secret-0123456789"


class Shape(NamedTuple):
    """An error and what a client sees of it: status, code, and its type in each SDK."""

    error: GatewayError
    status: int
    code: str
    openai_type: str
    anthropic_type: str


SHAPES = [
    Shape(InvalidRequest("bad"), 400, "invalid_request", "invalid_request_error", "invalid_request_error"),
    Shape(AuthenticationFailed("who?"), 401, "invalid_api_key", "authentication_error",
          "authentication_error"),
    Shape(ModelNotAllowed("no"), 403, "model_not_allowed", "permission_error", "permission_error"),
    Shape(ModelNotFound("none"), 404, "model_not_found", "not_found_error", "not_found_error"),
    Shape(HeadersTooLarge("big"), 431, "headers_too_large", "invalid_request_error", "invalid_request_error"),
    Shape(HeadTimeout("slow"), 408, "request_timeout", "invalid_request_error", "invalid_request_error"),
    Shape(RateLimited("slow down"), 429, "rate_limit_exceeded", "rate_limit_error", "rate_limit_error"),
    Shape(RateLimited("spent", code="budget_exceeded"), 429, "budget_exceeded", "rate_limit_error",
          "rate_limit_error"),
    Shape(ShuttingDown(), 503, "shutting_down", "api_error", "api_error"),
    Shape(UpstreamError("broken"), 502, "upstream_error", "api_error", "api_error"),
    Shape(UpstreamError("overloaded", status=529), 529, "upstream_error", "api_error", "overloaded_error"),
    Shape(UpstreamTimeout(), 504, "upstream_timeout", "api_error", "timeout_error"),
    Shape(UpstreamConnectError(), 502, "upstream_error", "api_error", "api_error"),
    Shape(UpstreamUnreadable(), 502, "upstream_error", "api_error", "api_error"),
    Shape(GatewayError("oops"), 500, "internal_error", "api_error", "api_error"),
]


def shape_id(shape: Shape) -> str:
    return f"{type(shape.error).__name__}-{shape.code}-{shape.status}"


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_the_openai_shape_is_what_the_openai_sdk_reads(shape: Shape) -> None:
    error = shape.error
    body = orjson.loads(error.openai_body())
    assert error.status == shape.status
    assert body == {"error": {"message": error.message, "type": shape.openai_type, "code": shape.code,
                              "param": None}}
    parsed = ErrorObject.model_validate(body["error"])
    assert (parsed.code, parsed.type, parsed.message) == (shape.code, shape.openai_type, error.message)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_the_anthropic_shape_is_what_the_anthropic_sdk_reads(shape: Shape) -> None:
    error = shape.error
    body = orjson.loads(error.anthropic_body())
    assert body == {"type": "error", "error": {"type": shape.anthropic_type, "message": error.message}}
    parsed = anthropic.types.ErrorResponse.model_validate(body)
    assert (parsed.error.type, parsed.error.message) == (shape.anthropic_type, error.message)


def test_a_request_too_large_has_anthropics_own_413_type() -> None:
    """Anthropic's API reference names 413 ``request_too_large`` (the SDK's types lack it);
    OpenAI has no such type and calls it an invalid request."""
    error = RequestTooLarge("the body is over 10 MiB")
    assert (error.status, error.code) == (413, "request_too_large")
    assert orjson.loads(error.anthropic_body())["error"]["type"] == "request_too_large"
    assert orjson.loads(error.openai_body())["error"]["type"] == "invalid_request_error"


def test_the_v2_shape_is_the_message_alone() -> None:
    assert orjson.loads(ModelNotAllowed("not for this key").v2_body()) == {"error": "not for this key"}


def test_a_message_with_quotes_and_newlines_renders_as_valid_json() -> None:
    message = 'the upstream said "no"\nand \\ then \u2603'
    error = InvalidRequest(message)
    assert orjson.loads(error.openai_body())["error"]["message"] == message
    assert orjson.loads(error.anthropic_body())["error"]["message"] == message
    assert orjson.loads(error.v2_body())["error"] == message


@pytest.mark.parametrize(("error", "seconds"), [
    (RateLimited("slow down"), b"1"),  # a 429 always says when
    (RateLimited("slow down", retry_after=0.2), b"1"),  # never "retry after 0 seconds"
    (RateLimited("slow down", retry_after=2.6), b"3"),
    (ShuttingDown(), b"1"),  # a 503 always says when
    (UpstreamError("busy", status=503, retry_after=30), b"30"),
    (UpstreamError("busy", status=500, retry_after=7), b"7"),  # the upstream's own hint
])
def test_retry_after_is_whole_seconds_of_at_least_one(error: GatewayError, seconds: bytes) -> None:
    assert error.headers() == [(b"retry-after", seconds)]


@pytest.mark.parametrize("error", [InvalidRequest("bad"), ModelNotFound("none"), UpstreamError("broken"),
                                   UpstreamTimeout()])
def test_an_error_without_a_hint_sends_no_retry_after(error: GatewayError) -> None:
    assert error.headers() == []


def test_a_rate_limit_carries_the_limit_headers_after_retry_after() -> None:
    limits = [(b"x-ratelimit-limit-requests", b"3"), (b"x-ratelimit-remaining-requests", b"0")]
    error = RateLimited("3 requests per minute", retry_after=12, headers=limits)
    assert error.headers() == [(b"retry-after", b"12"), *limits]


@pytest.mark.parametrize(("status", "retryable"), [
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True), (529, True),
    (400, False), (401, False), (403, False), (404, False), (413, False), (422, False),
])
def test_an_upstream_status_is_retried_only_where_a_retry_can_help(status: int, retryable: bool) -> None:
    assert UpstreamError("x", status=status).retryable is retryable


def test_an_adapter_may_overrule_the_status_on_retrying() -> None:
    assert UpstreamError("context too long", status=500, retryable=False).retryable is False
    assert UpstreamError("stale connection", status=400, retryable=True).retryable is True


@pytest.mark.parametrize("error", [UpstreamTimeout(), UpstreamConnectError(), UpstreamUnreadable()])
def test_a_failure_before_any_answer_is_retryable(error: UpstreamError) -> None:
    assert error.retryable is True


def test_an_upstreams_own_code_is_kept_apart_from_the_gateways() -> None:
    error = UpstreamError("filtered", status=400, upstream_code="content_filter")
    assert (error.code, error.upstream_code) == ("upstream_error", "content_filter")


def test_scrub_removes_every_copy_of_every_secret() -> None:
    gateway_key = "lg-client-key-0123456789"
    text = f"key {SECRET} rejected; header was Bearer {SECRET}, client {gateway_key}"
    scrubbed = scrub(text, [SECRET, gateway_key])
    assert scrubbed == "key [redacted] rejected; header was Bearer [redacted], client [redacted]"


def test_scrub_leaves_short_strings_so_ordinary_words_survive() -> None:
    assert scrub("the model is not ready", ["model", "is", "ready!!"]) == "the model is not ready"
    assert scrub("a 12345678 b", ["12345678"]) == "a [redacted] b"  # eight characters are a secret


def test_a_scrubbed_message_renders_in_no_shape_with_the_secret() -> None:
    error = UpstreamError(scrub(f"Incorrect API key provided: {SECRET}", [SECRET]), status=401)
    for body in (error.openai_body(), error.anthropic_body(), error.v2_body()):
        assert SECRET.encode() not in body
        assert b"[redacted]" in body
