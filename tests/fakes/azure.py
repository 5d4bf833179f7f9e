"""A fake Azure OpenAI resource: Chat Completions (plain and SSE) and Embeddings, in Azure's
shape on top of OpenAI's.

    POST /openai/deployments/{deployment}/chat/completions?api-version=...
    POST /openai/deployments/{deployment}/embeddings?api-version=...
    POST /openai/v1/chat/completions, /openai/v1/embeddings   (v1 API: deployment = body model)

Point ``openai.AzureOpenAI(azure_endpoint=fake.base_url, ...)`` at it. As the real service:

* the deployment paths want ``api-version``: without it Azure answers 404 "Resource not found"
  (MicrosoftDocs/azure-docs#114602), and so does the fake;
* the key comes in ``api-key``, or an Entra ID token as ``Authorization: Bearer`` (accepted
  when the fake has an ``ad_token``); the body's ``model`` is optional and ignored;
* answers name the deployment's model (``deployments`` maps deployment -> model; unknown
  deployments answer 404 ``DeploymentNotFound`` when the map is given), carry
  ``prompt_filter_results`` and per-choice ``content_filter_results``, and have sorted keys;
* a stream opens with a chunk that has no choices, an empty id, created 0 and an empty model,
  only ``prompt_filter_results`` (the classic translation-breaker), then OpenAI's chunks;
* errors are ``{"error": {"code", "message"}}``; ``Fail(400, error_type="content_filter")`` is
  the content-management refusal with its ``innererror``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from aiohttp import web

from .base import Answer, RecordedRequest, json_answer, random_id
from .openai import FakeOpenAI
from .scripts import Fail, Reply

_DEPLOYMENTS = "/openai/deployments/"
_SAFE = {"filtered": False, "severity": "safe"}
_CONTENT_FILTER = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
_PROMPT_FILTER = [{"prompt_index": 0, "content_filter_results": {
    **_CONTENT_FILTER, "jailbreak": {"filtered": False, "detected": False}}}]
_NO_ACCESS = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
    "a valid key for an active subscription and use a correct regional API endpoint for your "
    "resource."
)
_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)


class FakeAzure(FakeOpenAI):
    def __init__(self, api_key: str | None = None, *, ad_token: str | None = None,
                 deployments: dict[str, str] | None = None) -> None:
        super().__init__(api_key)
        self.ad_token = ad_token
        self.deployments = deployments

    @property
    def base_url(self) -> str:
        """The resource endpoint: what ``AzureOpenAI(azure_endpoint=...)`` and lockgate's
        ``base_url`` take."""
        return self.root_url

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(_DEPLOYMENTS + "{deployment}/chat/completions", self._azure_chat),
            web.post(_DEPLOYMENTS + "{deployment}/embeddings", self._azure_embeddings),
            web.post("/openai/v1/chat/completions", self._azure_chat),
            web.post("/openai/v1/embeddings", self._azure_embeddings),
        ]

    async def _azure_chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_azure_chat, ("messages",))

    async def _azure_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, self._render_azure_embeddings, ("input",))

    # -- provider shape -----------------------------------------------------------------------

    def refuse(self, rec: RecordedRequest) -> Answer | None:
        if rec.path.startswith(_DEPLOYMENTS) and not rec.query.get("api-version"):
            return self.error(404, "Resource not found")
        if not self._authorized(rec):
            return self.error(401, _NO_ACCESS)
        deployment = deployment_of(rec)
        if self.deployments is not None and deployment not in self.deployments:
            return self.error(404, "The API deployment for this resource does not exist. If you "
                              "created the deployment within the last 5 minutes, please wait a "
                              "moment and try again.", "DeploymentNotFound")
        return None

    def _authorized(self, rec: RecordedRequest) -> bool:
        key = rec.headers.get("api-key", "").strip()
        if key:
            return self.api_key is None or key == self.api_key
        scheme, _, token = rec.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.ad_token is not None and token == self.ad_token

    def error(self, status: int, message: str, error_type: str | None = None) -> Answer:
        return json_answer({"error": _error_body(status, message, error_type)}, status,
                           headers={"apim-request-id": random_id("", 32)})

    def stream_error(self, fail: Fail) -> bytes:
        return _data({"error": _error_body(fail.status, fail.message, fail.error_type)})

    def missing_field(self, name: str) -> str:
        return f"'{name}' is a required property"

    # -- answers ------------------------------------------------------------------------------

    def model_of(self, deployment: str) -> str:
        """The model a deployment runs, as Azure names it in answers."""
        return (self.deployments or {}).get(deployment, deployment)

    def _render_azure_chat(self, rec: RecordedRequest, reply: Reply) -> Answer:
        model = reply.model or self.model_of(deployment_of(rec))
        answer = self._render_chat(replace(rec, body={**rec.json, "model": model}), reply)
        if answer.pieces is None:
            body = json.loads(answer.body)
            body.pop("service_tier", None)
            body["prompt_filter_results"] = _PROMPT_FILTER
            for choice in body["choices"]:
                choice["content_filter_results"] = _CONTENT_FILTER
            answer.body = _dumps(body).encode()
            return answer
        opening = _data({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                         "prompt_filter_results": _PROMPT_FILTER})
        answer.pieces = [opening, *(_azure_chunk(piece) for piece in answer.pieces)]
        return answer

    def _render_azure_embeddings(self, rec: RecordedRequest, reply: Reply) -> Answer:
        model = reply.model or self.model_of(deployment_of(rec))
        answer = self._render_embeddings(replace(rec, body={**rec.json, "model": model}), reply)
        answer.body = _dumps(json.loads(answer.body)).encode()
        return answer


def deployment_of(rec: RecordedRequest) -> str:
    """The deployment a request names: in its path, or (v1 API) as its body's ``model``."""
    if rec.path.startswith(_DEPLOYMENTS):
        return rec.path[len(_DEPLOYMENTS):].split("/", 1)[0]
    return str(rec.json.get("model") or "")


def _azure_chunk(piece: bytes) -> bytes:
    """One of OpenAI's stream pieces with Azure's annotations: content chunks carry filter
    results, the others an empty object."""
    text = piece.decode()
    if not text.startswith("data: {"):
        return piece
    chunk = json.loads(text[len("data: "):])
    chunk.pop("service_tier", None)
    for choice in chunk.get("choices", []):
        has_text = bool((choice.get("delta") or {}).get("content"))
        choice["content_filter_results"] = _CONTENT_FILTER if has_text else {}
    return _data(chunk)


def _error_body(status: int, message: str, code: str | None) -> dict[str, Any]:
    code = code or str(status)
    if code != "content_filter":
        return {"code": code, "message": message}
    filtered = {**_CONTENT_FILTER, "violence": {"filtered": True, "severity": "medium"}}
    return {"message": _FILTERED if message == Fail.message else message, "type": None,
            "param": "prompt", "code": "content_filter", "status": status,
            "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": filtered}}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _data(obj: Any) -> bytes:
    return f"data: {_dumps(obj)}\n\n".encode()
