"""The token and introspection endpoints' plain-ASGI fast path (server/token_fast_path.py)
answers byte for byte as the general Starlette routes: the same requests go to two copies
of one database, one app with the fast path and one without, and every answer (status,
raw headers in order, body) and the final stats must be equal. The fast path must have
answered the common cases itself, and handed every other request to the general route."""

from __future__ import annotations

import base64
import hashlib
import itertools
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app, token_fast_path
from hubspot_oauth.server import hubspot as hubspot_module
from hubspot_oauth.server import token as token_module
from hubspot_oauth.server.app import HubSpotMiddleware
from hubspot_oauth.server.bruteforce import default_guard
from hubspot_oauth.server.runner import ServerThread
from tests.support.frozen_time import freeze_emulator_time

from .conftest import ACME, ADMIN, CLIENT, REDIRECT

FORM = (b"content-type", b"application/x-www-form-urlencoded")
LOOPBACK = ("127.0.0.1", 50000)
ATTACKER = ("192.0.2.7", 40000)  # the client locked out by the brute-force guard
FORGETFUL = ("198.51.100.4", 40000)  # fails often, but never 10 times in a row
FAST = "fast"  # the fast path answered
GENERAL = "general"  # handed over to the general route
BODY_LIMIT = 64 * 1024


@dataclass
class Req:
    """One raw ASGI request to the token endpoint (or the control API)."""

    name: str
    expect: str  # FAST or GENERAL: who must answer it on the fast-path app
    body: bytes | list[bytes] = b""  # a list: sent in that many http.request messages
    version: str = "v3"
    path: str = ""
    method: str = "POST"
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=lambda: [FORM])
    content_length: bool = True
    client: tuple[str, int] | None = LOOPBACK
    disconnect: bool = False  # the client is gone before the body arrives
    fault: dict[str, Any] | None = None  # queued through the control API first


async def _send_raw(app: Any, req: Req, cid: str) -> tuple[int, list, bytes]:
    chunks = req.body if isinstance(req.body, list) else [req.body]
    body = b"".join(chunks)
    headers = [(b"host", b"local-hubspot.test"), *req.headers]
    if req.content_length:
        headers.append((b"content-length", str(len(body)).encode()))
    messages: list[dict] = [{"type": "http.disconnect"}] if req.disconnect else [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)]
    path = req.path or f"/oauth/{req.version}/token"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": req.method, "scheme": "http", "path": path,
             "raw_path": path.encode(), "query_string": req.query, "root_path": "",
             "headers": headers, "client": req.client, "server": ("127.0.0.1", 8000),
             "state": {}, "hubspot.correlation_id": cid}
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = [(bytes(k), bytes(v)) for k, v in message["headers"]]
        else:
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    # No answer at all (status None) to a client that is gone.
    return answer.get("status"), answer.get("headers", []), answer["body"]


def _form(**fields: str) -> bytes:
    return urlencode(fields).encode()


@dataclass
class Fixture:
    database: Path
    refresh_token: str
    access_token: str
    revoked_refresh_token: str
    other_refresh_token: str
    other_client: dict[str, str]
    codes: list[str]
    verifier_code: str


def _prepare(tmp_path: Path) -> Fixture:
    """One database with the seed, a second app, tokens and codes; copied per app."""
    database = tmp_path / "prepared.db"
    app = create_app(ServerSettings(database_url=f"sqlite:///{database}", control_api=True))
    hubspot = app.state.hubspot
    try:
        _app_id, other_id, other_secret = hubspot.create_app_registration(
            name="Other app", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"],
            optional_scopes=[])

        def code(client_id: str = CLIENT["client_id"], **extra: Any) -> str:
            return hubspot.issue_code(client_id=client_id, redirect_uri=REDIRECT,
                                      user_email=ADMIN, hub_id=ACME,
                                      scopes=["crm.objects.contacts.read"], **extra)

        def grant(client: dict[str, str], client_code: str) -> dict[str, Any]:
            return hubspot.exchange_code(**client, code=client_code, redirect_uri=REDIRECT)

        other = {"client_id": other_id, "client_secret": other_secret}
        main = grant(CLIENT, code())
        revoked = grant(CLIENT, code())["refresh_token"]
        assert hubspot.delete_refresh_token(revoked)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()  # S256
        return Fixture(
            database=database, refresh_token=main["refresh_token"],
            access_token=main["access_token"], revoked_refresh_token=revoked,
            other_refresh_token=grant(other, code(other_id))["refresh_token"],
            other_client=other, codes=[code() for _ in range(4)],
            verifier_code=code(code_challenge=challenge, code_challenge_method="S256"))
    finally:
        hubspot.close()


VERIFIER = "dBjftJeZ4CVP-mJ92K1qW8ALCoiZKaRkOk7kLq3CLr8"


def _requests(f: Fixture) -> list[Req]:
    rt = f.refresh_token
    refresh = {"grant_type": "refresh_token", **CLIENT, "refresh_token": rt}
    body = _form(**refresh)
    wrong_secret = _form(grant_type="refresh_token", client_id=CLIENT["client_id"],
                         client_secret="not-the-secret", refresh_token=rt)

    def exchange(code: str, **extra: str) -> bytes:
        return _form(grant_type="authorization_code", **CLIENT, redirect_uri=REDIRECT,
                     code=code, **extra)

    reqs = [
        # The common cases: the fast path answers.
        *[Req(f"refresh {v}", FAST, body, version=v)
          for v in ("v1", "v3", "2026-03", "2026-09")],
        Req("refresh, body in three messages", FAST, [body[:10], body[10:40], body[40:]]),
        Req("refresh, content-type with charset", FAST, body,
            headers=[(b"content-type", b"Application/X-WWW-Form-Urlencoded; charset=UTF-8")]),
        Req("refresh, repeated content-type (the first counts)", FAST, body,
            headers=[FORM, (b"content-type", b"application/json")]),
        Req("refresh, unknown extra parameter", FAST, body + b"&scope=ignored"),
        Req("refresh, no client address", FAST, body, client=None),
        Req("code exchange", FAST, exchange(f.codes[0])),
        Req("code exchange v1", FAST, exchange(f.codes[1]), version="v1"),
        Req("code exchange with PKCE", FAST, exchange(f.verifier_code, code_verifier=VERIFIER)),
        # Every refusal and unusual request: the general route answers.
        Req("code replayed (revokes its tokens)", GENERAL, exchange(f.codes[0])),
        Req("code, wrong redirect_uri", GENERAL, _form(
            grant_type="authorization_code", **CLIENT, redirect_uri=REDIRECT + "/x",
            code=f.codes[2])),
        Req("code, missing redirect_uri", GENERAL, _form(
            grant_type="authorization_code", **CLIENT, code=f.codes[3])),
        Req("code, missing code", GENERAL, _form(grant_type="authorization_code", **CLIENT,
                                                 redirect_uri=REDIRECT)),
        Req("missing grant_type", GENERAL, _form(**CLIENT, refresh_token=rt)),
        Req("unsupported grant_type", GENERAL, _form(**{**refresh,
                                                        "grant_type": "password"})),
        Req("missing client_id", GENERAL, _form(grant_type="refresh_token",
                                                client_secret=CLIENT["client_secret"],
                                                refresh_token=rt)),
        Req("missing client_id, HTTP Basic", GENERAL, _form(grant_type="refresh_token",
                                                            refresh_token=rt),
            headers=[FORM, (b"authorization", b"Basic Y2xpZW50OnNlY3JldA==")]),
        Req("missing client_secret", GENERAL, _form(grant_type="refresh_token",
                                                    client_id=CLIENT["client_id"],
                                                    refresh_token=rt)),
        Req("unknown client_id", GENERAL, _form(**{**refresh, "client_id": "nobody"})),
        Req("wrong client_secret", GENERAL, wrong_secret),
        Req("missing refresh_token", GENERAL, _form(grant_type="refresh_token", **CLIENT)),
        Req("unknown refresh_token", GENERAL, _form(**{**refresh,
                                                       "refresh_token": "na1-nope"})),
        Req("access token as refresh_token", GENERAL, _form(
            **{**refresh, "refresh_token": f.access_token})),
        Req("deleted refresh_token", GENERAL, _form(
            **{**refresh, "refresh_token": f.revoked_refresh_token})),
        Req("another client's refresh_token", GENERAL, _form(
            **{**refresh, "refresh_token": f.other_refresh_token})),
        Req("parameter too long", GENERAL, _form(**refresh, scope="x" * 5000)),
        Req("NUL in a parameter", GENERAL, body + b"&scope=a%00b"),
        Req("not UTF-8", GENERAL, body + b"&scope=%ff%fe"),
        Req("too many parameters", GENERAL, body + b"".join(
            b"&p%d=1" % i for i in range(100))),
        Req("duplicate parameter", GENERAL, body + b"&refresh_token=" + quote(rt).encode()),
        Req("duplicate grant_type", GENERAL, body + b"&grant_type=refresh_token"),
        Req("body over the limit", GENERAL, body + b"&pad=" + b"x" * BODY_LIMIT),
        Req("body over the limit, no content-length", GENERAL,
            [body, b"&pad=" + b"x" * BODY_LIMIT], content_length=False),
        Req("no content-length", GENERAL, [body[:20], body[20:]], content_length=False),
        Req("content-length not a number", GENERAL, body,
            headers=[FORM, (b"content-length", b"many")], content_length=False),
        Req("wrong content-type", GENERAL, body, headers=[(b"content-type",
                                                           b"application/json")]),
        Req("no content-type", GENERAL, body, headers=[]),
        Req("no content-type, empty body", GENERAL, b"", headers=[]),
        Req("client gone before the body", GENERAL, body, disconnect=True),
        Req("credentials in the v3 query string", GENERAL, body,
            query=b"client_secret=" + CLIENT["client_secret"].encode()),
        Req("harmless v3 query string", GENERAL, body, query=b"hapikey=none"),
        Req("v1 parameters in the query string", GENERAL, _form(**CLIENT), version="v1",
            query=_form(grant_type="refresh_token", refresh_token=rt)),
        Req("v1 parameter in body and query", GENERAL, body, version="v1",
            query=b"refresh_token=x"),
        Req("GET", GENERAL, method="GET", headers=[]),
        Req("trailing slash", GENERAL, body, path="/oauth/v3/token/"),
        Req("unknown version", GENERAL, body, path="/oauth/v2/token"),
        # Faults queued through the control API: the general route takes them.
        *[Req(f"fault {kind}", GENERAL, body, fault={"endpoint": "token", "fault": kind})
          for kind in ("invalid_grant", "server_error", "rate_limit", "html_502")],
        Req("fault invalid_grant on a code", GENERAL, exchange(f.codes[3]),
            fault={"endpoint": "token", "fault": "invalid_grant"}),
        Req("fault delay", GENERAL, body,
            fault={"endpoint": "token", "fault": "delay", "delay_ms": 1}),
        Req("after the faults", FAST, body),
    ]
    # Introspection: a live access token of this client is the fast path's, the rest not.
    at = f.access_token
    reqs += [Req(f"introspect {v}", FAST, _form(**CLIENT, token=at), path=_intro(v))
             for v in ("v3", "2026-03", "2026-09")]
    reqs += [
        Req("introspect, hint access_token", FAST, _form(
            **CLIENT, token=at, token_type_hint="access_token"), path=_intro()),
        Req("introspect, token under the hint's name", FAST, _form(
            **CLIENT, access_token=at, token_type_hint="access_token"), path=_intro()),
        Req("introspect, unknown hint ignored", FAST, _form(
            **CLIENT, token=at, token_type_hint="id_token"), path=_intro()),
        Req("introspect a refresh token", GENERAL, _form(
            **CLIENT, token=rt, token_type_hint="refresh_token"), path=_intro()),
        Req("introspect a refresh token, no hint", GENERAL, _form(**CLIENT, token=rt),
            path=_intro()),
        Req("introspect an unknown token", GENERAL, _form(**CLIENT, token="C-nope"),
            path=_intro()),
        Req("introspect, wrong secret", GENERAL, _form(
            client_id=CLIENT["client_id"], client_secret="wrong", token=at), path=_intro()),
        Req("introspect, missing token", GENERAL, _form(**CLIENT), path=_intro()),
        Req("introspect, token too long", GENERAL, _form(**CLIENT, token="C" * 1025),
            path=_intro()),
        Req("introspect, query string", GENERAL, _form(**CLIENT, token=at), path=_intro(),
            query=b"token=" + at.encode()),
        Req("introspect v1 (no such route)", GENERAL, _form(**CLIENT, token=at),
            path=_intro("v1")),
        Req("introspect, fault", GENERAL, _form(**CLIENT, token=at), path=_intro(),
            fault={"endpoint": "introspect", "fault": "server_error"}),
    ]
    # The brute-force guard: failures until this client address is locked out (the 10th
    # failure of a client_id at one address locks it), then a correct request gets 429.
    reqs += [Req(f"wrong secret #{i}", GENERAL, wrong_secret, client=ATTACKER)
             for i in range(1, 12)]
    reqs += [Req("locked out, correct credentials", GENERAL, body, client=ATTACKER),
             Req("locked out, code exchange", GENERAL, exchange(f.codes[3]), client=ATTACKER),
             Req("locked out, introspection", GENERAL, _form(**CLIENT, token=at),
                 client=ATTACKER, path=_intro()),
             Req("another address still served", FAST, body)]
    # A success clears the failures counted so far: 9 + 9 failures lock nothing.
    for batch in (1, 2):
        reqs += [Req(f"forgetful client, batch {batch}, wrong secret #{i}", GENERAL,
                     wrong_secret, client=FORGETFUL) for i in range(1, 10)]
        reqs.append(Req(f"forgetful client, batch {batch}, success", FAST, body,
                        client=FORGETFUL))
    reqs += [Req("revoke the access token", GENERAL, _form(**CLIENT, token=at),
                 path="/oauth/v3/token/revoke"),
             Req("introspect the revoked access token", GENERAL, _form(**CLIENT, token=at),
                 path=_intro())]
    return reqs


def _intro(version: str = "v3") -> str:
    return f"/oauth/{version}/token/introspect"


def _app(tmp_path: Path, fixture: Fixture, name: str, fast: bool,
         monkeypatch: pytest.MonkeyPatch, seen: list[str], **settings: Any) -> Any:
    database = tmp_path / f"{name}.db"
    with sqlite3.connect(fixture.database) as source, sqlite3.connect(database) as copy:
        source.backup(copy)  # a consistent copy, WAL included
    paths: dict[str, Any] = {}
    if fast:
        for path, handler in token_fast_path.FAST_PATHS.items():
            paths[path] = _recording(handler, seen)
    with monkeypatch.context() as patch:
        patch.setattr(token_fast_path, "FAST_PATHS", paths)
        app = create_app(ServerSettings(database_url=f"sqlite:///{database}",
                                        control_api=True, **settings))
    # A clock that stands still: lockouts neither expire nor change Retry-After mid-test.
    app.state.bruteforce = default_guard(clock=lambda: 1000.0)
    app.state.hubspot.list_apps()  # loads the app cache (until then hot paths miss)
    return app


def _fast_paths_of(app: Any) -> dict[str, Any]:
    """The fast paths the app's `HubSpotMiddleware` answers (its stack is built by the
    first request)."""
    layer = app.middleware_stack
    while not isinstance(layer, HubSpotMiddleware):
        layer = layer.app
    return layer.fast_paths


def _recording(handler: Callable[..., Awaitable[Any]], seen: list[str]) -> Any:
    async def record(scope: dict, receive: Any, cid: str) -> Any:
        answer = await handler(scope, receive, cid)
        seen.append(FAST if isinstance(answer, tuple) else GENERAL)
        return answer

    return record


async def _run(app: Any, reqs: list[Req], seen: list[str],
               monkeypatch: pytest.MonkeyPatch) -> tuple[list, list[str]]:
    """Every answer of `reqs`, with tokens numbered from 1 (the same on both apps)."""
    counter = itertools.count(1)
    monkeypatch.setattr(hubspot_module, "new_access_token",
                        lambda: f"CAT-{next(counter):06d}")
    monkeypatch.setattr(hubspot_module, "new_refresh_token",
                        lambda hublet: f"{hublet}-RT-{next(counter):06d}")
    answers: list = []
    who: list[str] = []
    try:
        for i, req in enumerate(reqs):
            if req.fault is not None:
                fault = Req("queue fault", GENERAL, headers=[(b"content-type",
                                                             b"application/json")],
                            path="/_emulator/faults",
                            body=httpx.Request("POST", "/", json=req.fault).read())
                answers.append(("queue fault", *await _send_raw(app, fault, f"f-{i}")))
            seen.clear()
            answers.append((req.name, *await _send_raw(app, req,
                                                       str(uuid.UUID(int=i + 1)))))
            who.append(seen[0] if seen else GENERAL)
        stats = Req("stats", GENERAL, method="GET", path="/_emulator/stats", headers=[])
        answers.append(("stats", *await _send_raw(app, stats, "stats")))
    finally:
        app.state.hubspot.close()
    return answers, who


@pytest.mark.anyio
async def test_fast_path_answers_as_the_general_route(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The two runs happen one after the other: with the emulator's real time running, an
    # introspection's expires_in (whole seconds left) differed between them on a slow run.
    freeze_emulator_time(monkeypatch)
    fixture = _prepare(tmp_path)
    reqs = _requests(fixture)
    seen: list[str] = []
    general_app = _app(tmp_path, fixture, "general", False, monkeypatch, seen)
    general, _ = await _run(general_app, reqs, seen, monkeypatch)
    fast_app = _app(tmp_path, fixture, "fast", True, monkeypatch, seen)
    fast, fast_who = await _run(fast_app, reqs, seen, monkeypatch)

    # The reference app really had no fast path (its recorder could never fire, so the
    # requests it answered say nothing about that), and the other one had all of them.
    assert _fast_paths_of(general_app) == {}
    assert set(_fast_paths_of(fast_app)) == set(token_fast_path.FAST_PATHS)
    for (name, status, headers, body), reference in zip(fast, general, strict=True):
        assert (name, status, headers, body) == reference, name
    # Who answered each request on the fast-path app, as each request expects.
    assert [(r.name, w) for r, w in zip(reqs, fast_who, strict=True)] == [
        (r.name, r.expect) for r in reqs]
    # The answers themselves are what each case is about (not just equal).
    by_name = {name: (status, body) for name, status, _h, body in fast}
    assert by_name["refresh v3"][0] == 200
    assert b'"token_use":"access_token"' in by_name["refresh v3"][1]
    assert b"token_use" not in by_name["refresh v1"][1]
    assert by_name["code exchange"][0] == 200
    assert by_name["code replayed (revokes its tokens)"][0] == 400
    assert by_name["wrong client_secret"][0] == 400
    assert by_name["body over the limit"][0] == 413
    assert by_name["wrong content-type"][0] == 415
    assert by_name["client gone before the body"] == (None, b"")
    assert by_name["credentials in the v3 query string"][0] == 400
    assert by_name["harmless v3 query string"][0] == 200
    assert by_name["fault html_502"][0] == 502
    assert by_name["fault delay"][0] == 200
    assert by_name["locked out, correct credentials"][0] == 429
    assert by_name["another address still served"][0] == 200
    assert by_name["forgetful client, batch 2, wrong secret #9"][0] == 400
    assert by_name["forgetful client, batch 2, success"][0] == 200
    assert b'"active":true' in by_name["introspect v3"][1]
    assert b'"active":true' in by_name["introspect a refresh token"][1]
    assert by_name["introspect, wrong secret"][0] == 400
    assert by_name["introspect, fault"][0] == 500
    assert by_name["locked out, introspection"][0] == 429
    assert by_name["introspect the revoked access token"][0] == 200
    assert b'"active":false' in by_name["introspect the revoked access token"][1]
    headers = dict(next(h for name, _s, h, _b in fast if name == "refresh v3"))
    assert headers[b"x-hubspot-correlation-id"] == str(uuid.UUID(int=2)).encode()
    assert headers[b"cache-control"] == b"no-store"


@pytest.mark.anyio
@pytest.mark.parametrize("rotation", ["rotate", "strict"])
async def test_rotation_is_left_to_the_general_route(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rotation: str) -> None:
    """With refresh token rotation on, the fast path hands every refresh over (its
    inline grant covers no rotation), and the answers are the general route's: a new
    refresh token, then the reuse of the old one refused (strict: the family revoked)."""
    fixture = _prepare(tmp_path)
    body = _form(grant_type="refresh_token", **CLIENT, refresh_token=fixture.refresh_token)
    reqs = [Req("rotating refresh", GENERAL, body), Req("reused refresh token", GENERAL, body),
            Req("code exchange still fast", FAST, _form(
                grant_type="authorization_code", **CLIENT, redirect_uri=REDIRECT,
                code=fixture.codes[0]))]
    seen: list[str] = []
    general_app = _app(tmp_path, fixture, "general", False, monkeypatch, seen,
                       refresh_token_rotation=rotation)
    general, _ = await _run(general_app, reqs, seen, monkeypatch)
    fast, who = await _run(_app(tmp_path, fixture, "fast", True, monkeypatch, seen,
                                refresh_token_rotation=rotation), reqs, seen, monkeypatch)
    assert _fast_paths_of(general_app) == {}  # the reference answers are the general route's
    assert fast == general
    assert who == [r.expect for r in reqs]
    assert [status for _n, status, _h, _b in fast[:3]] == [200, 400, 200]
    assert b'"refresh_token":"na1-RT-' in fast[0][3]  # rotated: a new refresh token


def test_fast_path_over_a_socket(tmp_path: Path) -> None:
    """Through uvicorn: a refresh and a refused refresh, with the endpoint's headers."""
    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'hs.db'}"))
    hubspot = app.state.hubspot
    try:
        code = hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                                  user_email=ADMIN, hub_id=ACME,
                                  scopes=["crm.objects.contacts.read"])
        with ServerThread(app, host="127.0.0.1", port=0) as server, httpx.Client(
                base_url=server.base_url) as client:
            tokens = client.post("/oauth/v3/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": code}).json()
            ok = client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT,
                "refresh_token": tokens["refresh_token"]})
            refused = client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT, "refresh_token": "na1-nope"})
    finally:
        hubspot.close()
    assert ok.status_code == 200
    assert ok.json()["refresh_token"] == tokens["refresh_token"]
    assert ok.headers["content-type"] == "application/json;charset=utf-8"
    assert refused.status_code == 400
    assert refused.json()["status"] == "BAD_REFRESH_TOKEN"
    for response in (ok, refused):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
        uuid.UUID(response.headers["x-hubspot-correlation-id"])
    # The error body carries the header's correlation id; the token body has none. (A
    # `.get(..., header)` default made both checks pass for a body without one.)
    assert refused.json()["correlationId"] == refused.headers["x-hubspot-correlation-id"]
    assert "correlationId" not in ok.json()


@pytest.mark.anyio
async def test_busy_database_is_waited_for_on_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection holds SQLite's write lock when a refresh arrives: the fast path
    waits (without a worker thread) and answers once the lock is free, counted once; a
    lock held through every wait hands the request to the general route, whose grant then
    runs in the thread pool."""
    path = tmp_path / "busy.db"
    seen: list[str] = []
    waits: list[float] = []
    pooled: list[Any] = []
    monkeypatch.setattr(token_fast_path, "FAST_PATHS", {
        p: _recording(h, seen) for p, h in token_fast_path.FAST_PATHS.items()})
    app = create_app(ServerSettings(database_url=f"sqlite:///{path}", control_api=True))
    hubspot = app.state.hubspot
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    release_on = {"wait": True}  # when the holder lets go: at the first wait, or in the pool
    real_call, real_sleep = hubspot.call, token_module.anyio.sleep

    async def call(func: Any, *args: Any) -> Any:
        pooled.append(func)
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        return await real_call(func, *args)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)  # no real waiting: the holder lets go exactly when told
        if release_on["wait"] and holder.in_transaction:
            holder.execute("ROLLBACK")
        await real_sleep(0)

    hubspot.call = call
    monkeypatch.setattr(token_module.anyio, "sleep", sleep)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            tokens = (await client.post("/oauth/v3/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": hubspot.issue_code(client_id=CLIENT["client_id"],
                                           redirect_uri=REDIRECT, user_email=ADMIN,
                                           hub_id=ACME,
                                           scopes=["crm.objects.contacts.read"])})).json()
            form = {"grant_type": "refresh_token", **CLIENT,
                    "refresh_token": tokens["refresh_token"]}
            seen.clear()
            pooled.clear()
            holder.execute("BEGIN IMMEDIATE")
            waited = await client.post("/oauth/v3/token", data=form)
            assert (seen, pooled, len(waits)) == ([FAST], [], 1)

            release_on["wait"] = False
            seen.clear()
            waits.clear()
            holder.execute("BEGIN IMMEDIATE")
            handed = await client.post("/oauth/v3/token", data=form)
            assert seen == [GENERAL]
            # Both the fast path and the general route's inline try wait it out.
            assert len(waits) == 2 * len(token_module.BUSY_WAITS)
            assert len(pooled) == 1  # the general route ran the grant in a worker thread
            stats = (await client.get("/_emulator/stats")).json()
    finally:
        holder.close()
        hubspot.close()
    assert waited.status_code == handed.status_code == 200
    assert waited.json()["access_token"] != handed.json()["access_token"]
    assert stats["token"]["refresh_token"] == {"ok": 2, "error": 0}
