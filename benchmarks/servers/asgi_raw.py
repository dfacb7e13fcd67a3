"""The bare-ASGI baseline: the limit of our server stack (uvicorn + uvloop + httptools).

`form_post` answers a form POST the way a token endpoint must at the least: read the whole
body, parse it as x-www-form-urlencoded, answer a small JSON document. No framework, no
database. Started as ``uvicorn benchmarks.servers.asgi_raw:form_post`` with the same flags as
our server.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]


async def _read_body(receive) -> bytes:
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def form_post(scope, receive, send):
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    form = dict(parse_qsl((await _read_body(receive)).decode("latin-1")))
    body = json.dumps({"status": "ok", "grant_type": form.get("grant_type")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
