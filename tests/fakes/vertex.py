"""A fake Vertex AI for one project and location, with its own fake Google OAuth token endpoint.

    POST /token                 grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer, assertion=JWT
    POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent
                                                  ... :streamGenerateContent[?alt=sse]   ... :predict
    POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict
                                                  ... :streamRawPredict

Credentials work as Google's do: a test makes a ``ServiceAccount`` (a fresh RSA key), writes its
JSON key file with ``token_uri`` pointing here (``fake.write_credentials``), and google-auth signs
a JWT assertion with it; the token endpoint checks the signature against the account's public
key, the audience and the times, and mints a ``ya29.`` token that lives ``token_lifetime_s``.
The model endpoints take only a minted, unexpired token as ``Authorization: Bearer``
(401 UNAUTHENTICATED otherwise) and only the fake's project and location (403 PERMISSION_DENIED).
Express mode (``/v1/publishers/google/models/...``, no project) takes the fake's ``api_key`` in
``x-goog-api-key`` or ``?key=`` instead.

Gemini answers are the Gemini API's (``fakes.gemini``), with Vertex's ``createTime``; embeddings
are ``:predict`` answers (``predictions[].embeddings.values``, ``statistics.token_count``).
Claude answers and streams are Anthropic's (``fakes.anthropic``); the body must carry
``anthropic_version`` and no ``model``. Errors are Google's ``{"error": {code, message,
status}}``, except Claude's own (scripted failures other than 429), which are Anthropic's.
Token-endpoint calls are kept in ``token_requests``, apart from ``requests``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .anthropic import _STOP_REASONS, _blocks, _event, _stream, _usage
from .anthropic import _error as _anthropic_error
from .base import Answer, FakeServer, RecordedRequest, json_answer, random_id
from .gemini import _chunks, _parts, _response, _sse
from .gemini import _error as _google_error
from .scripts import Fail, Reply, fake_vector

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
# The audience google-auth signs for, whatever token_uri the key file names.
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"

_UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
    "or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_NO_CREDENTIAL = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, "
    "login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_SHORT_LIVED = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)

# Which publisher the request being served is for: its errors take that publisher's shape.
_PUBLISHER: ContextVar[str] = ContextVar("vertex_publisher", default="google")

_GOOGLE_METHODS = {
    "generateContent": ("contents",),
    "streamGenerateContent": ("contents",),
    "predict": ("instances",),
}
_ANTHROPIC_METHODS = {
    "rawPredict": ("anthropic_version", "max_tokens", "messages"),
    "streamRawPredict": ("anthropic_version", "max_tokens", "messages"),
}
_PREDICT_LIMIT = 250


@dataclass(frozen=True)
class ServiceAccount:
    """A test service account: a fresh 2048-bit RSA key and the JSON key file Google issues."""

    email: str
    project_id: str
    key_id: str
    private_key_pem: str

    @classmethod
    def generate(cls, project_id: str = "test-project", name: str = "lockgate-test") -> ServiceAccount:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        email = f"{name}@{project_id}.iam.gserviceaccount.com"
        return cls(email=email, project_id=project_id, key_id=secrets.token_hex(20), private_key_pem=pem)

    def public_key(self) -> rsa.RSAPublicKey:
        key = serialization.load_pem_private_key(self.private_key_pem.encode(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.public_key()

    def info(self, token_uri: str) -> dict[str, str]:
        """The key file's content, as the Cloud console downloads it."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": self.private_key_pem,
            "client_email": self.email,
            "client_id": str(int(self.key_id[:16], 16)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{self.email}",
            "universe_domain": "googleapis.com",
        }


class FakeVertex(FakeServer):
    def __init__(
        self,
        project: str = "test-project",
        location: str = "us-central1",
        token_lifetime_s: int = 3600,
        api_key: str | None = None,
        fixed_token: str | None = None,
    ) -> None:
        """``fixed_token``: mint that same token every time, for a test that must know it."""
        super().__init__(api_key)
        self.fixed_token = fixed_token
        self.project = project
        self.location = location
        self.token_lifetime_s = token_lifetime_s
        self.token_delay_s = 0.0
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._tokens: dict[str, float] = {}  # minted token -> monotonic expiry
        self._token_failures: list[int] = []
        self._token_requests: list[RecordedRequest] = []
        self._token_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """What the gateway's ``base_url`` and ``genai``'s ``HttpOptions(base_url=...)`` take."""
        return self.root_url

    @property
    def anthropic_base_url(self) -> str:
        """What ``anthropic.AnthropicVertex(base_url=...)`` takes: the root and the version."""
        return f"{self.root_url}/v1"

    @property
    def token_uri(self) -> str:
        return f"{self.root_url}/token"

    # -- credentials --------------------------------------------------------------------------

    def trust(self, account: ServiceAccount) -> None:
        """Accepts assertions signed by ``account``'s key from now on."""
        with self._token_lock:
            self._keys[account.email] = account.public_key()

    def write_credentials(self, account: ServiceAccount, path: Path) -> Path:
        """Writes ``account``'s key file with ``token_uri`` pointing here, and trusts it."""
        self.trust(account)
        path.write_text(json.dumps(account.info(self.token_uri), indent=2))
        return path

    def fail_tokens(self, count: int, status: int = 503) -> None:
        """The next ``count`` token requests fail with ``status``. google-auth tries a 5xx three
        times (sleeping between), a 4xx once."""
        with self._token_lock:
            self._token_failures.extend([status] * count)

    def expire_tokens(self) -> None:
        """Every token minted so far stops being accepted."""
        with self._token_lock:
            self._tokens.clear()

    @property
    def minted(self) -> list[str]:
        """The tokens minted so far, oldest first."""
        with self._token_lock:
            return list(self._tokens)

    @property
    def token_requests(self) -> list[RecordedRequest]:
        with self._token_lock:
            return list(self._token_requests)

    def reset(self) -> None:
        super().reset()
        with self._token_lock:
            self._token_failures.clear()
            self._token_requests.clear()
        self.token_delay_s = 0.0

    # -- routes -------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        prefix = "/{version:v1|v1beta1}/projects/{project}/locations/{location}/publishers"
        return [
            web.post("/token", self._token),
            web.post(prefix + "/google/models/{call}", self._google),
            web.post(prefix + "/anthropic/models/{call}", self._anthropic),
            # Express mode: an API key instead of OAuth, no project or location in the path.
            web.post("/{version:v1|v1beta1}/publishers/google/models/{call}", self._google),
        ]

    async def _google(self, request: web.Request) -> web.StreamResponse:
        _PUBLISHER.set("google")
        method = request.match_info["call"].partition(":")[2]
        if method not in _GOOGLE_METHODS:
            await self._record(request)
            return await self._send(request, self.error(404, f"Method not found: {method}."))
        render = self._predict if method == "predict" else self._generate
        return await self.serve(request, render, _GOOGLE_METHODS[method])

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        _PUBLISHER.set("anthropic")
        method = request.match_info["call"].partition(":")[2]
        if method not in _ANTHROPIC_METHODS:
            await self._record(request)
            return await self._send(request, _google_answer(404, f"Method not found: {method}."))
        return await self.serve(request, self._claude, _ANTHROPIC_METHODS[method])

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        parts = rec.path.split("/")  # "", version, "projects", p, "locations", l, ...
        if parts[2] == "publishers":
            return self._refuse_key(rec)
        scheme, _, token = rec.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _google_answer(401, _NO_CREDENTIAL)
        with self._token_lock:
            expiry = self._tokens.get(token.strip())
        if expiry is None or time.monotonic() >= expiry:
            return _google_answer(401, _UNAUTHENTICATED)
        if parts[3] != self.project or parts[5] != self.location:
            resource = "/".join(parts[2:]).partition(":")[0]
            return _google_answer(403, f"Permission 'aiplatform.endpoints.predict' denied on resource "
                                       f"'//aiplatform.googleapis.com/{resource}' (or it may not exist).")
        if _PUBLISHER.get() == "anthropic" and "model" in rec.json:
            return self.error(400, "model: Extra inputs are not permitted")
        return None

    def _refuse_key(self, rec: RecordedRequest) -> Answer | None:
        key = rec.headers.get("x-goog-api-key") or rec.query.get("key", "")
        if not key:
            return _google_answer(401, _NO_CREDENTIAL)
        if key != self.api_key:
            return _google_answer(400, "API key not valid. Please pass a valid API key.")
        return None

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        # Vertex's own front end answers quota errors; Claude answers the rest in its shape.
        if _PUBLISHER.get() == "anthropic" and status != 429:
            return json_answer(_anthropic_error(status, message, error_type), status)
        return _google_answer(status, message, error_type)

    def stream_error(self, fail: Fail) -> bytes:
        if _PUBLISHER.get() == "anthropic":
            return _event("error", _anthropic_error(fail.status, fail.message, fail.error_type))
        return _sse(_google_error(fail.status, fail.message, fail.error_type))

    def missing_field(self, name: str) -> str:
        if _PUBLISHER.get() == "anthropic":
            return f"{name}: Field required"
        return f"* {name}: {name} is not specified"

    # -- the token endpoint -------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        rec = RecordedRequest(method=request.method, path=request.path, query=dict(request.query),
                              headers={k.lower(): v for k, v in request.headers.items()},
                              body={k: str(v) for k, v in form.items()})
        with self._token_lock:
            self._token_requests.append(rec)
            failure = self._token_failures.pop(0) if self._token_failures else None
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s)
        if failure is not None:
            # google-auth retries a 5xx (with backoff) and gives up at once on invalid_grant.
            error = "internal_failure" if failure >= 500 else "invalid_grant"
            return _oauth_error(failure, error, "The token endpoint failed on purpose.")
        if rec.json.get("grant_type") != JWT_BEARER:
            return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type: ")
        problem = self._check_assertion(rec.json.get("assertion", ""))
        if problem is not None:
            return _oauth_error(400, *problem)
        token = self.fixed_token or "ya29.c." + secrets.token_urlsafe(48)
        with self._token_lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime_s
        body = {"access_token": token, "expires_in": self.token_lifetime_s, "token_type": "Bearer"}
        return web.json_response(body)

    def _check_assertion(self, assertion: str) -> tuple[str, str] | None:
        """Why Google would refuse the JWT assertion (error, description), or None."""
        try:
            head_b64, claims_b64, signature_b64 = assertion.split(".")
            head, claims = json.loads(_unb64(head_b64)), json.loads(_unb64(claims_b64))
        except ValueError:
            return "invalid_grant", "Invalid JWT: the assertion is not a signed JWT."
        with self._token_lock:
            key = self._keys.get(str(claims.get("iss")))
        if key is None:
            return "invalid_grant", "Invalid grant: account not found"
        if head.get("alg") != "RS256":
            return "invalid_grant", "Invalid JWT Signature."
        try:
            key.verify(_unb64(signature_b64), f"{head_b64}.{claims_b64}".encode(),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "invalid_grant", "Invalid JWT Signature."
        if claims.get("aud") not in (GOOGLE_TOKEN_URI, self.token_uri):
            return "invalid_grant", "Invalid JWT: Failed audience check."
        now = time.time()
        issued, expires = claims.get("iat", 0), claims.get("exp", 0)
        if not issued - 300 <= now <= expires or expires - issued > 3600:
            return "invalid_grant", _SHORT_LIVED
        if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
            return "invalid_scope", "Invalid OAuth scope or ID token audience provided."
        return None

    # -- Gemini -------------------------------------------------------------------------------

    def _generate(self, rec: RecordedRequest, reply: Reply) -> Answer:
        model, _, method = rec.path.rsplit("/", 1)[1].partition(":")
        head = {"modelVersion": reply.model or model, "createTime": _now_rfc3339(),
                "responseId": random_id("", 22)}
        if method == "generateContent":
            return json_answer(_response(_parts(reply), reply, head, final=True), pretty=True)
        chunks = _chunks(reply)
        bodies = [_response(parts, reply, head, final=i == len(chunks) - 1) for i, parts in enumerate(chunks)]
        if rec.query.get("alt") == "sse":
            return Answer(pieces=[_sse(b) for b in bodies], content_type="text/event-stream")
        # Without alt=sse Google streams one JSON array, element by element.
        pieces = [(b"[" if i == 0 else b",\r\n") + json.dumps(b, indent=2).encode()
                  for i, b in enumerate(bodies)]
        return Answer(pieces=[*pieces, b"]"], content_type="application/json; charset=UTF-8")

    def _predict(self, rec: RecordedRequest, reply: Reply) -> Answer:
        instances = [i for i in rec.json["instances"] if isinstance(i, dict)]
        model = rec.path.rsplit("/", 1)[1].partition(":")[0]
        limit = 1 if "gemini" in model else _PREDICT_LIMIT
        if len(instances) > limit:
            return self.error(400, f"Unable to submit request because the input count exceeds the limit "
                                   f"of {limit}. Reduce the number of inputs and try again.")
        dimensions = int((rec.json.get("parameters") or {}).get("outputDimensionality") or 8)
        predictions = [_prediction(str(i.get("content", "")), dimensions) for i in instances]
        characters = sum(len(str(i.get("content", ""))) for i in instances)
        return json_answer({"predictions": predictions, "metadata": {"billableCharacterCount": characters}},
                           pretty=True)

    # -- Claude -------------------------------------------------------------------------------

    def _claude(self, rec: RecordedRequest, reply: Reply) -> Answer:
        model, _, method = rec.path.rsplit("/", 1)[1].partition(":")
        message = {
            "id": random_id("msg_vrtx_", 24),
            "type": "message",
            "role": "assistant",
            "model": reply.model or model.partition("@")[0],
            "content": _blocks(reply),
            "stop_reason": _STOP_REASONS[reply.finish_reason],
            "stop_sequence": None,
            "usage": _usage(reply),
        }
        if method == "rawPredict":
            return json_answer(message)
        return Answer(pieces=_stream(message, reply), content_type="text/event-stream; charset=utf-8")


def _google_answer(status: int, message: str, error_type: str | None = None) -> Answer:
    return json_answer(_google_error(status, message, error_type), status, pretty=True)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _prediction(text: str, dimensions: int) -> dict[str, Any]:
    statistics = {"truncated": False, "token_count": len(text.split())}
    return {"embeddings": {"statistics": statistics, "values": fake_vector(text, dimensions)}}


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
