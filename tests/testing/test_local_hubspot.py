"""`local_hubspot()` and `InProcessTransport` from plain Python (what other runners use)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hubspot_oauth import InvalidAuthorizationCodeError, ReauthorizationRequiredError
from hubspot_oauth.testing import InProcessTransport, local_hubspot


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_context_manager_full_flow_and_cleanup() -> None:
    with local_hubspot() as hubspot:
        folder = hubspot.directory
        assert folder.exists()
        client = hubspot.oauth_client()
        token = client.exchange_code(hubspot.authorize(user="admin@example.com", portal=7654321))
        assert token.hub_id == 7654321
        # Portal 7654321 lacks `automation`: the optional scope is dropped (DESIGN §4).
        assert "automation" not in token.scopes
        with hubspot.http_client(headers={"Authorization": f"Bearer {token.access_token}"}) as api:
            contacts = api.get("/crm/v3/objects/contacts").json()["results"]
        assert len(contacts) == 3
        refreshed = client.refresh(token.refresh_token)
        assert refreshed.access_token != token.access_token
        assert hubspot.stats()["token"]["refresh_token"]["ok"] == 1
    assert not folder.exists()


def test_given_directory_keeps_the_database(tmp_path: Path) -> None:
    with local_hubspot(directory=tmp_path / "hs") as hubspot:
        url = hubspot.database_url
    assert url == f"sqlite:///{tmp_path / 'hs' / 'local-hubspot.db'}"
    assert (tmp_path / "hs" / "local-hubspot.db").exists()


def test_every_instance_registers_a_fresh_app_on_a_fresh_database() -> None:
    with local_hubspot() as first, local_hubspot() as second:
        assert first.client_id != second.client_id
        assert first.database_url != second.database_url
        first.advance(3600)
        assert abs(second.now() - datetime.now(UTC)) < timedelta(minutes=1)
        assert first.now() - second.now() > timedelta(minutes=59)
        token = first.connect()
        first.uninstall()
        # The second server never saw the first one's install or tokens.
        assert second.stats()["token"]["authorization_code"]["ok"] == 0
        assert second.connect().hub_id == token.hub_id


def test_authorize_checks_install_rules() -> None:
    from hubspot_oauth.server import InstallError

    with local_hubspot() as hubspot:
        # viewer@example.com may not install into 1234567 (DESIGN §4).
        with pytest.raises(InstallError):
            hubspot.authorize(user="viewer@example.com", portal=1234567)
        # An optional scope put in `scope` is HubSpot's scope-mismatch error (case C8).
        with pytest.raises(InstallError):
            hubspot.authorize(scopes=["crm.objects.contacts.read", "automation"],
                              optional_scopes=[])


def test_codes_age_with_the_clock() -> None:
    with local_hubspot(code_ttl=60) as hubspot:
        code = hubspot.authorize()
        hubspot.advance(61)
        with pytest.raises(InvalidAuthorizationCodeError):
            hubspot.oauth_client().exchange_code(code)


def test_clients_follow_the_server_clock() -> None:
    with local_hubspot() as hubspot:
        hubspot.advance(7200)
        token = hubspot.oauth_client().exchange_code(hubspot.authorize())
        # expires_at is on HubSpot's clock, two hours ahead of the wall clock.
        assert abs((token.expires_at - hubspot.now()).total_seconds() - 1800) < 60
        mine = hubspot.oauth_client(follow_clock=False).exchange_code(hubspot.authorize())
        assert abs((mine.expires_at - datetime.now(UTC)).total_seconds() - 1800) < 60


def test_uninstall_ends_the_connection() -> None:
    with local_hubspot() as hubspot:
        store = hubspot.token_store()
        key = store.save(hubspot.connect())
        hubspot.uninstall(portal=1234567)
        with pytest.raises(ReauthorizationRequiredError):
            store.refresh(key)
        assert store.connection(key).needs_reauthorization


def test_served_instance_uses_a_real_socket() -> None:
    with local_hubspot(serve=True) as hubspot:
        assert hubspot.served
        assert hubspot.base_url.startswith("http://127.0.0.1:")
        token = hubspot.oauth_client().exchange_code(hubspot.authorize())
        # No transport here: this is a plain socket client.
        answer = httpx.get(f"{hubspot.base_url}/account-info/v3/details",
                           headers={"Authorization": f"Bearer {token.access_token}"})
        assert answer.status_code == 200
        assert answer.json()["portalId"] == 1234567


def test_missing_extra_message_names_the_install_command() -> None:
    from hubspot_oauth.testing import MISSING_EXTRA_MESSAGE, ServerExtraMissingError
    from hubspot_oauth.testing.local import _server_extra_required

    assert "pip install 'hubspot-oauth[testing]'" in MISSING_EXTRA_MESSAGE
    assert issubclass(ServerExtraMissingError, ImportError)
    with pytest.raises(ServerExtraMissingError, match=r"\(missing: argon2\)"), \
            _server_extra_required():
        raise ModuleNotFoundError("No module named 'argon2.low_level'", name="argon2.low_level")
    # Any other import failure is a bug to show as it is, not a missing extra.
    with pytest.raises(ModuleNotFoundError) as caught, _server_extra_required():
        raise ModuleNotFoundError("No module named 'nowhere'", name="nowhere")
    assert not isinstance(caught.value, ServerExtraMissingError)


# -- the transport --------------------------------------------------------------------------


def test_sync_transport_from_many_threads() -> None:
    with local_hubspot() as hubspot:
        token = hubspot.connect()
        headers = {"Authorization": f"Bearer {token.access_token}"}
        seen: set[int] = set()
        lock = threading.Lock()

        def call(_: int) -> int:
            with hubspot.http_client(headers=headers) as api:
                status = api.get("/crm/v3/objects/contacts", params={"limit": 1}).status_code
            with lock:
                seen.add(threading.get_ident())
            return status

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(call, range(40)))
        assert statuses == [200] * 40
        assert hubspot.stats()["api"]["ok"] == 40


@pytest.mark.anyio
async def test_async_transport_in_the_callers_loop() -> None:
    with local_hubspot() as hubspot:
        client = hubspot.async_oauth_client()
        token = await client.exchange_code(hubspot.authorize())
        async with httpx.AsyncClient(base_url=hubspot.base_url, transport=hubspot.transport,
                                     headers={"Authorization": f"Bearer {token.access_token}"},
                                     ) as api:
            answer = await api.get("/crm/v3/objects/contacts")
        assert answer.status_code == 200
        refreshed = await client.refresh(token.refresh_token)
        assert refreshed.refresh_token == token.refresh_token  # HubSpot: no rotation


def test_transport_outlives_the_clients_that_close_it() -> None:
    with local_hubspot() as hubspot:
        for _ in range(2):
            with httpx.Client(transport=hubspot.transport, base_url=hubspot.base_url) as api:
                assert api.get("/oauth/v1/access-tokens/Cnope").status_code in (400, 401, 404)


def test_read_timeout_applies_to_delay_faults() -> None:
    with local_hubspot() as hubspot:
        token = hubspot.connect()
        hubspot.fail_next("api", "delay", delay_ms=2000)
        with (
            hubspot.http_client(timeout=0.2,
                                headers={"Authorization": f"Bearer {token.access_token}"}) as api,
            pytest.raises(httpx.ReadTimeout),
        ):
            api.get("/crm/v3/objects/contacts")


def test_transport_answers_500_like_a_socket() -> None:
    def broken(scope, receive, send):  # noqa: ANN001, ANN202 - a minimal ASGI app
        raise RuntimeError("boom")

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        broken(scope, receive, send)

    transport = InProcessTransport(app)
    try:
        with httpx.Client(transport=transport, base_url="http://x.test") as client:
            assert client.get("/").status_code == 500
    finally:
        transport.shutdown()


def test_real_rate_limiter_runs_on_the_servers_clock() -> None:
    # 11 calls against a limit of 5 per window: whatever window boundary the calls
    # straddle, at least one window sees a 6th call, so at least one 429 happens; waiting
    # Retry-After on HubSpot's clock opens a new window.
    with local_hubspot(rate_limit_max=5, rate_limit_interval_ms=10_000) as hubspot:
        token = hubspot.connect()
        waits: list[float] = []
        statuses: list[int] = []
        with hubspot.http_client(headers={"Authorization": f"Bearer {token.access_token}"}) as api:
            for _ in range(11):
                answer = api.get("/crm/v3/objects/contacts")
                if answer.status_code == 429:
                    assert answer.json()["category"] == "RATE_LIMITS"
                    waits.append(float(answer.headers["Retry-After"]))
                    hubspot.advance(waits[-1])
                    answer = api.get("/crm/v3/objects/contacts")
                statuses.append(answer.status_code)
                assert answer.headers["X-HubSpot-RateLimit-Max"] == "5"
        assert statuses == [200] * 11
        assert 1 <= len(waits) <= 2
        assert all(0 < w <= 10 for w in waits)


def test_retry_waits_of_kit_clients_move_the_server_clock() -> None:
    with local_hubspot() as hubspot:
        client = hubspot.oauth_client()
        token = client.exchange_code(hubspot.authorize())
        hubspot.fail_next("token", "server_error", times=2)
        assert client.refresh(token.refresh_token).access_token
        # Two backoff waits (0.5 s then 1 s, jittered to 50-100 %) were spent on HubSpot's
        # clock: its offset from real time grew by them.
        assert hubspot.server.clock.offset() >= 0.75
        assert hubspot.stats()["token"]["refresh_token"] == {"ok": 1, "error": 2}


def test_clients_on_real_time_do_not_move_the_clock() -> None:
    from hubspot_oauth.client.retry import RetryPolicy

    with local_hubspot() as hubspot:
        client = hubspot.oauth_client(follow_clock=False,
                                      retry=RetryPolicy(backoff=0.01, jitter=False))
        token = client.exchange_code(hubspot.authorize())
        hubspot.fail_next("token", "server_error")
        assert client.refresh(token.refresh_token).access_token
        assert hubspot.server.clock.offset() == 0


def test_seed_file_option(tmp_path: Path) -> None:
    seed = tmp_path / "seed.toml"
    seed.write_text(
        '[[apps]]\nname = "Seeded"\nclient_id = "seeded-app"\nclient_secret = "seeded-secret"\n'
        'redirect_urls = ["http://localhost:3000/oauth-callback"]\n'
        'scopes = ["crm.objects.contacts.read"]\n'
        '[[portals]]\nhub_id = 42\nhub_domain = "tiny.example.com"\ncontacts = 2\n'
        '[[users]]\nemail = "owner@tiny.example.com"\npassword = "pw"\n'
        'roles = { 42 = "super_admin" }\n'
    )
    with local_hubspot(seed_file=seed, optional_scopes=[]) as hubspot:
        token = hubspot.connect(user="owner@tiny.example.com", portal=42)
        assert token.hub_id == 42
        with hubspot.http_client(headers={"Authorization": f"Bearer {token.access_token}"}) as api:
            assert len(api.get("/crm/v3/objects/contacts").json()["results"]) == 2
    # The default seed is still what a plain instance gets.
    with local_hubspot() as hubspot:
        assert hubspot.connect().hub_id == 1234567


def test_authorize_page_redirects_in_process_with_auto_approve() -> None:
    # The whole browser leg through the transport: the app's own authorization URL, the
    # 302 to its redirect URI with code and state, then the exchange.
    with local_hubspot(auto_approve="admin@example.com") as hubspot:
        client = hubspot.oauth_client()
        with hubspot.http_client() as browser:
            answer = browser.get(client.authorization_url(state="st-1"))
        assert answer.status_code == 302
        location = httpx.URL(answer.headers["location"])
        assert str(location).startswith(hubspot.redirect_uri + "?")
        assert location.params["state"] == "st-1"
        token = client.exchange_code(location.params["code"])
        assert token.hub_id == 1234567


@pytest.mark.anyio
async def test_async_kit_client_waits_on_the_server_clock() -> None:
    with local_hubspot() as hubspot:
        client = hubspot.async_oauth_client()
        token = await client.exchange_code(hubspot.authorize())
        assert abs((token.expires_at - hubspot.now()).total_seconds() - 1800) < 60
        hubspot.fail_next("token", "rate_limit")
        refreshed = await client.refresh(token.refresh_token)
        assert refreshed.access_token != token.access_token
        assert hubspot.server.clock.offset() >= 1  # Retry-After: 1, waited on HubSpot's clock
        await client.aclose()


def test_only_the_kits_own_databases_skip_fsync(tmp_path: Path) -> None:
    def synchronous(engine) -> int:  # noqa: ANN001
        with engine.connect() as conn:
            return conn.exec_driver_sql("PRAGMA synchronous").scalar()

    with local_hubspot() as hubspot:
        assert synchronous(hubspot.server.engine) == 0          # OFF: thrown away after
        assert synchronous(hubspot.token_store().engine) == 0
        mine = hubspot.token_store(database_url=f"sqlite:///{tmp_path / 'mine.db'}")
        assert synchronous(mine.engine) != 0                    # the user's: untouched
    with local_hubspot(database_url=f"sqlite:///{tmp_path / 'given.db'}") as hubspot:
        assert synchronous(hubspot.server.engine) != 0
