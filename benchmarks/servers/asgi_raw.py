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


# --- the same, plus the one write a refresh cannot avoid --------------------------------

_db = None


def _connection():
    """One sqlite3 connection per process, WAL + synchronous=NORMAL like the server's."""
    global _db
    if _db is None:
        import os
        import sqlite3

        _db = sqlite3.connect(os.environ["BENCH_SQLITE_PATH"], isolation_level=None,
                              check_same_thread=False)
        _db.execute("PRAGMA journal_mode=WAL")
        _db.execute("PRAGMA synchronous=NORMAL")
        _db.execute("PRAGMA busy_timeout=10000")
        _db.execute("CREATE TABLE IF NOT EXISTS access_tokens (id INTEGER PRIMARY KEY, "
                    "token_digest TEXT NOT NULL UNIQUE, issued_at REAL NOT NULL)")
    return _db


async def form_post_sqlite_write(scope, receive, send):
    """`form_post` plus one INSERT of a token digest and COMMIT per request, with sqlite3
    on the event loop thread: the floor of a refresh grant that stores the access token
    it issues (no ORM, no thread hop, no lookup)."""
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    import hashlib
    import secrets
    import time

    form = dict(parse_qsl((await _read_body(receive)).decode("latin-1")))
    token = "C" + secrets.token_urlsafe(48)
    db = _connection()
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO access_tokens (token_digest, issued_at) VALUES (?, ?)",
               (hashlib.sha256(token.encode()).hexdigest(), time.time()))
    db.execute("COMMIT")
    body = json.dumps({"access_token": token, "expires_in": 1800,
                       "grant_type": form.get("grant_type")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
