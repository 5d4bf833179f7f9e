"""The errors a client can see, and how each renders in the client's own format.

    GatewayError                    status, code, message; renders as OpenAI / Anthropic / V2 JSON
    ├── InvalidRequest              400 invalid_request
    │   └── PIIDetected             400 pii_detected: a privacy policy in block mode (§10)
    ├── AuthenticationFailed        401 invalid_api_key
    ├── ModelNotAllowed             403 model_not_allowed
    ├── ModelNotFound               404 model_not_found
    ├── RequestTooLarge             413 request_too_large
    ├── HeadersTooLarge             431 headers_too_large (answered by the HTTP protocol itself)
    ├── HeadTimeout                 408 request_timeout: the headers came too slowly (idem)
    ├── RateLimited                 429 rate_limit_exceeded / budget_exceeded (retry-after)
    ├── ShuttingDown                503 shutting_down: the drain time ran out first (retry-after)
    ├── PrivacyGuardFailed          500 privacy_guard_failed: the PII guard could not check a
    │                               request, which is then refused, never passed on unchecked
    └── UpstreamError               an upstream's failure, as the provider adapter saw it
        ├── UpstreamTimeout         no first byte within timeout_s
        ├── UpstreamConnectError    could not connect / connection cut before an answer
        └── UpstreamUnreadable      an answer or stream event that cannot be read

An ``UpstreamError`` says whether it is ``retryable`` (§5 of the interface). Once retries and
fallbacks are spent, ``pipeline.call`` turns the last one into what the client sees: 429
``upstream_rate_limited``, 502 ``upstream_error``, 504 ``upstream_timeout``, or the upstream's
own 4xx relayed with its status. Messages never carry credentials: ``scrub`` removes every
secret the gateway holds before an upstream's text reaches a client.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

# §5, plus 529: Anthropic's "overloaded", a 503 in all but number, which its own SDK retries.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",  # the client was too slow: its request is at fault
    413: "request_too_large",
    431: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout_error",  # Anthropic answers its own gateway timeouts so
    529: "overloaded_error",
}

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
}


class GatewayError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    @property
    def openai_type(self) -> str:
        return _OPENAI_TYPES.get(self.status, "api_error")

    @property
    def anthropic_type(self) -> str:
        return _ANTHROPIC_TYPES.get(self.status, "api_error")

    def openai_object(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.openai_type, "code": self.code,
                          "param": None}}

    def anthropic_object(self) -> dict[str, object]:
        return {"type": "error", "error": {"type": self.anthropic_type, "message": self.message}}

    def openai_body(self) -> bytes:
        return orjson.dumps(self.openai_object())

    def anthropic_body(self) -> bytes:
        return orjson.dumps(self.anthropic_object())

    def v2_body(self) -> bytes:
        return orjson.dumps({"error": self.message})

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None and self.status not in (429, 503):
            return []
        seconds = max(1, round(self.retry_after or 1))
        return [(b"retry-after", str(seconds).encode())]


class InvalidRequest(GatewayError):
    status = 400
    code = "invalid_request"


class PIIDetected(InvalidRequest):
    code = "pii_detected"


class AuthenticationFailed(GatewayError):
    status = 401
    code = "invalid_api_key"


class ModelNotAllowed(GatewayError):
    status = 403
    code = "model_not_allowed"


class ModelNotFound(GatewayError):
    status = 404
    code = "model_not_found"


class RequestTooLarge(GatewayError):
    status = 413
    code = "request_too_large"


class HeadersTooLarge(GatewayError):
    status = 431
    code = "headers_too_large"


class HeadTimeout(GatewayError):
    status = 408
    code = "request_timeout"


class RateLimited(GatewayError):
    """Carries the same ``x-ratelimit-*`` headers a served request would (§5)."""

    status = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, code: str | None = None, retry_after: float | None = None,
                 headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
        super().__init__(message, code=code, retry_after=retry_after)
        self.limit_headers = list(headers)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [*super().headers(), *self.limit_headers]


class ShuttingDown(GatewayError):
    status = 503
    code = "shutting_down"

    def __init__(self, message: str = "the gateway is shutting down; retry the request") -> None:
        super().__init__(message)


class PrivacyGuardFailed(GatewayError):
    status = 500
    code = "privacy_guard_failed"


class Overloaded(GatewayError):
    """Load shedding: this worker has ``server.max_in_flight`` requests in flight already."""

    status = 503
    code = "overloaded"

    def __init__(self) -> None:
        super().__init__("the gateway is at capacity; retry the request shortly", retry_after=1)

    @property
    def anthropic_type(self) -> str:
        return "overloaded_error"  # what Anthropic's own SDKs know to back off from


class UpstreamError(GatewayError):
    """An upstream answered with an error status, or broke its protocol.

    ``status`` is the upstream's own status (or 502 for a broken answer); ``retryable`` follows
    §5; ``retry_after`` is the upstream's hint in seconds, when it sent one.
    """

    code = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        status: int = 502,
        retry_after: float | None = None,
        retryable: bool | None = None,
        upstream_code: str | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.retryable = status in RETRYABLE_STATUSES if retryable is None else retryable
        # The upstream's own error code (Azure's "content_filter"), kept when its 4xx is relayed.
        self.upstream_code = upstream_code
        self.route: str | None = None  # the deployment that failed, set by the caller


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"

    def __init__(self, message: str = "the upstream did not answer in time") -> None:
        super().__init__(message, status=504, retryable=True)


class UpstreamConnectError(UpstreamError):
    def __init__(self, message: str = "could not reach the upstream") -> None:
        super().__init__(message, status=502, retryable=True)


# What Python raises on upstream data that cannot be read: bad JSON or UTF-8 (ValueError, of
# which orjson's and Unicode's errors are subclasses), wrong types (TypeError, AttributeError:
# ``int("ten")``, ``[].get``) and missing keys or items (LookupError). Where the gateway reads
# upstream data, these become ``UpstreamUnreadable``: retried like any upstream failure before
# the first byte, an error event after it — never a 500 or a silent cut.
UNREADABLE = (ValueError, TypeError, LookupError, AttributeError)


class UpstreamUnreadable(UpstreamError):
    def __init__(self, message: str = "the upstream sent an answer that cannot be read") -> None:
        super().__init__(message, status=502, retryable=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Removes every secret from ``text``; short strings are skipped so that scrubbing cannot
    mangle ordinary words."""
    for secret in secrets:
        if len(secret) >= 8 and secret in text:
            text = text.replace(secret, "[redacted]")
    return text
