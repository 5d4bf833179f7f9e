"""What a provider declares to join the conformance suite.

A module in ``conformance/providers/`` defines ``CASE = ProviderCase(...)``: its config type,
how to build its fake upstream, the upstream model ids, the features it cannot offer (the
gateway must refuse those with a clear 400, never answer wrongly), and an ``UpstreamReader``
that reads the request bodies its fake recorded in the suite's neutral terms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fakes import FakeServer
from fakes.base import RecordedRequest

from .scenario import JsonMode, ToolSpec, Turn

Body = dict[str, Any]


class UpstreamReader(ABC):
    """Reads one recorded upstream chat request in the suite's neutral terms."""

    @abstractmethod
    def is_chat(self, request: RecordedRequest) -> bool:
        """Whether the request is a chat call (plain or streaming)."""

    @abstractmethod
    def is_stream(self, request: RecordedRequest) -> bool: ...

    @abstractmethod
    def model(self, request: RecordedRequest) -> str:
        """The upstream model id the request names."""

    @abstractmethod
    def system(self, body: Body) -> str | None:
        """The system prompt as the upstream got it (parts joined), None when there is none."""

    @abstractmethod
    def turns(self, body: Body) -> list[Turn]:
        """The conversation, one ``Turn`` per message (and one per tool result)."""

    @abstractmethod
    def tools(self, body: Body) -> list[ToolSpec]: ...

    @abstractmethod
    def stop(self, body: Body) -> list[str]: ...

    @abstractmethod
    def max_tokens(self, body: Body) -> int | None: ...

    @abstractmethod
    def json_mode(self, body: Body) -> JsonMode | None: ...

    def json_path(self, body: Body) -> str:
        """How a JSON schema reached the upstream: ``native`` (the provider's own structured
        output field, which most have) or ``instruction`` (written into the system prompt)."""
        return "native"


@dataclass(frozen=True)
class ProviderCase:
    """One provider's entry in the suite.

    ``fake(api_key)`` builds (but does not start) the fake upstream; ``unsupported`` maps a
    feature to why the provider cannot offer it; ``known_bugs`` maps (client format, feature)
    to a precise reason the cell fails today (strict xfail: a fix makes it fail loudly).
    ``json_path`` is how a JSON schema reaches ``chat_model`` (``native`` or ``instruction``,
    checked by the JSON mode cells), and ``json_path_note`` says it for the matrix.
    """

    type: str
    fake: Callable[[str], FakeServer]
    api_key: str
    chat_model: str
    reader: UpstreamReader
    embedding_model: str | None = None
    unsupported: Mapping[str, str] = field(default_factory=dict)
    known_bugs: Mapping[tuple[str, str], str] = field(default_factory=dict)
    json_path: str = "native"
    json_path_note: str = ""

    def provider_entry(self, fake: FakeServer) -> dict[str, Any]:
        """The ``providers:`` config entry that reaches ``fake``."""
        base_url = getattr(fake, "base_url", fake.root_url)
        return {"type": self.type, "api_key": self.api_key, "base_url": base_url}
