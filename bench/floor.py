#!/usr/bin/env python3
"""The floor: the thinnest Python pass-through proxy there is (aiohttp server and client on
uvloop, orjson), so that lockgate's throughput can be read as a ratio to what any Python proxy
on this machine can do. No auth, limits, translation, retries or records.

    floor.py PORT MOCK_URL        routes mock-<variant> to MOCK_URL/<prefix>v1 like the gateway
"""

from __future__ import annotations

import sys

import orjson
import uvloop
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

PREFIX = {"mock-fast": "/v1", "mock-slow": "/slow/v1", "mock-stream": "/stream/v1",
          "mock-slowstream": "/slowstream/v1"}
UPSTREAM_HEADERS = {"Authorization": "Bearer sk-mock", "Content-Type": "application/json"}


def make_app(mock_url: str) -> web.Application:
    session_key = web.AppKey("session", ClientSession)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        url = mock_url + PREFIX.get(body.get("model"), "/v1") + "/chat/completions"
        body["model"] = "gpt-4o-mini"
        session = request.app[session_key]
        async with session.post(url, data=orjson.dumps(body), headers=UPSTREAM_HEADERS) as up:
            if not body.get("stream"):
                return web.Response(body=await up.read(), status=up.status,
                                    content_type="application/json")
            response = web.StreamResponse(status=up.status,
                                          headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for chunk in up.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def open_session(app: web.Application) -> None:
        app[session_key] = ClientSession(connector=TCPConnector(limit=0),
                                         timeout=ClientTimeout(total=60))

    async def close_session(app: web.Application) -> None:
        await app[session_key].close()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.on_startup.append(open_session)
    app.on_cleanup.append(close_session)
    return app


if __name__ == "__main__":
    uvloop.install()
    web.run_app(make_app(sys.argv[2].rstrip("/")), host="127.0.0.1", port=int(sys.argv[1]),
                access_log=None, print=None)
