"""Adversarial cases for the token endpoints' fast paths (issue 7) and the answers around
them: a client that leaves in the middle of its request body, and a database that cannot
take the write. Each case was a defect found by attacking the server: the guarantee is
HubSpot's error shape (or no answer at all to a client that is gone), never a 500 or a
traceback in the log, `Cache-Control: no-store` on every token-endpoint answer, and
nothing written or counted by a request that failed."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import sqlalchemy as sa

from hubspot_oauth.server import ServerSettings, create_app, storage
from hubspot_oauth.server import hubspot as hubspot_module
from hubspot_oauth.server.wire import OAuthError
from tests.security.harness import assert_hubspot_error
from tests.server.conftest import ACME, ADMIN, CLIENT, REDIRECT

FORM = (b"content-type", b"application/x-www-form-urlencoded")


def _app(tmp_path: Path) -> Any:
    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'hs.db'}",
                                    control_api=True))
    app.state.hubspot.list_apps()  # the app cache loaded: the fast paths may answer
    return app


def _code(app: Any) -> str:
    return app.state.hubspot.issue_code(
        client_id=CLIENT["client_id"], redirect_uri=REDIRECT, user_email=ADMIN,
        hub_id=ACME, scopes=["crm.objects.contacts.read"])


async def _gone_mid_body(app: Any, path: str, body: bytes) -> list[dict]:
    """Send half of `body` (Content-Length announcing all of it), then the client is gone
    (uvicorn's ``http.disconnect``). Returns what the app sent."""
    messages = [{"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
                {"type": "http.disconnect"}]
    sent: list[dict] = []
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 8765), "state": {},
             "headers": [(b"host", b"localhost:8765"), FORM,
                         (b"content-length", str(len(body)).encode())]}

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_a_client_gone_mid_body_is_not_an_internal_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends half its form and disconnects (a killed process, a timeout)
    made every token endpoint log ``internal error`` with a traceback at ERROR and answer
    500 (Starlette's `ClientDisconnect` reached the middleware's last line of defence).
    Nobody is left to answer and nothing was done: no answer, no error logged, nothing
    counted, and the grant still works for the next request."""
    app = _app(tmp_path)
    hubspot = app.state.hubspot
    try:
        tokens = hubspot.exchange_code(**CLIENT, code=_code(app), redirect_uri=REDIRECT)
        code = _code(app)
        refresh = urlencode({"grant_type": "refresh_token", **CLIENT,
                             "refresh_token": tokens["refresh_token"]}).encode()
        exchange = urlencode({"grant_type": "authorization_code", **CLIENT,
                              "redirect_uri": REDIRECT, "code": code}).encode()
        introspect = urlencode({**CLIENT, "token": tokens["access_token"]}).encode()
        stats = hubspot.stats()
        cases = [("/oauth/v3/token", refresh), ("/oauth/v1/token", refresh),
                 ("/oauth/2026-03/token", exchange), ("/oauth/v3/token/introspect", introspect),
                 ("/oauth/v3/token/revoke", introspect)]  # the last: no fast path at all
        with caplog.at_level(logging.INFO, logger="hubspot_oauth"):
            for path, body in cases:
                sent = await _gone_mid_body(app, path, body)
                assert [m for m in sent if m["type"] == "http.response.start"] == [], path
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
        assert errors == [], [r.getMessage() for r in errors]
        assert hubspot.stats() == stats  # nothing counted
        # Nothing consumed or revoked: the code and both tokens still work.
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://localhost:8765") as client:
            exchanged = await client.post("/oauth/v3/token", content=exchange, headers={
                "content-type": "application/x-www-form-urlencoded"})
            refreshed = await client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT,
                "refresh_token": tokens["refresh_token"]})
            active = await client.post("/oauth/v3/token/introspect",
                                       data={**CLIENT, "token": tokens["access_token"]})
        assert (exchanged.status_code, refreshed.status_code, active.json()["active"]) == (
            200, 200, True)
    finally:
        hubspot.close()


@pytest.mark.anyio
async def test_a_locked_database_answers_503_with_no_store_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Another process holds SQLite's write lock past the busy timeout: every token,
    introspection and revocation answer is 503 SERVICE_UNAVAILABLE in HubSpot's shape,
    and, like every other answer of these endpoints, says ``Cache-Control: no-store`` and
    ``Pragma: no-cache`` (docs/security.md row 3; the middleware's 503 had neither). The
    code is not consumed, nothing is counted, and once the lock is gone the same requests
    succeed."""
    monkeypatch.setattr(storage, "BUSY_TIMEOUT_MS", 50)  # pooled connections' wait
    app = _app(tmp_path)
    hubspot = app.state.hubspot
    holder = sqlite3.connect(tmp_path / "hs.db", isolation_level=None)
    try:
        tokens = hubspot.exchange_code(**CLIENT, code=_code(app), redirect_uri=REDIRECT)
        code = _code(app)
        stats = hubspot.stats()
        calls = [
            ("/oauth/v3/token", {"grant_type": "authorization_code", **CLIENT,
                                 "redirect_uri": REDIRECT, "code": code}),
            ("/oauth/v1/token", {"grant_type": "refresh_token", **CLIENT,
                                 "refresh_token": tokens["refresh_token"]}),
            ("/oauth/2026-03/token", {"grant_type": "refresh_token", **CLIENT,
                                      "refresh_token": tokens["refresh_token"]}),
            ("/oauth/v3/token/introspect", {**CLIENT, "token": tokens["access_token"]}),
            ("/oauth/v3/token/revoke", {**CLIENT, "token": "na1-unknown"}),
        ]
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport,
                                     base_url="http://localhost:8765") as client:
            holder.execute("BEGIN IMMEDIATE")
            with caplog.at_level(logging.INFO, logger="hubspot_oauth"):
                locked = [await client.post(path, data=data) for path, data in calls]
            holder.execute("ROLLBACK")
            assert hubspot.stats() == stats  # the failed requests counted nothing
            again = [await client.post(path, data=data) for path, data in calls]
        for (path, _data), response in zip(calls, locked, strict=True):
            body = assert_hubspot_error(response, 503)
            assert body["category"] == "SERVICE_UNAVAILABLE", path
            assert response.headers["retry-after"] == "1", path
            assert response.headers.get("cache-control") == "no-store", path
            assert response.headers.get("pragma") == "no-cache", path
            assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
        assert [r.exc_info for r in caplog.records if r.exc_info] == []
        assert [r.status_code for r in again] == [200] * len(calls)
        assert again[0].json()["refresh_token"] != tokens["refresh_token"]  # a new grant
    finally:
        holder.close()
        hubspot.close()


@pytest.mark.postgres
def test_uninstall_during_a_code_exchange_revokes_its_tokens(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL (READ COMMITTED, another process or thread): a code exchange has locked
    and consumed its code and is about to insert its tokens when the app is uninstalled
    from the portal. Uninstall revoked the portal's tokens first and deleted its unused
    codes last: its UPDATEs did not see the exchange's tokens (not yet committed), and
    its DELETE, after waiting for the code's row lock, skipped the now-consumed code. The
    exchange's refresh and access tokens stayed live in an uninstalled portal. Whatever
    the order, once the uninstall has committed no token of that install may work."""
    app = create_app(ServerSettings(database_url=postgres_url))
    hubspot = app.state.hubspot
    holding, go = threading.Event(), threading.Event()
    issue = hubspot_module.LocalHubSpot._issue_for_code

    def paused_issue(self: Any, *args: Any) -> Any:
        holding.set()  # the code row is locked and marked consumed
        assert go.wait(60)
        return issue(self, *args)

    try:
        code = _code(app)
        app_id = hubspot.app(CLIENT["client_id"]).app_id
        monkeypatch.setattr(hubspot_module.LocalHubSpot, "_issue_for_code", paused_issue)
        results: dict[str, Any] = {}

        def exchange() -> None:
            results["tokens"] = hubspot.exchange_code(**CLIENT, code=code,
                                                      redirect_uri=REDIRECT)

        def uninstall() -> None:
            results["uninstalled"] = hubspot.uninstall(app_id, ACME)

        exchanging = threading.Thread(target=exchange)
        exchanging.start()
        assert holding.wait(60)
        uninstalling = threading.Thread(target=uninstall)
        uninstalling.start()
        # The uninstall now waits for a row lock the exchange holds (bounded poll; running
        # out of time fails instead of going on with the interleaving not set up).
        with sa.create_engine(postgres_url).connect() as watcher:
            deadline = time.monotonic() + 60
            while uninstalling.is_alive():
                waiting = watcher.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND wait_event_type = 'Lock'")).scalar()
                if waiting:
                    break
                assert time.monotonic() < deadline, "the uninstall neither waited nor ended"
                watcher.rollback()
                time.sleep(0.01)
        go.set()
        exchanging.join(60)
        uninstalling.join(60)
        monkeypatch.undo()
        assert results["uninstalled"] is True
        tokens = results["tokens"]
        with pytest.raises(OAuthError) as refused:
            hubspot.refresh(**CLIENT, refresh_token=tokens["refresh_token"])
        assert refused.value.status == "BAD_REFRESH_TOKEN"
        assert hubspot.introspect(**CLIENT, token=tokens["access_token"]) == {"active": False}
        assert hubspot.access_token_info(tokens["access_token"]) is None
    finally:
        go.set()
        hubspot.close()
