"""Brute force against the login form and the token endpoint (RFC 6749 §10.10): lockouts
per account / per client at an address and per remote address with exponential backoff, a
clear answer (HubSpot's 429 shape on the token endpoint, a friendly page on login), and no user
enumeration on login (same page and the same argon2 work for an unknown e-mail as for a
wrong password). The guard's clock is injected: no test sleeps or measures time."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from hubspot_oauth.client.protocol import error_from_response
from hubspot_oauth.errors import RateLimitError
from hubspot_oauth.server import hubspot as hubspot_module
from hubspot_oauth.server.bruteforce import default_guard
from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from tests.security.harness import assert_hubspot_error, changed_tables, snapshot
from tests.support.pages import Browser, authorize_path, parse_page, text_of

LEGIT = ("127.0.0.1", 50001)
ATTACKER = ("10.9.8.7", 40000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def hubspot(clock: FakeClock) -> Iterator[LocalHubSpotHandle]:
    with local_hubspot() as handle:
        handle.app.state.bruteforce = default_guard(clock=clock)
        yield handle


def _client(hubspot: LocalHubSpotHandle, peer: tuple[str, int]) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=hubspot.app, client=peer)
    return httpx.AsyncClient(transport=transport, base_url="http://localhost:8765")


async def _token(client: httpx.AsyncClient, hubspot: LocalHubSpotHandle, secret: str,
                 code: str | None = None, **headers: str) -> httpx.Response:
    return await client.post("/oauth/v3/token", headers=headers, data={
        "grant_type": "authorization_code", "client_id": hubspot.client_id,
        "client_secret": secret, "code": code or hubspot.authorize(),
        "redirect_uri": hubspot.redirect_uri,
    })


# --- token endpoint ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_endpoint_locks_a_client_at_an_address_after_ten_wrong_secrets(
    hubspot: LocalHubSpotHandle, clock: FakeClock
) -> None:
    async with _client(hubspot, ATTACKER) as attacker, _client(hubspot, LEGIT) as legit:
        for _ in range(10):
            response = await _token(attacker, hubspot, "wrong-secret")
            body = assert_hubspot_error(response, 400)
            assert body["error"] == "invalid_client"
        code = hubspot.authorize()
        before = snapshot(hubspot.database_url)
        # Locked at that address: even the right secret gets 429 there …
        locked = await _token(attacker, hubspot, hubspot.client_secret, code)
        body = assert_hubspot_error(locked, 429)
        assert body["category"] == "RATE_LIMITS"
        assert "Too many failed client authentications" in body["message"]
        assert locked.headers["retry-after"] == "1"
        assert locked.headers["cache-control"] == "no-store"
        assert not changed_tables(before, snapshot(hubspot.database_url))
        # The library reads it as its retryable rate-limit error, with the wait.
        error = error_from_response(429, locked.headers, locked.content,
                                    operation="authorization_code")
        assert isinstance(error, RateLimitError) and error.retry_after == 1
        # … while the app, from its own address, is not locked out (the client_id is public).
        assert (await _token(legit, hubspot, hubspot.client_secret, code)).status_code == 200
        # Backoff doubles with each further failure once the lock has passed.
        clock.now += 1
        assert (await _token(attacker, hubspot, "wrong")).status_code == 400
        again = await _token(attacker, hubspot, hubspot.client_secret)
        assert again.status_code == 429 and again.headers["retry-after"] == "2"
        clock.now += 2
        ok = await _token(attacker, hubspot, hubspot.client_secret)
        assert ok.status_code == 200, ok.text
        # A success clears the count of the client at that address.
        assert (await _token(attacker, hubspot, "wrong")).status_code == 400


@pytest.mark.anyio
async def test_knowing_the_client_id_never_locks_the_app_out(
    hubspot: LocalHubSpotHandle, clock: FakeClock
) -> None:
    # /tmp/adversary/bf2.py: one wrong secret per lock period, for as long as it takes, from
    # an address of the attacker's; the app's refreshes from its own address still work.
    async with _client(hubspot, ATTACKER) as attacker, _client(hubspot, LEGIT) as legit:
        tokens = (await _token(legit, hubspot, hubspot.client_secret)).json()
        longest = 0
        for _ in range(60):
            response = await attacker.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", "client_id": hubspot.client_id,
                "client_secret": "wrong", "refresh_token": "x"})
            if response.status_code == 429:
                longest = max(longest, int(response.headers["retry-after"]))
                clock.now += int(response.headers["retry-after"]) - 0.5
        clock.now += 300
        response = await attacker.post("/oauth/v3/token", data={
            "grant_type": "refresh_token", "client_id": hubspot.client_id,
            "client_secret": "wrong", "refresh_token": "x"})
        assert response.status_code == 400  # a fresh failure: locked again, now
        assert longest >= 64  # the attacker's own address is locked for a long time
        refresh = await legit.post("/oauth/v3/token", data={
            "grant_type": "refresh_token", "client_id": hubspot.client_id,
            "client_secret": hubspot.client_secret, "refresh_token": tokens["refresh_token"]})
        assert refresh.status_code == 200, refresh.text


@pytest.mark.anyio
async def test_token_endpoint_locks_an_address_that_sprays_many_clients(
    hubspot: LocalHubSpotHandle,
) -> None:
    async with _client(hubspot, ATTACKER) as attacker, _client(hubspot, LEGIT) as legit:
        for n in range(40):
            response = await attacker.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", "client_id": f"guess-{n}",
                "client_secret": "x", "refresh_token": "na1-x"})
            assert response.status_code == 400
        # The address is locked for every client, even a real one with its right secret …
        response = await _token(attacker, hubspot, hubspot.client_secret)
        assert_hubspot_error(response, 429)
        # … while other addresses are not.
        assert (await _token(legit, hubspot, hubspot.client_secret)).status_code == 200


@pytest.mark.anyio
async def test_forwarded_for_headers_do_not_change_the_key(hubspot: LocalHubSpotHandle) -> None:
    async with _client(hubspot, ATTACKER) as attacker:
        for n in range(40):
            await attacker.post("/oauth/v3/token", headers={"X-Forwarded-For": f"192.0.2.{n}"},
                                data={"grant_type": "refresh_token", "client_id": f"g{n}",
                                      "client_secret": "x", "refresh_token": "na1-x"})
        response = await _token(attacker, hubspot, hubspot.client_secret,
                                **{"X-Forwarded-For": "203.0.113.1"})
        assert response.status_code == 429


@pytest.mark.anyio
async def test_grant_failures_are_not_counted_as_guesses(hubspot: LocalHubSpotHandle) -> None:
    # Unknown refresh tokens (e.g. after uninstalls) are client bugs, not secret guesses:
    # an app with many dead connections is never locked out.
    async with _client(hubspot, LEGIT) as legit:
        for _ in range(30):
            response = await legit.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", "client_id": hubspot.client_id,
                "client_secret": hubspot.client_secret,
                "refresh_token": "na1-0000-0000-0000-0000-000000000000"})
            assert assert_hubspot_error(response, 400)["status"] == "BAD_REFRESH_TOKEN"
        assert (await _token(legit, hubspot, hubspot.client_secret)).status_code == 200


# --- login form ---------------------------------------------------------------------------


class CountingHasher:
    """Wraps the server's argon2 hasher and records every verify."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.verified: list[str] = []

    def verify(self, hash_: str, password: str) -> bool:
        self.verified.append(hash_)
        return self.inner.verify(hash_, password)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


@pytest.fixture
def hasher(monkeypatch: pytest.MonkeyPatch) -> CountingHasher:
    counting = CountingHasher(hubspot_module._password_hasher())
    monkeypatch.setattr(hubspot_module, "_hasher", counting)
    return counting


@pytest.fixture
async def browser(hubspot: LocalHubSpotHandle) -> AsyncIterator[Browser]:
    async with _client(hubspot, LEGIT) as client:
        yield Browser(client)


def _alert(page: str) -> str | None:
    """The login page's error line (``<p class="alert" role="alert">``)."""
    found = re.search(r'<p class="alert" role="alert">(.*?)</p>', page, re.S)
    return html.unescape(found.group(1).strip()) if found else None


@pytest.mark.anyio
async def test_unknown_email_and_wrong_password_look_and_cost_the_same(
    browser: Browser, hasher: CountingHasher
) -> None:
    start = await browser.get(authorize_path())
    unknown = await browser.login(start, email="nobody@example.com", password="password")
    hasher_calls_unknown = list(hasher.verified)
    hasher.verified.clear()
    wrong = await browser.login(start, email="admin@example.com", password="wrong")
    assert unknown.status_code == wrong.status_code == 200
    assert _alert(unknown.text) == _alert(wrong.text)
    assert "incorrect" in (_alert(wrong.text) or "")
    # The visible page is the same (the typed e-mail is only an input's value).
    assert text_of(unknown.text) == text_of(wrong.text)
    # One argon2 verify each, against hashes of the same parameters (same work).
    assert len(hasher_calls_unknown) == 1 and len(hasher.verified) == 1
    params = [h.rsplit("$", 2)[0] for h in hasher_calls_unknown + hasher.verified]
    assert params[0] == params[1] and params[0].startswith("$argon2id$")


@pytest.mark.anyio
async def test_login_locks_an_account_with_a_friendly_page_then_recovers(
    browser: Browser, hasher: CountingHasher, clock: FakeClock
) -> None:
    start = await browser.get(authorize_path())
    for _ in range(5):
        page = await browser.login(start, email="admin@example.com", password="guess")
    hasher.verified.clear()
    locked = await browser.login(start, email="admin@example.com", password="password")
    assert locked.status_code == 429
    assert locked.headers["content-type"].startswith("text/html")
    assert locked.headers["retry-after"] == "1"
    assert _alert(locked.text) == "Too many sign-in attempts. Wait 1 second and try again."
    assert hasher.verified == []  # a locked attempt costs no password hash
    assert any(f.action.endswith("/login") for f in parse_page(locked.text).forms)
    assert page.status_code == 200 and "incorrect" in (_alert(page.text) or "")
    clock.now += 1
    signed_in = await browser.login(start, email="admin@example.com", password="password")
    assert signed_in.status_code == 200
    # Past the login page: the account picker (its form posts to /account).
    assert any(f.action.endswith("/account") for f in parse_page(signed_in.text).forms)


@pytest.mark.anyio
async def test_unknown_accounts_lock_exactly_like_known_ones(browser: Browser) -> None:
    start = await browser.get(authorize_path())
    answers = {}
    for email in ("admin@example.com", "ghost@example.com"):
        statuses = []
        for _ in range(6):
            page = await browser.login(start, email=email, password="guess")
            statuses.append((page.status_code, _alert(page.text)))
        answers[email] = statuses
    assert answers["admin@example.com"] == answers["ghost@example.com"]
    assert answers["ghost@example.com"][-1][0] == 429


@pytest.mark.anyio
@pytest.mark.parametrize("action", ["introspect", "revoke"])
async def test_introspect_and_revoke_share_the_client_lockout(
    hubspot: LocalHubSpotHandle, action: str
) -> None:
    async with _client(hubspot, ATTACKER) as attacker:
        for _ in range(10):
            response = await attacker.post(f"/oauth/v3/token/{action}", data={
                "client_id": hubspot.client_id, "client_secret": "wrong", "token": "Cxyz"})
            assert assert_hubspot_error(response, 400)["error"] == "invalid_client"
        # Locked on every endpoint that authenticates this client.
        for path in (f"/oauth/v3/token/{action}", "/oauth/2026-03/token/introspect"):
            response = await attacker.post(path, data={
                "client_id": hubspot.client_id, "client_secret": hubspot.client_secret,
                "token": "Cxyz"})
            assert_hubspot_error(response, 429)
        assert (await _token(attacker, hubspot, hubspot.client_secret)).status_code == 429


def test_over_a_socket_rotating_forwarded_for_cannot_lock_out_the_client(
    clock: FakeClock,
) -> None:
    # uvicorn trusts X-Forwarded-For from 127.0.0.1 (its default `forwarded_allow_ips`), so
    # a local caller can choose its address key: each chosen address locks on its own, and
    # none of them locks the app out of its token calls from its real address.
    with local_hubspot(serve=True) as hubspot:
        hubspot.app.state.bruteforce = default_guard(clock=clock)
        with httpx.Client(base_url=hubspot.base_url) as client:
            def exchange(**headers: str) -> httpx.Response:
                return client.post("/oauth/v3/token", headers=headers, data={
                    "grant_type": "authorization_code", "client_id": hubspot.client_id,
                    "client_secret": hubspot.client_secret, "code": hubspot.authorize(),
                    "redirect_uri": hubspot.redirect_uri})

            for n in range(12):
                for _ in range(10):
                    response = client.post("/oauth/v3/token",
                                           headers={"X-Forwarded-For": f"198.51.100.{n}"},
                                           data={"grant_type": "refresh_token",
                                                 "client_id": hubspot.client_id,
                                                 "client_secret": "wrong",
                                                 "refresh_token": "na1-x"})
                    assert response.status_code == 400
            assert_hubspot_error(exchange(**{"X-Forwarded-For": "198.51.100.3"}), 429)
            assert exchange(**{"X-Forwarded-For": "198.51.100.200"}).status_code == 200
            assert exchange().status_code == 200
