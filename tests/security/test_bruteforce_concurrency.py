"""Brute force with guesses sent at once: attempts in flight count against the lockout.

The credential check runs on a worker thread, so guesses sent together used to pass the
guard's check before the first failure was recorded (200 concurrent wrong secrets from one
address all got 400, none 429; on the login form one password guess per worker thread per
lockout instead of 5). Each route test holds the domain call (`Held`) until every request
is provably in flight at once (in the credential check, or held back by the guard), then
lets them go: at most the limit reached the credential check and the rest got 429 in the
same shape as a sequential guess. The guard's clock is injected; nothing waits on time."""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa

from hubspot_oauth.server.bruteforce import (
    BruteForceGuard,
    Policy,
    default_guard,
    login_keys,
    token_keys,
)
from hubspot_oauth.server.storage import FastPathMiss
from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from tests.security.harness import assert_hubspot_error
from tests.support.pages import Browser, authorize_path

ATTACKER = ("10.9.8.7", 40000)
LEGIT = ("127.0.0.1", 50001)
NOW = 5000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the guard waits on the running asyncio loop (uvicorn's)


@pytest.fixture
def hubspot() -> Iterator[LocalHubSpotHandle]:
    with local_hubspot() as handle:
        handle.app.state.bruteforce = default_guard(clock=lambda: NOW)
        yield handle


def _client(hubspot: LocalHubSpotHandle, peer: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=hubspot.app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://localhost:8765",
                             timeout=120)


class Held:
    """A domain call held on its worker thread until `go`; counts the calls that reached
    it (the credential check). Inline (event-loop) tries miss, so each request takes the
    thread-pool path where the race was."""

    def __init__(self, original: Callable[..., Any]) -> None:
        self.original = original
        self.go = threading.Event()
        self.entered = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("inline"):
            raise FastPathMiss
        with self._lock:
            self.entered += 1
        assert self.go.wait(120)
        return self.original(*args, **kwargs)


async def _when_all_in_flight(held: Held, guard: BruteForceGuard, count: int) -> None:
    """Wait (bounded) until `count` requests are in the held call or held back by the
    guard, i.e. all in flight at once; then let the held calls go."""
    deadline = time.monotonic() + 120
    while held.entered + guard.waiting < count:
        assert time.monotonic() < deadline, (held.entered, guard.waiting)
        await anyio.sleep(0.002)
    held.go.set()


async def _until_one_waits(guard: BruteForceGuard) -> None:
    """Until an attempt is held back by the guard (bounded: a guard that never holds one
    back fails here instead of hanging the run)."""
    deadline = time.monotonic() + 60
    while guard.waiting < 1:
        assert time.monotonic() < deadline, "no attempt was held back"
        await anyio.sleep(0)


async def _gather(calls: list[Callable[[], Any]]) -> list[httpx.Response]:
    results: list[Any] = [None] * len(calls)

    async def run(index: int) -> None:
        results[index] = await calls[index]()

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(run, index)
    return results


# --- token endpoint ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_wrong_secrets_reach_the_check_at_most_the_limit(
    hubspot: LocalHubSpotHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = hubspot.app.state.bruteforce
    held = Held(hubspot.server.refresh)
    monkeypatch.setattr(hubspot.server, "refresh", held)
    count = 30  # the client-at-an-address limit is 10 (the address alone: 40)
    async with _client(hubspot, ATTACKER) as attacker:
        def guess(index: int) -> Callable[[], Any]:
            return lambda: attacker.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", "client_id": hubspot.client_id,
                "client_secret": f"guess-{index}", "refresh_token": "na1-x"})

        async with anyio.create_task_group() as group:
            group.start_soon(_when_all_in_flight, held, guard, count)
            responses = await _gather([guess(i) for i in range(count)])
    assert held.entered == 10  # as many as sequential guesses get before the lockout
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == count - 10
    for response in refused:  # exactly the 429 of the eleventh sequential guess
        body = assert_hubspot_error(response, 429)
        assert body["category"] == "RATE_LIMITS"
        assert "Too many failed client authentications" in body["message"]
        assert response.headers["retry-after"] == "1"
    checked = [r for r in responses if r.status_code != 429]
    assert all(assert_hubspot_error(r, 400)["error"] == "invalid_client" for r in checked)
    assert guard.pending(token_keys(hubspot.client_id, ATTACKER[0])[0]) == 0


@pytest.mark.anyio
async def test_a_legitimate_clients_concurrent_calls_are_never_refused(
    hubspot: LocalHubSpotHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More calls in flight than the limit: the ones over it wait for the others to settle,
    # and successes clear, so every call goes through.
    guard = hubspot.app.state.bruteforce
    async with _client(hubspot, LEGIT) as legit:
        tokens = (await legit.post("/oauth/v3/token", data={
            "grant_type": "authorization_code", "client_id": hubspot.client_id,
            "client_secret": hubspot.client_secret, "code": hubspot.authorize(),
            "redirect_uri": hubspot.redirect_uri})).json()
        held = Held(hubspot.server.introspect)
        monkeypatch.setattr(hubspot.server, "introspect", held)
        count = 15

        def introspect() -> Any:
            return legit.post("/oauth/v3/token/introspect", data={
                "client_id": hubspot.client_id, "client_secret": hubspot.client_secret,
                "token": tokens["access_token"]})

        async with anyio.create_task_group() as group:
            group.start_soon(_when_all_in_flight, held, guard, count)
            responses = await _gather([introspect] * count)
    assert [r.status_code for r in responses] == [200] * count
    assert all(r.json()["active"] is True for r in responses)
    assert held.entered == count
    keys = token_keys(hubspot.client_id, LEGIT[0])
    assert guard.check(*keys).allowed and [guard.pending(k) for k in keys] == [0, 0]


@pytest.mark.anyio
async def test_a_database_error_releases_the_reservation(
    hubspot: LocalHubSpotHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> Any:
        if kwargs.get("inline"):
            raise FastPathMiss
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("database is gone"))

    monkeypatch.setattr(hubspot.server, "refresh", broken)
    guard = hubspot.app.state.bruteforce
    async with _client(hubspot, ATTACKER) as attacker:
        for _ in range(15):  # more than the limit: nothing was counted, nothing leaked
            response = await attacker.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", "client_id": hubspot.client_id,
                "client_secret": "wrong", "refresh_token": "na1-x"})
            assert response.status_code == 503
    keys = token_keys(hubspot.client_id, ATTACKER[0])
    assert [guard.pending(k) for k in keys] == [0, 0] and guard.check(*keys).allowed


# --- login form -------------------------------------------------------------------------


def _alert(page: str) -> str | None:
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1).strip()) if found else None


@pytest.mark.anyio
async def test_concurrent_password_guesses_reach_the_check_at_most_the_limit(
    hubspot: LocalHubSpotHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    guard = hubspot.app.state.bruteforce
    count = 15  # the per-account limit is 5 (the address alone: 20)
    async with _client(hubspot, ATTACKER) as client:
        browser = Browser(client)
        start = await browser.get(authorize_path())
        held = Held(hubspot.server.authenticate_user)
        monkeypatch.setattr(hubspot.server, "authenticate_user", held)

        def guess(index: int) -> Callable[[], Any]:
            return lambda: browser.login(start, email="admin@example.com",
                                         password=f"guess-{index}")

        async with anyio.create_task_group() as group:
            group.start_soon(_when_all_in_flight, held, guard, count)
            responses = await _gather([guess(i) for i in range(count)])
    assert held.entered == 5  # one argon2 check per free guess, not one per worker thread
    refused = [r for r in responses if r.status_code == 429]
    assert len(refused) == count - 5
    for response in refused:  # the page a sixth sequential guess gets
        assert response.headers["retry-after"] == "1"
        assert _alert(response.text) == "Too many sign-in attempts. Wait 1 second and try again."
    for response in responses:
        if response.status_code != 429:
            assert response.status_code == 200 and "incorrect" in (_alert(response.text) or "")
    assert [guard.pending(k) for k in login_keys("admin@example.com", ATTACKER[0])] == [0, 0]


# --- the guard itself -------------------------------------------------------------------


def _guard() -> BruteForceGuard:
    return BruteForceGuard(Policy(free_failures=3), clock=lambda: NOW)


@pytest.mark.anyio
async def test_held_back_attempts_are_judged_when_those_in_flight_settle() -> None:
    guard = _guard()
    first = [await guard.enter("k") for _ in range(3)]
    assert all(a.allowed for a in first) and guard.pending("k") == 3
    assert guard.try_enter("k").busy  # three failures in flight could lock "k"
    outcome: list[Any] = []

    async def late() -> None:
        outcome.append(await guard.enter("k"))

    async with anyio.create_task_group() as group:
        group.start_soon(late)
        await _until_one_waits(guard)
        for attempt in first:
            attempt.failure()
    (refused,) = outcome
    assert not refused.allowed and refused.verdict.retry_after == 1.0  # as sequential
    assert guard.pending("k") == 0
    # Successes instead: the held-back attempt goes ahead.
    guard.reset()
    first = [await guard.enter("k") for _ in range(3)]
    outcome.clear()
    async with anyio.create_task_group() as group:
        group.start_soon(late)
        await _until_one_waits(guard)
        for attempt in first:
            attempt.success()
    (admitted,) = outcome
    assert admitted.allowed and guard.pending("k") == 1
    admitted.release()
    assert guard.pending("k") == 0


@pytest.mark.anyio
async def test_sequential_attempts_behave_as_before() -> None:
    guard = _guard()
    for _ in range(2):
        with await guard.enter("k") as attempt:
            assert attempt.allowed and attempt.failure().allowed
    with await guard.enter("k") as attempt:
        assert not attempt.failure().allowed  # the third failure locks for 1 s
    locked = await guard.enter("k")
    assert not locked.allowed and not locked.busy and locked.verdict.retry_after_header == "1"
    assert guard.pending("k") == 0


@pytest.mark.anyio
async def test_reservations_are_released_on_errors_and_cancellation() -> None:
    guard = _guard()
    attempt = await guard.enter("k", "r")
    with pytest.raises(RuntimeError), attempt:
        raise RuntimeError("the credential check crashed")
    assert guard.pending("k") == guard.pending("r") == 0
    held = [await guard.enter("k") for _ in range(3)]
    with anyio.CancelScope() as scope:  # a waiter whose request was cancelled
        scope.cancel()
        await guard.enter("k")
    assert guard.waiting == 0 and guard.pending("k") == 3
    with anyio.move_on_after(0):  # and one whose wait is cut short from outside
        await guard.enter("k")
    assert guard.waiting == 0 and guard.pending("k") == 3
    for attempt in held:
        attempt.release()
        attempt.release()  # idempotent
    assert guard.pending("k") == 0 and (await guard.enter("k")).allowed


@pytest.mark.anyio
async def test_waiting_is_bounded() -> None:
    guard = _guard()
    guard.max_wait = 0.0  # attempts in flight that never settle: refused, not hung
    held = [await guard.enter("k") for _ in range(3)]
    refused = await guard.enter("k")
    assert not refused.allowed and refused.busy and guard.waiting == 0
    assert refused.verdict.retry_after_header == "1"
    for attempt in held:
        attempt.release()
