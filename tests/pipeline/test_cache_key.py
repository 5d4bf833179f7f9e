"""``pipeline.cache_key``: which requests share a cached answer, and which may be answered by
a near-duplicate's — plain values, no gateway."""

from __future__ import annotations

from typing import Any

from lockgate.pipeline.cache_key import cache_control, exact_key, semantic_parts
from lockgate.pipeline.context import RequestContext

BODY: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}],
                        "max_tokens": 20}


def ctx(team: str | None = "t1", key: str | None = "k1", version: str | None = None) -> RequestContext:
    c = RequestContext(request_id="r", started=0.0, ts=0.0, endpoint="/v1/chat/completions")
    c.team_id, c.key_id, c.model, c.version = team, key, "chat", version
    return c


def key(body: dict[str, Any], stream: bool = False, dialect: str = "openai",
        context: RequestContext | None = None) -> str:
    return exact_key(dialect, body, stream, context or ctx())


def test_field_order_and_fields_that_do_not_change_the_answer_are_ignored() -> None:
    reordered = {"max_tokens": 20, "messages": [{"content": "Hi", "role": "user"}], "model": "chat"}
    assert key(reordered) == key(BODY)
    assert key({**BODY, "user": "alice", "metadata": {"user_id": "a"}}) == key(BODY)
    assert key({**BODY, "stream_options": {"include_usage": True}}) == key(BODY)


def test_what_changes_the_answer_changes_the_key() -> None:
    assert key({**BODY, "max_tokens": 21}) != key(BODY)
    assert key({**BODY, "messages": [{"role": "user", "content": "Hi!"}]}) != key(BODY)
    assert key(BODY, dialect="anthropic") != key(BODY)
    assert key(BODY, context=ctx(version="2")) != key(BODY)
    # A stream is kept apart from a whole answer, and its usage chunk is part of it.
    assert key(BODY, stream=True) != key(BODY)
    with_usage = {**BODY, "stream_options": {"include_usage": True}}
    assert key(with_usage, stream=True) != key(BODY, stream=True)


def test_answers_are_scoped_to_the_team_else_the_key() -> None:
    assert key(BODY, context=ctx("t1", "k1")) == key(BODY, context=ctx("t1", "k2"))
    assert key(BODY, context=ctx("t2", "k1")) != key(BODY, context=ctx("t1", "k1"))
    assert key(BODY, context=ctx(None, "k1")) != key(BODY, context=ctx(None, "k2"))
    assert key(BODY, context=ctx(None, "k1")).startswith("key:k1:")
    assert key(BODY, context=ctx("t1", "k1")).startswith("team:t1:")


def test_cache_control_directives() -> None:
    assert cache_control([]) == (False, False)
    assert cache_control([(b"cache-control", b"no-cache")]) == (True, False)
    assert cache_control([(b"cache-control", b"No-Store")]) == (False, True)
    assert cache_control([(b"cache-control", b"max-age=0, no-cache,no-store")]) == (True, True)


def semantic(body: dict[str, Any], max_temperature: float = 0.1) -> tuple[str, str] | None:
    return semantic_parts("openai", body, False, ctx(), max_temperature)


def test_the_prompt_is_embedded_and_the_rest_keyed_exactly() -> None:
    parts = semantic({**BODY, "messages": [{"role": "system", "content": "Be brief"},
                                           {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]})
    assert parts is not None
    bucket, text = parts
    assert text == "system\nBe brief\nuser\nHi"
    other = semantic({**BODY, "messages": [{"role": "user", "content": "Something else"}]})
    assert other is not None and other[0] == bucket  # same shape: searched together
    changed = semantic({**BODY, "max_tokens": 5})
    assert changed is not None and changed[0] != bucket


def test_semantic_only_where_safe() -> None:
    assert semantic(BODY) is not None
    assert semantic({**BODY, "temperature": 0}) is not None
    assert semantic({**BODY, "temperature": 0.7}) is None
    assert semantic({**BODY, "temperature": 0.7}, max_temperature=1.0) is not None
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert semantic({**BODY, "tools": tools}) is None
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert semantic({**BODY, "messages": [{"role": "user", "content": [image]}]}) is None
