"""Fake upstream servers that speak each provider's real wire format, for tests.

with FakeOpenAI() as fake:
    fake.enqueue(Reply(text="Hi"), Fail(429, retry_after=1))
    ...  # point the gateway (or an SDK) at fake.base_url
    assert fake.requests[0].json["model"] == "gpt-4o-mini"
"""

from .anthropic import FakeAnthropic
from .base import Answer, FakeServer, RecordedRequest
from .gemini import FakeGemini
from .openai import FakeOpenAI
from .scripts import Fail, FakeToolCall, Hang, Raw, Reply, Script, fake_vector

__all__ = [
    "Answer",
    "Fail",
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "FakeServer",
    "FakeToolCall",
    "Hang",
    "Raw",
    "RecordedRequest",
    "Reply",
    "Script",
    "fake_vector",
]
