"""The hot paths (refresh without rotation, introspection of an access token, GET
contacts) answer exactly as the general code does, count their calls once, and when
SQLite is busy they wait in the thread pool instead of failing (storage.InlineConnection)."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.server.storage import FastPathMiss

from .conftest import ACME, ADMIN, CLIENT, REDIRECT

VOLATILE = {"access_token", "expires_in", "correlationId"}


def _code(hubspot: Any) -> str:
    return hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                              user_email=ADMIN, hub_id=ACME,
                              scopes=["crm.objects.contacts.read"])


async def _answers(client: httpx.AsyncClient, tokens: dict[str, Any]) -> dict[str, Any]:
    refresh = await client.post("/oauth/v3/token", data={
        "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
    intro = await client.post("/oauth/v3/token/introspect", data={
        **CLIENT, "token": tokens["access_token"]})
    api = await client.get("/crm/v3/objects/contacts?limit=2",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})
    out: dict[str, Any] = {}
    for name, response in (("refresh", refresh), ("introspect", intro), ("api", api)):
        body = response.json()
        out[name] = (response.status_code,
                     {k: v for k, v in body.items() if k not in VOLATILE},
                     sorted(k for k in response.headers if k.startswith("x-hubspot-ratelimit")),
                     response.headers.get("cache-control"))
    return out


@pytest.mark.anyio
async def test_hot_paths_answer_as_the_general_code(database_url: str) -> None:
    app = create_app(ServerSettings(database_url=database_url))
    hubspot = app.state.hubspot
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            tokens = (await client.post("/oauth/v3/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": _code(hubspot)})).json()
            fast = await _answers(client, tokens)

            def miss(_inline: bool) -> Any:
                raise FastPathMiss

            hubspot._fast_transaction = miss  # every request takes the general code
            general = await _answers(client, tokens)
            del hubspot._fast_transaction
            stats = (await client.get("/_emulator/stats")).json()
    finally:
        hubspot.close()
    assert fast == general
    assert fast["refresh"][0] == fast["introspect"][0] == fast["api"][0] == 200
    assert fast["introspect"][1]["active"] is True
    assert len(fast["api"][1]["results"]) == 2
    assert fast["api"][2]  # rate-limit headers on both paths
    assert stats["token"]["refresh_token"] == {"ok": 2, "error": 0}
    assert stats["introspect"] == {"ok": 2, "error": 0}
    assert stats["api"] == {"ok": 2, "error": 0}


@pytest.mark.anyio
async def test_busy_sqlite_waits_in_the_thread_pool(tmp_path) -> None:
    """Another process holds SQLite's write lock: the request does not fail on the event
    loop's no-wait connection; it waits in the thread pool and then succeeds, counted
    once."""
    path = tmp_path / "busy.db"
    app = create_app(ServerSettings(database_url=f"sqlite:///{path}"))
    hubspot = app.state.hubspot
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://local-hubspot.test") as client:
            tokens = (await client.post("/oauth/v3/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": _code(hubspot)})).json()
            answers = {}
            for name in ("refresh", "introspect", "api"):
                holder.execute("BEGIN IMMEDIATE")
                timer = threading.Timer(0.3, holder.execute, ("ROLLBACK",))
                timer.start()
                try:
                    if name == "refresh":
                        response = await client.post("/oauth/v3/token", data={
                            "grant_type": "refresh_token", **CLIENT,
                            "refresh_token": tokens["refresh_token"]})
                    elif name == "introspect":
                        response = await client.post("/oauth/v3/token/introspect", data={
                            **CLIENT, "token": tokens["access_token"]})
                    else:
                        response = await client.get("/crm/v3/objects/contacts", headers={
                            "Authorization": f"Bearer {tokens['access_token']}"})
                finally:
                    timer.join()
                answers[name] = (response.status_code, response.json())
            stats = (await client.get("/_emulator/stats")).json()
    finally:
        holder.close()
        hubspot.close()
    assert answers["refresh"][0] == 200 and answers["refresh"][1]["access_token"]
    assert answers["introspect"] == (200, answers["introspect"][1])
    assert answers["introspect"][1]["active"] is True
    assert answers["api"][0] == 200 and answers["api"][1]["results"]
    assert stats["token"]["refresh_token"] == {"ok": 1, "error": 0}
    assert stats["introspect"] == {"ok": 1, "error": 0}
    assert stats["api"] == {"ok": 1, "error": 0}
