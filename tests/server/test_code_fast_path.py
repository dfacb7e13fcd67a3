"""The authorization_code exchange's fast path (`LocalHubSpot._exchange_fast`, issue 7):
the common case runs in one short transaction (inline on the event loop on SQLite), and
everything else falls back to the general path, which alone answers refusals. So both
paths must give the same answers, count the same stats, keep codes single use (a replay
revokes the tokens of the first exchange even when that went through the fast path,
RFC 6749 §4.1.2), also between two servers on one database; and the common case must
really take the fast path."""

from __future__ import annotations

import base64
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from hubspot_oauth.server import ServerSettings
from hubspot_oauth.server.storage import FastPathMiss

from .conftest import ACME, CLIENT, REDIRECT, Harness, harness_for, race

pytestmark = pytest.mark.anyio

VERIFIER = "v" * 20 + "-._~" + "A1" * 12  # 48 unreserved characters (RFC 7636 §4.1)
VOLATILE = {"access_token", "refresh_token", "correlationId"}


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


class Spy:
    """Counts the general path's code exchanges (`LocalHubSpot._run` for the
    authorization_code grant) and thread-pool hops (`LocalHubSpot.call`)."""

    def __init__(self, hubspot: Any) -> None:
        self.general = 0
        self.hops = 0
        run, call = hubspot._run, hubspot.call

        def counted_run(endpoint: str, grant_type: str, *args: Any) -> Any:
            if (endpoint, grant_type) == ("token", "authorization_code"):
                self.general += 1
            return run(endpoint, grant_type, *args)

        async def counted_call(func: Any, *args: Any) -> Any:
            self.hops += 1
            return await call(func, *args)

        hubspot._run = counted_run
        hubspot.call = counted_call

    def reset(self) -> None:
        self.general = self.hops = 0


class Server(Harness):
    """The suite's `Harness` (code, exchange) with a `Spy` and the exchange's stats."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        super().__init__(app, client)
        self.spy = Spy(self.hubspot)

    async def stats(self) -> dict[str, int]:
        return (await self.client.get("/_emulator/stats")).json()["token"][
            "authorization_code"]


@asynccontextmanager
async def serving(database_url: str, factory: Any) -> AsyncIterator[Server]:
    """A local HubSpot on `database_url` (`harness_for`; `hs_factory` closes it)."""
    harness = await harness_for(ServerSettings(database_url=database_url), factory)
    async with harness.client:
        yield Server(harness.app, harness.client)


def _answer(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    """Status and body without per-call values (tokens, correlation id); the whole
    seconds of an expiry message normalized (time passes between the two runs)."""
    body = {k: v for k, v in response.json().items() if k not in VOLATILE}
    for key in ("message", "error_description"):
        if isinstance(body.get(key), str):
            body[key] = re.sub(r"expired \d+ second", "expired N second", body[key])
    return response.status_code, body


async def _case(server: Server, name: str, other_client: str) -> list[tuple[int, dict]]:
    """One scenario on fresh codes; every answer it got, in order."""
    if name == "ok":
        return [_answer(await server.exchange(server.code()))]
    if name == "pkce_ok":
        code = server.code(code_challenge=_s256(VERIFIER), code_challenge_method="S256")
        return [_answer(await server.exchange(code, code_verifier=VERIFIER))]
    if name == "wrong_secret":
        return [_answer(await server.exchange(server.code(), client_secret="not-the-secret"))]
    if name == "unknown_client":
        return [_answer(await server.exchange(server.code(), client_id="no-such-client"))]
    if name == "wrong_redirect_uri":
        return [_answer(await server.exchange(
            server.code(), redirect_uri="http://localhost:3000/elsewhere"))]
    if name == "unknown_code":
        return [_answer(await server.exchange("na1-0000-0000-0000-0000-000000000000"))]
    if name == "another_clients_code":
        code = server.code(client_id=other_client, optional_scopes=[])  # it has only one
        return [_answer(await server.exchange(code))]
    if name == "pkce_mismatch":
        code = server.code(code_challenge=_s256(VERIFIER), code_challenge_method="S256")
        return [_answer(await server.exchange(code, code_verifier=VERIFIER[::-1]))]
    if name == "pkce_missing_verifier":
        code = server.code(code_challenge=_s256(VERIFIER), code_challenge_method="S256")
        return [_answer(await server.exchange(code))]
    if name == "unbound_verifier":
        return [_answer(await server.exchange(server.code(), code_verifier=VERIFIER))]
    if name == "expired":
        code = server.code()
        server.hubspot.clock.advance(server.hubspot.settings.code_ttl + 30)
        try:
            return [_answer(await server.exchange(code))]
        finally:
            server.hubspot.clock.reset()
    if name == "fault":  # a queued fault answers first, then the code still works
        code = server.code()
        server.hubspot.faults.add("token", "server_error")
        return [_answer(await server.exchange(code)), _answer(await server.exchange(code))]
    if name == "replay":
        code = server.code()
        first = await server.exchange(code)
        replay = await server.exchange(code)
        tokens = first.json()
        refresh = await server.client.post("/oauth/v3/token", data={
            "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
        introspect = await server.client.post("/oauth/v3/token/introspect", data={
            **CLIENT, "token": tokens["access_token"]})
        return [_answer(first), _answer(replay), _answer(refresh), _answer(introspect)]
    if name == "uninstalled":  # last: it revokes every token of the app in ACME
        code = server.code()
        app_id = server.hubspot.app(CLIENT["client_id"]).app_id
        assert server.hubspot.uninstall(app_id, ACME)
        return [_answer(await server.exchange(code))]
    raise AssertionError(name)


CASES = ("ok", "pkce_ok", "wrong_secret", "unknown_client", "wrong_redirect_uri",
         "unknown_code", "another_clients_code", "pkce_mismatch", "pkce_missing_verifier",
         "unbound_verifier", "expired", "fault", "replay", "uninstalled")
# What each case must answer (HTTP status, HubSpot status), on both paths.
EXPECTED = {
    "ok": [(200, None)],
    "pkce_ok": [(200, None)],
    "wrong_secret": [(400, "BAD_CLIENT_SECRET")],
    "unknown_client": [(400, "BAD_CLIENT_ID")],
    "wrong_redirect_uri": [(400, "BAD_REDIRECT_URI")],
    "unknown_code": [(400, "BAD_AUTH_CODE")],
    "another_clients_code": [(400, "BAD_AUTH_CODE")],
    "pkce_mismatch": [(400, "BAD_CODE_VERIFIER")],
    "pkce_missing_verifier": [(400, "BAD_CODE_VERIFIER")],
    "unbound_verifier": [(400, "BAD_CODE_VERIFIER")],
    "expired": [(400, "EXPIRED_AUTH_CODE")],
    "fault": [(500, "error"), (200, None)],
    "replay": [(200, None), (400, "BAD_AUTH_CODE"), (400, "BAD_REFRESH_TOKEN"), (200, None)],
    "uninstalled": [(400, "BAD_AUTH_CODE")],
}


def _general_only(server: Server) -> Callable[[], None]:
    """Make every fast-path transaction miss, so the general path answers everything;
    returns the undo."""
    def miss(_inline: bool) -> Any:
        raise FastPathMiss

    server.hubspot._fast_transaction = miss
    return lambda: delattr(server.hubspot, "_fast_transaction")


async def test_fast_path_answers_as_the_general_path(database_url: str, hs_factory: Any) -> None:
    async with serving(database_url, hs_factory) as server:
        _, other_client, _ = server.hubspot.create_app_registration(
            name="Other app", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
        answers: dict[str, dict[str, list]] = {}
        counted: dict[str, dict[str, int]] = {}
        general_calls: dict[str, dict[str, int]] = {}
        for mode in ("fast", "general"):
            undo = _general_only(server) if mode == "general" else (lambda: None)
            try:
                answers[mode], counted[mode], general_calls[mode] = {}, {}, {}
                for name in CASES:
                    before = await server.stats()
                    server.spy.reset()
                    answers[mode][name] = await _case(server, name, other_client)
                    general_calls[mode][name] = server.spy.general
                    after = await server.stats()
                    counted[mode][name] = {k: after[k] - before[k] for k in after}
            finally:
                undo()
    assert answers["fast"] == answers["general"]
    assert counted["fast"] == counted["general"]
    assert set(EXPECTED) == set(CASES)  # a case added without its answers fails here
    for name, expected in EXPECTED.items():
        got = [(status, body.get("status")) for status, body in answers["fast"][name]]
        assert got == expected, name
    assert answers["fast"]["replay"][2][1]["message"].endswith(
        "its authorization code was used twice, so its tokens were revoked (RFC 6749 §4.1.2)")
    assert answers["fast"]["replay"][3][1] == {"active": False}
    assert counted["fast"]["ok"] == {"ok": 1, "error": 0}
    assert counted["fast"]["replay"] == {"ok": 1, "error": 1}
    assert counted["fast"]["wrong_secret"] == {"ok": 0, "error": 1}
    # The common cases never reached the general path; every refusal did (it alone
    # answers them), and without the fast path everything did.
    assert general_calls["fast"]["ok"] == general_calls["fast"]["pkce_ok"] == 0
    assert general_calls["fast"]["replay"] == 1  # the replay, not the first exchange
    assert general_calls["fast"]["fault"] == 0  # the fault answered, then the fast path
    assert all(general_calls["fast"][n] == 1 for n in CASES if n not in
               ("ok", "pkce_ok", "replay", "fault"))
    assert general_calls["general"]["ok"] == 1
    assert general_calls["general"]["fault"] == 2  # found the fault; then exchanged
    assert general_calls["general"]["replay"] == 2


async def test_common_exchange_takes_the_fast_path(database_url: str, hs_factory: Any) -> None:
    """A regression to the general path (or, on SQLite, off the event loop) fails here."""
    async with serving(database_url, hs_factory) as server:
        code = server.code()
        server.spy.reset()
        response = await server.exchange(code)
        assert response.status_code == 200, response.text
        assert response.json()["refresh_token"]
        assert server.spy.general == 0
        sqlite = server.hubspot.engine.dialect.name == "sqlite"
        # SQLite: answered on the event loop (no thread hop); PostgreSQL: one hop.
        assert server.spy.hops == (0 if sqlite else 1)
        assert await server.stats() == {"ok": 1, "error": 0}
        # The spy sees the general path when it is taken.
        server.spy.reset()
        replay = await server.exchange(code)
        assert replay.status_code == 400
        assert server.spy.general == 1


async def test_replay_on_another_server_revokes_fast_path_tokens(
        database_url: str, hs_factory: Any) -> None:
    """Two servers on one database (as two processes): the first exchange on one takes
    the fast path; the replay on the other is refused and revokes those tokens."""
    async with serving(database_url, hs_factory) as first, \
            serving(database_url, hs_factory) as second:
        code = first.code()
        first.spy.reset()
        tokens = (await first.exchange(code)).json()
        assert first.spy.general == 0 and tokens["access_token"]
        replay = await second.exchange(code)
        assert replay.status_code == 400
        assert replay.json()["status"] == "BAD_AUTH_CODE"
        refresh = await first.client.post("/oauth/v3/token", data={
            "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
        assert refresh.status_code == 400
        assert "its authorization code was used twice" in refresh.json()["message"]
        api = await first.client.get("/crm/v3/objects/contacts", headers={
            "Authorization": f"Bearer {tokens['access_token']}"})
        assert api.status_code == 401
        assert await first.stats() == {"ok": 1, "error": 1}


async def test_concurrent_fast_path_exchanges_of_one_code_have_one_winner(
        database_url: str, hs_factory: Any) -> None:
    """Ten threads on two servers exchange one code at once through the fast path (the
    thread-pool form, as a request that missed inline runs it): exactly one wins, the
    others are replays, and the replays revoke the winner's tokens."""
    async with serving(database_url, hs_factory) as first, \
            serving(database_url, hs_factory) as second:
        code = first.code()
        calls = [
            (lambda h=h: h.exchange_code(**CLIENT, code=code, redirect_uri=REDIRECT,
                                         fault_endpoint="token"))
            for h in [first.hubspot, second.hubspot] * 5
        ]
        results = race(calls)
        wins = [r for r in results if isinstance(r, dict)]
        assert len(wins) == 1, results
        assert [getattr(r, "status", r) for r in results if r is not wins[0]] == \
            ["BAD_AUTH_CODE"] * 9
        refresh = await first.client.post("/oauth/v3/token", data={
            "grant_type": "refresh_token", **CLIENT,
            "refresh_token": wins[0]["refresh_token"]})
        assert refresh.status_code == 400
        assert await first.stats() == {"ok": 1, "error": 9}


async def test_exchange_waits_for_busy_sqlite_in_the_thread_pool(
        sqlite_url: str, hs_factory: Any) -> None:
    """Another connection holds SQLite's write lock: the inline attempt does not fail
    the request; it waits in the thread pool, succeeds, and is counted once."""
    path = sqlite_url.removeprefix("sqlite:///")
    async with serving(sqlite_url, hs_factory) as server:
        code = server.code()
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            holder.execute("BEGIN IMMEDIATE")
            server.spy.reset()

            def release_once_handed_over() -> None:
                # The lock goes once the request has left the event loop for the thread
                # pool. (A 0.3 s timer raced the request: started late on a loaded
                # machine, it found the lock gone and never needed the thread pool.)
                deadline = time.monotonic() + 30
                while server.spy.hops == 0 and time.monotonic() < deadline:
                    time.sleep(0.005)
                holder.execute("ROLLBACK")

            releaser = threading.Thread(target=release_once_handed_over)
            releaser.start()
            try:
                response = await server.exchange(code)
            finally:
                releaser.join(timeout=60)
        finally:
            holder.close()
        assert response.status_code == 200, response.text
        assert server.spy.hops >= 1  # it went to the thread pool
        assert server.spy.general == 0  # and still took the fast path there
        assert await server.stats() == {"ok": 1, "error": 0}
