#!/usr/bin/env python3
"""The mock upstream the benchmark points every gateway at: canned OpenAI and Anthropic answers,
chosen by route, never by body, so that any gateway can be aimed at one behaviour per model.

Routes (all POST; the request body is read and discarded):

    /v1/chat/completions             OpenAI chat.completion JSON (200 completion tokens, 1.8 KB)
    /v1/embeddings                   OpenAI embeddings JSON (1 x 1536 floats)
    /v1/messages                     Anthropic Messages JSON (200 output tokens)
    /stream/v1/chat/completions      SSE: role, 50 content chunks, finish, usage, [DONE] at once
    /slow/v1/<any of the three>      the same JSON after SLOW_MS (default 50 ms)
    /slowstream/v1/chat/completions  the SSE events, SLOW_MS to the first, CHUNK_MS between
    /health                          200 "ok"

The aiohttp engine also serves what the soak benchmark (soak.py) needs, failures included:

    /slowstream/v1/messages          Anthropic SSE (message_start ... 50 text deltas ... message_stop),
                                     paced like /slowstream
    /flaky/v1/chat/completions       the chat JSON, but every 5th request answers 503
    /flakystream/v1/chat/completions the paced SSE, but of every 10 requests one answers 503 before
                                     the first byte and one is cut (connection closed) after 20 events

Two engines serve them. nginx (one worker, with the echo module for the delays) when it is
installed, because it never becomes the bottleneck (50-70 k req/s on one core beside wrk);
otherwise an aiohttp + uvloop server, which is fast enough for a Python gateway on its own core
but can saturate the load core when the gateway is fast (the report says which engine ran).

    upstream.py nginx-conf OUTDIR PORT [SLOW_MS CHUNK_MS]   write bodies + nginx.conf to OUTDIR
    upstream.py serve PORT [SLOW_MS CHUNK_MS]               run the aiohttp engine in the foreground
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

CREATED = 1735689600
MODEL = "gpt-4o-mini-2024-07-18"
CHAT_ID = "chatcmpl-mock0123456789abcdefghijklmnop"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
TEXT = ("the gateway routes each request to a provider and returns the answer while tracking "
        "usage cost and latency so that teams can compare models safely and quickly under load "
        "with retries fallbacks budgets and keys")


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _tokens(rnd: random.Random) -> list[str]:
    # 200 "tokens" of plain words: no quotes, backslashes or dollars, so they are safe in nginx.
    words = TEXT.split()
    return [(" " if i else "") + rnd.choice(words) for i in range(200)]


def _usage() -> dict[str, Any]:
    return {"prompt_tokens": 42, "completion_tokens": 200, "total_tokens": 242,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def _chat(text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
    return {"id": CHAT_ID, "object": "chat.completion", "created": CREATED, "model": MODEL,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
            "usage": _usage(), "service_tier": "default", "system_fingerprint": "fp_mock00000"}


def _messages(text: str) -> dict[str, Any]:
    return {"id": "msg_mock0123456789abcdefghij", "type": "message", "role": "assistant",
            "model": "claude-3-5-haiku-20241022", "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 42, "output_tokens": 200, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0}}


def _embeddings(rnd: random.Random) -> dict[str, Any]:
    vector = [round(rnd.uniform(-0.1, 0.1), 9) for _ in range(1536)]
    return {"object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": vector}],
            "usage": {"prompt_tokens": 8, "total_tokens": 8}}


def _chunk(delta: Any, finish: str | None = None, usage: Any = None, choices: bool = True) -> str:
    body = {"id": CHAT_ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL,
            "service_tier": "default", "system_fingerprint": "fp_mock00000",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if choices else [],
            "usage": usage}
    return "data: " + _compact(body) + "\n\n"


def sse_events(tokens: list[str]) -> list[str]:
    """54 events (17 KB): role, 50 content chunks of 4 tokens, finish, usage, [DONE]."""
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": "".join(tokens[i * 4:(i + 1) * 4])}) for i in range(50)]
    events.append(_chunk({}, finish="stop"))
    events.append(_chunk(None, usage=_usage(), choices=False))
    events.append("data: [DONE]\n\n")
    return events


def _sse(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {_compact(data)}\n\n"


def anthropic_events(tokens: list[str]) -> list[str]:
    """Anthropic's stream for the same text: 56 events, a text delta per 4 tokens."""
    start = {**_messages(""), "content": [], "stop_reason": None,
             "usage": {"input_tokens": 42, "output_tokens": 1}}
    events = [_sse("message_start", {"type": "message_start", "message": start}),
              _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}}),
              _sse("ping", {"type": "ping"})]
    events += [_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta",
                                                      "text": "".join(tokens[i * 4:(i + 1) * 4])}})
               for i in range(50)]
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(_sse("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                         "usage": {"output_tokens": 200}}))
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def bodies() -> dict[str, bytes]:
    """The canned bodies, the same on every run (seeded)."""
    rnd = random.Random(42)
    tokens = _tokens(rnd)
    text = "".join(tokens)
    return {"chat.json": _compact(_chat(text)).encode(),
            "embeddings.json": _compact(_embeddings(rnd)).encode(),
            "messages.json": _compact(_messages(text)).encode(),
            "chat.sse": "".join(sse_events(tokens)).encode()}


def stream_events() -> list[bytes]:
    return [e.encode() for e in sse_events(_tokens(random.Random(42)))]


# --- nginx engine ------------------------------------------------------------------------------


def nginx_available() -> bool:
    from shutil import which
    return which("nginx") is not None and os.path.exists(ECHO_MODULE)


def _nginx_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def write_nginx(out: str, port: int, slow_ms: int = 50, chunk_ms: int = 5) -> str:
    """Writes the bodies and an nginx.conf (one worker, foreground) into ``out``; returns the
    conf path. Start it with ``nginx -c OUT/nginx.conf -p OUT``."""
    static = os.path.join(out, "static")
    for sub in ("static", "logs", "tmp_body"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    for name, data in bodies().items():
        with open(os.path.join(static, name), "wb") as f:
            f.write(data)
    paced = []
    for i, event in enumerate(sse_events(_tokens(random.Random(42)))):
        if i:
            paced.append(f"      echo_sleep {chunk_ms / 1000.0};")
        paced.append(f"      echo -n {_nginx_quote(event)};")
        paced.append("      echo_flush;")
    conf = os.path.join(out, "nginx.conf")
    with open(conf, "w") as f:
        f.write(_NGINX.format(out=out, port=port, locations=_locations(static, slow_ms / 1000.0),
                              slow=slow_ms / 1000.0, paced="\n".join(paced)))
    return conf


def _locations(static: str, slow: float) -> str:
    """One internal location per body; each instant route answers POST with it, each /slow
    route after the echo module's timer."""
    lines = []
    for name, kind in (("chat.json", "application/json"), ("embeddings.json", "application/json"),
                       ("messages.json", "application/json"), ("chat.sse", "text/event-stream")):
        extra = " add_header Cache-Control no-cache;" if kind == "text/event-stream" else ""
        lines.append(f"    location = /_s/{name} {{ internal; default_type {kind};{extra} "
                     f"alias {static}/{name}; }}")
    routes = (("/v1/chat/completions", "chat.json"), ("/v1/embeddings", "embeddings.json"),
              ("/v1/messages", "messages.json"))
    for route, name in (*routes, ("/stream/v1/chat/completions", "chat.sse")):
        lines.append(f"    location = {route} {{ error_page 405 =200 /_s/{name}; return 405; }}")
    for route, name in routes:
        lines.append(f"    location = /slow{route} {{ default_type application/json;\n"
                     f"      echo_read_request_body; echo_sleep {slow}; echo_location /_s/{name}; }}")
    return "\n".join(lines)


# The static module refuses POST, so each instant route turns its 405 into an internal redirect
# to the static file (served with Content-Length); delays come from the echo module's timer.
_NGINX = """# generated by bench/upstream.py
load_module """ + ECHO_MODULE + """;
worker_processes 1;
daemon off;
pid {out}/nginx.pid;
error_log {out}/logs/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path {out}/tmp_body;
  proxy_temp_path {out}/tmp_body;
  fastcgi_temp_path {out}/tmp_body;
  uwsgi_temp_path {out}/tmp_body;
  scgi_temp_path {out}/tmp_body;
  client_body_buffer_size 1m;
  client_max_body_size 10m;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  sendfile on; tcp_nodelay on;
  open_file_cache max=64 inactive=3600s; open_file_cache_valid 3600s;
  server {{
    listen 127.0.0.1:{port} backlog=4096 reuseport;
    location = /health {{ default_type text/plain; return 200 "ok\\n"; }}
    location = /v1/traces {{ default_type application/x-protobuf; return 200 ""; }}
{locations}
    location = /slowstream/v1/chat/completions {{
      default_type text/event-stream; add_header Cache-Control no-cache;
      echo_read_request_body;
      echo_sleep {slow};
{paced}
    }}
  }}
}}
"""


# --- aiohttp engine ----------------------------------------------------------------------------


def serve(port: int, slow_ms: int = 50, chunk_ms: int = 5) -> None:
    """The fallback engine: the same routes from aiohttp on uvloop, in the foreground."""
    import asyncio

    import uvloop
    from aiohttp import web

    canned = bodies()
    events = stream_events()
    claude_events = [e.encode() for e in anthropic_events(_tokens(random.Random(42)))]
    slow, gap = slow_ms / 1000.0, chunk_ms / 1000.0
    served = {"flaky": 0, "flakystream": 0}  # requests per failing route: which one fails is counted
    unavailable = _compact({"error": {"message": "mock overloaded", "type": "server_error"}}).encode()

    def json_route(name: str, delay: float) -> Any:
        data = canned[name]

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            if delay:
                await asyncio.sleep(delay)
            return web.Response(body=data, content_type="application/json")
        return handle

    async def stream_now(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=canned["chat.sse"], content_type="text/event-stream",
                            headers={"Cache-Control": "no-cache"})

    async def paced(request: web.Request, chunks: list[bytes], cut_after: int = 0) -> web.StreamResponse:
        await asyncio.sleep(slow)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        for i, event in enumerate(chunks):
            if i:
                await asyncio.sleep(gap)
            if cut_after and i == cut_after and request.transport is not None:
                request.transport.close()  # mid-stream, without the chunked terminator
                return response
            await response.write(event)
        await response.write_eof()
        return response

    async def stream_paced(request: web.Request) -> web.StreamResponse:
        await request.read()
        return await paced(request, events)

    async def claude_paced(request: web.Request) -> web.StreamResponse:
        await request.read()
        return await paced(request, claude_events)

    async def flaky(request: web.Request) -> web.Response:
        await request.read()
        served["flaky"] += 1
        if served["flaky"] % 5 == 0:
            return web.Response(status=503, body=unavailable, content_type="application/json")
        return web.Response(body=canned["chat.json"], content_type="application/json")

    async def flaky_stream(request: web.Request) -> web.StreamResponse:
        await request.read()
        served["flakystream"] += 1
        if served["flakystream"] % 10 == 0:
            return web.Response(status=503, body=unavailable, content_type="application/json")
        return await paced(request, events, cut_after=20 if served["flakystream"] % 10 == 5 else 0)

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def traces(request: web.Request) -> web.Response:  # an OTLP/HTTP sink
        await request.read()
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    for prefix, delay in (("", 0.0), ("/slow", slow)):
        app.router.add_post(f"{prefix}/v1/chat/completions", json_route("chat.json", delay))
        app.router.add_post(f"{prefix}/v1/embeddings", json_route("embeddings.json", delay))
        app.router.add_post(f"{prefix}/v1/messages", json_route("messages.json", delay))
    app.router.add_post("/stream/v1/chat/completions", stream_now)
    app.router.add_post("/slowstream/v1/chat/completions", stream_paced)
    app.router.add_post("/slowstream/v1/messages", claude_paced)
    app.router.add_post("/flaky/v1/chat/completions", flaky)
    app.router.add_post("/flakystream/v1/chat/completions", flaky_stream)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/traces", traces)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=4096)


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[0] == "nginx-conf":
        extra = [int(x) for x in argv[3:5]]
        print(write_nginx(argv[1], int(argv[2]), *extra))
    elif len(argv) >= 2 and argv[0] == "serve":
        serve(int(argv[1]), *[int(x) for x in argv[2:4]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
