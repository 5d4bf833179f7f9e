"""``pipeline.body``: a request body is read only as far as ``max_body_bytes`` allows — refused
on its Content-Length before any of it is read, or at the piece that passes the limit — and a
client that hangs up while sending it is told apart from a bad body."""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.errors import RequestTooLarge
from lockgate.pipeline.body import ClientGone, read_body

LIMIT = 100


class Client:
    """An ASGI ``receive`` that hands out the body in the given pieces and counts the reads."""

    def __init__(self, *pieces: bytes, disconnect: bool = False) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1 or disconnect}
            for i, piece in enumerate(pieces)]
        if disconnect:
            self.messages.append({"type": "http.disconnect"})
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        return self.messages[self.reads - 1]


def scope(content_length: int | str | None = None) -> dict[str, Any]:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    return {"type": "http", "headers": [(b"content-type", b"application/json"), *headers]}


async def test_a_body_announced_over_the_limit_is_refused_before_any_of_it_is_read() -> None:
    client = Client(b"x" * (LIMIT + 1))
    with pytest.raises(RequestTooLarge, match=f"larger than {LIMIT} bytes"):
        await read_body(scope(LIMIT + 1), client.receive, LIMIT)
    assert client.reads == 0


async def test_an_unannounced_body_is_refused_at_the_piece_that_passes_the_limit() -> None:
    client = Client(*[b"x" * 40] * 10)
    with pytest.raises(RequestTooLarge):
        await read_body(scope(), client.receive, LIMIT)
    assert client.reads == 3  # 40 + 40 + 40 > 100: the seven pieces after are never read


async def test_a_body_that_lies_about_its_length_is_still_counted() -> None:
    client = Client(*[b"x" * 60] * 2)
    with pytest.raises(RequestTooLarge):
        await read_body(scope(10), client.receive, LIMIT)


@pytest.mark.parametrize("pieces", [(b"x" * LIMIT,), (b"x" * 50, b"", b"x" * 50), (b"",)])
async def test_a_body_up_to_the_limit_is_read_whole(pieces: tuple[bytes, ...]) -> None:
    body = await read_body(scope(len(b"".join(pieces))), Client(*pieces).receive, LIMIT)
    assert body == b"".join(pieces)


async def test_a_client_that_hangs_up_mid_body_is_gone_not_wrong() -> None:
    with pytest.raises(ClientGone):
        await read_body(scope(), Client(b'{"model":', disconnect=True).receive, LIMIT)


async def test_a_content_length_that_is_not_a_number_is_left_to_the_count() -> None:
    assert await read_body(scope("12abc"), Client(b"{}").receive, LIMIT) == b"{}"
