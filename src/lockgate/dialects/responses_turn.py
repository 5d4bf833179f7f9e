"""Stored responses in the Responses dialect: ``store``, ``previous_response_id`` and
``item_reference`` input items, as OpenAI's API has them and as clients rely on them (the
Vercel AI SDK sends earlier assistant turns back as ``{"type": "item_reference", "id":
"msg_..."}`` by default).

``StoredResponsesDialect.bind`` turns one request into a self-contained one before it is parsed
or routed: the stored input and output of ``previous_response_id`` go before the request's own
input (its ``instructions`` are not carried over, as at OpenAI), and each ``item_reference``
is replaced by the stored item it names. What cannot be found is a 400 naming the reference.
The request is then served by a ``ResponsesTurn``, which mints the answer's ids (stored answers
are found by them, so they are the gateway's own, never the upstream's), echoes ``store`` and
``previous_response_id``, and hands the finished answer with its resolved input to the memory
(``state.responses``) when ``store`` is true (the default).

An item id names its response: ``msg_<tail>_<n>`` and ``fc_<tail>_<n>`` are items of
``resp_<tail>``, so a reference costs one lookup by primary key, shared with the other
references into the same response.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Protocol

import orjson

from lockgate.core.chat import ChatRequest, ChatResponse
from lockgate.dialects.base import Dialect, StreamEncoder
from lockgate.dialects.responses import Echo, ResponsesDialect, ResponsesStreamEncoder, parse_request
from lockgate.dialects.responses import render_response as _render
from lockgate.errors import InvalidRequest

JSON = dict[str, Any]

_MISS = ("it was made with store: false, by another key, or has expired or been deleted; "
         "send the conversation in input instead")


class Stored(Protocol):
    @property
    def input(self) -> list[JSON]: ...

    @property
    def output(self) -> list[JSON]: ...


class ResponseMemory(Protocol):
    """What the dialect needs of the store (``state.responses.ResponseStore``)."""

    def keep(self, owner: str | None, user: str | None, input_items: list[JSON],
             response: JSON) -> None: ...

    async def find(self, owner: str | None, ids: Iterable[str]) -> Mapping[str, Stored]: ...


class StoredResponsesDialect(ResponsesDialect):
    binds = True
    def __init__(self, memory: ResponseMemory) -> None:
        self.memory = memory

    async def bind(self, body: JSON, owner: str | None,
                   user: str | None) -> tuple[Dialect, JSON]:
        store = body.get("store", True)
        if not isinstance(store, bool):
            raise InvalidRequest("store: must be a boolean")
        previous = body.get("previous_response_id")
        if previous is not None and (not isinstance(previous, str) or not previous):
            raise InvalidRequest("previous_response_id: must be a response id (a string)")
        wanted = referenced_responses(body)
        found = await self.memory.find(owner, wanted) if wanted else {}
        expanded = expand(body, found)
        turn = ResponsesTurn(self.memory, owner, user, expanded, store=store, previous=previous)
        return turn, expanded


class ResponsesTurn(ResponsesDialect):
    """One request of the stored-responses dialect (a dialect built per request, so it may
    hold that request's state)."""

    def __init__(self, memory: ResponseMemory, owner: str | None, user: str | None, body: JSON,
                 *, store: bool, previous: str | None) -> None:
        self._memory = memory
        self._owner, self._user = owner, user
        self._body = body
        self._store = store
        self._previous = previous
        self._tail = secrets.token_hex(24)
        self._echo = Echo(store=store, previous_response_id=previous)

    def parse_chat(self, body: JSON) -> ChatRequest:
        request = parse_request(body)
        self._echo = self._echo_of(request)
        return request

    def _echo_of(self, request: ChatRequest) -> Echo:
        return replace(Echo.of(request), store=self._store, previous_response_id=self._previous)

    def render_chat(self, response: ChatResponse, model: str) -> bytes:
        answer = _render(response, model, self._echo, self._tail)
        self._keep(answer)
        return orjson.dumps(answer)

    def stream_encoder(self, request: ChatRequest, model: str) -> StreamEncoder:
        return ResponsesStreamEncoder(model, self._echo_of(request), tail=self._tail,
                                      on_done=self._keep)

    def _keep(self, answer: JSON) -> None:
        if self._store:
            self._memory.keep(self._owner, self._user, input_items(self._body), answer)


# --- resolving references ---------------------------------------------------------------------


def response_of_item(item_id: str) -> str | None:
    """The id of the response an output item belongs to, or None for an id not of that shape."""
    prefix, _, rest = item_id.partition("_")
    tail, _, index = rest.rpartition("_")
    if prefix not in ("msg", "fc") or not tail or not index.isdigit():
        return None
    return f"resp_{tail}"


def referenced_responses(body: JSON) -> list[str]:
    """The ids of the stored responses the body refers to, each once."""
    wanted: list[str] = []
    previous = body.get("previous_response_id")
    if isinstance(previous, str):
        wanted.append(previous)
    for item in _items(body):
        item_id = item.get("id") if _is_reference(item) else None
        if isinstance(item_id, str) and (response_id := response_of_item(item_id)) is not None:
            wanted.append(response_id)
    return list(dict.fromkeys(wanted))


def expand(body: JSON, found: Mapping[str, Stored]) -> JSON:
    """``body`` without references: the previous response's input and output before the input,
    each ``item_reference`` replaced by its item. Other faults of the input are left for the
    parser to name."""
    previous = body.get("previous_response_id")
    if previous is None and not any(_is_reference(item) for item in _items(body)):
        return body
    history: list[JSON] = []
    if previous is not None:
        earlier = found.get(previous)
        if earlier is None:
            raise InvalidRequest(f"previous_response_id: no stored response {previous!r} for "
                                 f"this key: {_MISS}")
        history = [*earlier.input, *earlier.output]
    items = body.get("input")
    if isinstance(items, list):
        own = [_resolve(item, f"input[{i}]", found) for i, item in enumerate(items)]
    else:
        own = [] if items is None else [_as_item(items)]
    expanded = {k: v for k, v in body.items() if k != "previous_response_id"}
    expanded["input"] = [*history, *own]
    return expanded


def _resolve(item: Any, where: str, found: Mapping[str, Stored]) -> Any:
    if not _is_reference(item):
        return item
    item_id = item.get("id")
    if not isinstance(item_id, str):
        raise InvalidRequest(f"{where}.id: an item_reference needs the id of a stored item")
    response_id = response_of_item(item_id)
    stored = found.get(response_id) if response_id is not None else None
    match = next((o for o in stored.output if o.get("id") == item_id), None) if stored else None
    if match is None:
        raise InvalidRequest(f"{where}: no stored item {item_id!r} for this key: {_MISS}")
    return match


def input_items(body: JSON) -> list[JSON]:
    """The input of a body that parsed, as a list of items (a string is one user message)."""
    items = body.get("input")
    return list(items) if isinstance(items, list) else [_as_item(items)]


def _as_item(item: Any) -> Any:
    return {"type": "message", "role": "user", "content": item} if isinstance(item, str) else item


def _items(body: JSON) -> list[Any]:
    items = body.get("input")
    return items if isinstance(items, list) else []


def _is_reference(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "item_reference"
