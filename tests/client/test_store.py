"""TokenStore against the local HubSpot (in-process), on SQLite and PostgreSQL.

Saving and reading connections, expiry and leeway on the store's clock, single-flight and
forced refresh, rotation, re-authorization, transient failures (case C11), encryption at
rest and key rotation, schema checks, httpx auth (case C1) and the official SDK client.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.support.components import free_port

from hubspot_oauth import Token, TokenStore
from hubspot_oauth.client.crypto import KeyRing, key_id
from hubspot_oauth.client.migrations import VERSION_TABLE, upgrade
from hubspot_oauth.client.retry import RetryPolicy
from hubspot_oauth.client.store import Connection, StoreUnavailableError
from hubspot_oauth.errors import (
    ConfigurationError,
    ConnectionNotFoundError,
    EncryptionKeyError,
    ReauthorizationRequiredError,
    RetryableError,
    SchemaOutdatedError,
    ServerError,
)

PORTAL = 1234567
CONTACTS = "/crm/v3/objects/contacts"


@pytest.fixture
def keys() -> list[str]:
    return [KeyRing.generate_key()]


@pytest.fixture
def stores() -> Any:
    opened: list[TokenStore] = []
    yield opened
    for store in opened:
        store.close()


@pytest.fixture
def make_store(hubspot: Any, database_url: str, keys: list[str], stores: list[TokenStore]):
    """A TokenStore on the test database whose clock follows the local HubSpot's."""

    def make(**options: Any) -> TokenStore:
        kwargs: dict[str, Any] = {
            "client": hubspot.oauth_client(),
            "encryption_keys": keys,
            "clock": hubspot.now,
        }
        kwargs.update(options)
        store = TokenStore(database_url, **kwargs)
        stores.append(store)
        return store

    return make


def api_status(hubspot: Any, access_token: str) -> int:
    with hubspot.http_client() as http:
        response = http.get(CONTACTS, params={"limit": 1},
                            headers={"Authorization": f"Bearer {access_token}"})
        return response.status_code


def raw_row(store: TokenStore, key: str) -> dict[str, Any]:
    with store.engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT * FROM hubspot_oauth_connections WHERE key = :k"), {"k": key}
        ).mappings().one()
    return dict(row)


def wait_until_held_at_hubspot(hubspot: Any, timeout: float = 30.0) -> None:
    """Until HubSpot has taken every queued fault: a request given a ``delay`` fault is
    then being held there. (A fixed sleep raced a worker thread that started late.)"""
    deadline = time.monotonic() + timeout
    while hubspot.server.faults.pending():
        assert time.monotonic() < deadline, "the request never reached HubSpot"
        time.sleep(0.01)


# -- saving and reading -------------------------------------------------------------------


def test_save_get_connection_and_delete(hubspot: Any, make_store: Any) -> None:
    store = make_store()
    token = hubspot.connect()
    key = store.save(token)
    assert key == str(PORTAL)
    # HubSpot's token metadata named the installing user and the account's domain.
    assert store.get(key) == token.replace(user="admin@example.com",
                                           hub_domain="acme.example.com")
    named = store.save(token, key="team-a", describe=False)
    assert named == "team-a"

    connection = store.connection(key)
    assert isinstance(connection, Connection)
    assert connection.key == key and connection.hub_id == PORTAL
    assert connection.user == "admin@example.com"
    assert connection.hub_domain == "acme.example.com"
    assert connection.user_id == token.user_id
    assert store.connection("team-a").user is None  # describe=False: as HubSpot returned it
    assert connection.status == "active" and not connection.needs_reauthorization
    assert "crm.objects.contacts.read" in connection.scopes
    assert connection.expires_at == token.expires_at
    assert connection.expires_at.tzinfo is not None and connection.updated_at.tzinfo is not None
    assert [c.key for c in store.connections()] == [key, "team-a"]
    for text in (repr(connection), str(store.connections()), repr(store)):
        assert token.access_token not in text and token.refresh_token not in text

    assert store.delete("team-a") is True
    assert store.delete("team-a") is False
    with pytest.raises(ConnectionNotFoundError):
        store.get("team-a")
    with pytest.raises(ConnectionNotFoundError):
        store.access_token("team-a")
    with pytest.raises(KeyError):  # ConnectionNotFoundError is also a KeyError
        store.connection("nobody")


def test_save_needs_a_key_when_the_token_has_no_hub_id(hubspot: Any, make_store: Any) -> None:
    store = make_store()
    token = hubspot.connect().replace(hub_id=None)
    with pytest.raises(ConfigurationError, match="key="):
        store.save(token, describe=False)
    assert store.save(token, key="named", describe=False) == "named"
    with pytest.raises(ConfigurationError):
        store.save(token, key="")
    # Described by HubSpot's token metadata, the token names its account after all.
    assert store.save(token) == str(PORTAL)


def test_the_database_holds_no_token_in_plain_text(
    hubspot: Any, make_store: Any, database_url: str
) -> None:
    store = make_store()
    first = hubspot.connect()
    key = store.save(first)
    hubspot.advance(1800)
    second = store.valid_token(key)  # a refresh writes a second pair
    secrets = [first.access_token, first.refresh_token, second.access_token]
    dumps: list[str] = []
    with store.engine.connect() as connection:
        for row in connection.execute(sa.text("SELECT * FROM hubspot_oauth_connections")):
            dumps.append(" ".join(str(value) for value in row))
    if database_url.startswith("sqlite"):
        store.close()
        path = Path(sa.make_url(database_url).database or "")
        files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
        assert path in files
        dumps.extend(p.read_bytes().decode("latin-1") for p in files)
    assert dumps
    for dump in dumps:
        for secret in secrets:
            assert secret not in dump


# -- expiry, leeway and refresh ------------------------------------------------------------


class StoppedClock:
    """A store clock at HubSpot's time when `token` was issued, moved only by `advance`
    (the test moves HubSpot's clock as much): real time a slow run spends never counts,
    so "301 s left" stays 301 s left. (On hubspot.now, 1 s of real time ate the margin.)"""

    def __init__(self, token: Token) -> None:
        self.now = token.expires_at - timedelta(seconds=token.expires_in)

    def __call__(self) -> Any:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_a_fresh_token_is_returned_without_a_refresh(hubspot: Any, make_store: Any) -> None:
    token = hubspot.connect()
    clock = StoppedClock(token)
    store = make_store(clock=clock)
    key = store.save(token)
    hubspot.advance(1800 - 301)
    clock.advance(1800 - 301)  # 301 s left, leeway 300
    assert store.access_token(key) == token.access_token
    assert hubspot.refresh_count() == 0


def test_a_token_within_the_leeway_is_refreshed_once(hubspot: Any, make_store: Any) -> None:
    store = make_store()
    token = hubspot.connect()
    key = store.save(token)
    hubspot.advance(1800 - 299)
    fresh = store.access_token(key)
    assert fresh != token.access_token
    assert store.access_token(key) == fresh
    assert hubspot.refresh_count() == 1
    assert api_status(hubspot, fresh) == 200
    stored = store.get(key)
    # Expiry is the answer's expires_in on the store's clock, not a constant.
    assert stored.expires_at - hubspot.now() > timedelta(seconds=stored.expires_in - 60)


@pytest.mark.hubspot(access_token_ttl=600)
def test_expiry_follows_expires_in_not_1800(hubspot: Any, make_store: Any) -> None:
    token = hubspot.connect()
    assert token.expires_in == 600
    clock = StoppedClock(token)
    store = make_store(leeway=60, clock=clock)
    key = store.save(token)
    hubspot.advance(600 - 61)
    clock.advance(600 - 61)  # 61 s left, leeway 60
    assert store.access_token(key) == token.access_token
    hubspot.advance(2)
    clock.advance(2)  # 59 s left
    assert store.access_token(key) != token.access_token
    assert store.get(key).expires_in == 600
    assert hubspot.refresh_count() == 1


def test_refresh_is_forced_and_skips_when_the_stale_token_was_replaced(
    hubspot: Any, make_store: Any
) -> None:
    store = make_store()
    token = hubspot.connect()
    key = store.save(token)
    forced = store.refresh(key)  # HubSpot's clock may run ahead: refresh on demand
    assert forced.access_token != token.access_token
    assert hubspot.refresh_count() == 1
    again = store.refresh(key, stale_access_token=token.access_token)
    assert again.access_token == forced.access_token
    assert hubspot.refresh_count() == 1
    store.refresh(key, stale_access_token=forced.access_token)
    assert hubspot.refresh_count() == 2


@pytest.mark.hubspot(refresh_token_rotation="rotate")
def test_a_rotated_refresh_token_is_saved_with_its_access_token(
    hubspot: Any, make_store: Any
) -> None:
    store = make_store()
    token = hubspot.connect()
    key = store.save(token)
    first = store.refresh(key)
    assert first.refresh_token != token.refresh_token
    assert store.get(key).refresh_token == first.refresh_token
    second = store.refresh(key)
    assert second.refresh_token not in (token.refresh_token, first.refresh_token)
    assert hubspot.refresh_count() == 2 and hubspot.refresh_count("error") == 0


def test_a_store_without_a_client_cannot_refresh(hubspot: Any, make_store: Any) -> None:
    store = make_store(client=None)
    key = store.save(hubspot.connect())
    hubspot.advance(1800)
    with pytest.raises(ConfigurationError, match="client"):
        store.access_token(key)


# -- failures ---------------------------------------------------------------------------------


def test_uninstall_marks_the_connection_and_calls_the_hook_once(
    hubspot: Any, make_store: Any
) -> None:
    calls: list[tuple[str, ReauthorizationRequiredError]] = []
    store = make_store(on_reauthorization_required=lambda k, e: calls.append((k, e)))
    key = store.save(hubspot.connect())
    hubspot.advance(1800)
    hubspot.uninstall()
    with pytest.raises(ReauthorizationRequiredError) as info:
        store.access_token(key)
    assert info.value.connection_key == key
    assert info.value.status == "BAD_REFRESH_TOKEN"
    assert [(k, type(e)) for k, e in calls] == [(key, ReauthorizationRequiredError)]
    connection = store.connection(key)
    assert connection.status == "needs_reauthorization"
    assert connection.status_reason == "BAD_REFRESH_TOKEN"

    with pytest.raises(ReauthorizationRequiredError) as again:  # no second call to HubSpot
        store.access_token(key)
    assert again.value.connection_key == key
    assert len(calls) == 1
    assert hubspot.refresh_count("error") == 1

    fresh = hubspot.connect()  # the user installs again
    store.save(fresh)
    assert store.connection(key).status == "active"
    assert store.access_token(key) == fresh.access_token


def test_a_failing_hook_does_not_hide_the_error(hubspot: Any, make_store: Any) -> None:
    def hook(key: str, error: Exception) -> None:
        raise RuntimeError("hook broke")

    store = make_store(on_reauthorization_required=hook)
    key = store.save(hubspot.connect())
    hubspot.uninstall()
    with pytest.raises(ReauthorizationRequiredError):
        store.refresh(key)


def test_c11_html_502_keeps_the_stored_token_and_the_next_try_succeeds(
    hubspot: Any, make_store: Any
) -> None:
    store = make_store(client=hubspot.oauth_client(retry=RetryPolicy(attempts=1)))
    token = hubspot.connect()
    key = store.save(token)
    hubspot.advance(1800)
    before = raw_row(store, key)
    saved = store.get(key)
    hubspot.fail_next("token", "html_502")
    with pytest.raises(RetryableError) as info:
        store.access_token(key)
    assert isinstance(info.value, ServerError) and info.value.status_code == 502
    assert raw_row(store, key) == before  # ciphertext, version, lease: untouched
    assert store.get(key) == saved
    assert store.connection(key).status == "active"
    fresh = store.access_token(key)
    assert fresh != token.access_token and api_status(hubspot, fresh) == 200
    assert hubspot.refresh_count() == 1


def test_transient_failures_are_retried_by_the_client(hubspot: Any, make_store: Any) -> None:
    store = make_store(client=hubspot.oauth_client(retry=RetryPolicy(attempts=2, backoff=0)))
    key = store.save(hubspot.connect())
    hubspot.advance(1800)
    hubspot.fail_next("token", "server_error")
    assert api_status(hubspot, store.access_token(key)) == 200
    assert hubspot.refresh_count() == 1


@pytest.mark.parametrize(
    "rotation",
    [pytest.param(r, marks=pytest.mark.hubspot(refresh_token_rotation=r))
     for r in ("strict", "off")],
)
def test_a_refresh_answer_lost_to_a_timeout_is_not_resent_and_the_token_kept(
    hubspot_server: Any, database_url: str, keys: list[str], stores: list[TokenStore],
    rotation: str,
) -> None:
    """Adversarial review: HubSpot answers a refresh after the client's timeout. The
    client once sent the same refresh token again; with reuse detection (RFC 9700
    §4.14.2) the late original then revoked the grant, and the store saved a token that
    already got 401. Now the retryable error reaches the caller and the stored token stays;
    whatever the store calls active works."""
    hubspot = hubspot_server
    store = TokenStore(database_url, client=hubspot.oauth_client(timeout=1.0),
                       encryption_keys=keys, clock=hubspot.now)
    stores.append(store)
    token = hubspot.connect()
    key = store.save(token)
    hubspot.fail_next("token", "delay", delay_ms=2500)  # longer than the client waits
    with pytest.raises(RetryableError):
        store.refresh(key)
    for _ in range(300):  # until HubSpot has handled the slow request (bounded)
        if hubspot.refresh_count() + hubspot.refresh_count("error") >= 1:
            break
        time.sleep(0.05)
    assert hubspot.refresh_count() + hubspot.refresh_count("error") == 1  # sent once
    kept = store.get(key)
    assert (kept.access_token, kept.refresh_token) == (token.access_token, token.refresh_token)
    assert store.connection(key).status == "active"
    assert api_status(hubspot, store.get(key).access_token) == 200
    # The next refresh: with rotation off it works; under strict rotation HubSpot has
    # retired the refresh token and its successor was in the lost answer, so the honest
    # end is "needs re-authorization" (never an active connection with a revoked token).
    # Its client keeps the default timeout: 1 s was for the lost answer only, and a loaded
    # machine may take that long to answer an ordinary refresh.
    store.client = hubspot.oauth_client()
    try:
        fresh = store.refresh(key)
    except ReauthorizationRequiredError:
        assert rotation == "strict"
        assert store.connection(key).status == "needs_reauthorization"
    else:
        assert rotation == "off"
        assert store.connection(key).status == "active"
        assert api_status(hubspot, fresh.access_token) == 200


def test_an_abandoned_lease_expires_and_the_next_call_refreshes(
    hubspot: Any, make_store: Any
) -> None:
    store = make_store()
    key = store.save(hubspot.connect())
    hubspot.advance(1800)
    with store.engine.begin() as connection:  # a process died holding the lease
        connection.execute(
            sa.text("UPDATE hubspot_oauth_connections SET refreshing_until = :t, "
                    "refresh_owner = 'dead' WHERE key = :k"),
            {"t": time.time() + 1.0, "k": key},
        )
    fresh = store.access_token(key)
    assert api_status(hubspot, fresh) == 200
    assert hubspot.refresh_count() == 1
    assert raw_row(store, key)["refreshing_until"] is None


def test_a_lease_held_too_long_is_a_retryable_error(hubspot: Any, make_store: Any) -> None:
    store = make_store(refresh_wait=0.3)
    token = hubspot.connect()
    key = store.save(token)
    hubspot.advance(1800)
    with store.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE hubspot_oauth_connections SET refreshing_until = :t, "
                    "refresh_owner = 'busy' WHERE key = :k"),
            {"t": time.time() + 30, "k": key},
        )
    with pytest.raises(RetryableError, match="refreshing"):
        store.access_token(key)
    assert store.get(key).access_token == token.access_token
    assert hubspot.refresh_count() == 0


@pytest.mark.hubspot(refresh_token_rotation="rotate")
def test_bad_refresh_token_after_another_process_rotated_rereads_and_succeeds(
    hubspot_server: Any, database_url: str, keys: list[str], stores: list[TokenStore],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process stalls past its lease (it stops renewing it, as a frozen process would);
    another takes over and rotates the refresh token first."""
    from hubspot_oauth.client import store as store_module

    monkeypatch.setattr(store_module._LeaseKeeper, "start", lambda self: None)
    monkeypatch.setattr(store_module._LeaseKeeper, "stop", lambda self: None)
    hubspot = hubspot_server

    def store(**options: Any) -> TokenStore:
        made = TokenStore(database_url, client=hubspot.oauth_client(), encryption_keys=keys,
                          clock=hubspot.now, **options)
        stores.append(made)
        return made

    slow, other = store(refresh_lease=0.5), store()
    hook_calls: list[str] = []
    slow.on_reauthorization_required = lambda k, e: hook_calls.append(k)
    key = slow.save(hubspot.connect())
    hubspot.advance(1800)
    hubspot.fail_next("token", "delay", delay_ms=2000)
    results: dict[str, Any] = {}

    def run_slow() -> None:
        try:
            results["slow"] = slow.access_token(key)
        except Exception as exc:  # noqa: BLE001 - reported below
            results["slow"] = exc

    thread = threading.Thread(target=run_slow)
    thread.start()
    wait_until_held_at_hubspot(hubspot)
    # Its lease (0.5 s) runs out while its request waits at HubSpot: the other store waits
    # for that, takes over and rotates the refresh token first.
    results["other"] = other.access_token(key)
    thread.join(timeout=30)
    assert not thread.is_alive()
    # HubSpot answered the slow process BAD_REFRESH_TOKEN: the other one had rotated the
    # token. The slow one re-read the row and returned the rotated token.
    assert results["slow"] == results["other"]
    assert hubspot.refresh_count() == 1 and hubspot.refresh_count("error") == 1
    assert hook_calls == []
    assert slow.connection(key).status == "active"
    assert api_status(hubspot, results["other"]) == 200
    slow.refresh(key)  # the stored (rotated) refresh token still works
    assert hubspot.refresh_count() == 2


# -- encryption -------------------------------------------------------------------------------


def test_key_rotation_keeps_old_rows_readable_and_writes_new_ones_under_the_new_key(
    hubspot: Any, make_store: Any
) -> None:
    old, new = KeyRing.generate_key(), KeyRing.generate_key()
    before = make_store(encryption_keys=[old])
    before.save(hubspot.connect(), key="a")
    a = before.get("a")
    before.save(a, key="b")

    ring = make_store(encryption_keys=[new, old])
    assert ring.get("a") == a  # old rows still read
    ring.save(hubspot.connect(), key="c")
    c = ring.get("c")
    assert raw_row(ring, "c")["key_id"] == key_id(new)
    assert raw_row(ring, "a")["key_id"] == key_id(old)
    with pytest.raises(EncryptionKeyError):
        before.get("c")  # the new row is not under the old key

    assert ring.rotate_keys() == 2
    assert ring.rotate_keys() == 0
    only_new = make_store(encryption_keys=[new])
    assert only_new.get("a") == a and only_new.get("b") == a and only_new.get("c") == c
    assert {raw_row(ring, k)["key_id"] for k in "abc"} == {key_id(new)}
    with pytest.raises(EncryptionKeyError):
        before.get("a")


def test_a_wrong_key_is_a_clear_error_not_garbage(hubspot: Any, make_store: Any) -> None:
    writer = make_store()
    key = writer.save(hubspot.connect())
    stranger_key = KeyRing.generate_key()
    reader = make_store(encryption_keys=[stranger_key])
    with pytest.raises(EncryptionKeyError) as info:
        reader.get(key)
    assert key_id(stranger_key) in str(info.value)
    assert stranger_key not in str(info.value)
    with pytest.raises(EncryptionKeyError):
        reader.access_token(key)
    with pytest.raises(EncryptionKeyError):
        reader.rotate_keys()
    assert [c.key for c in reader.connections()] == [key]  # facts need no key


def test_keys_from_the_environment(
    hubspot: Any, make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = KeyRing.generate_key(), KeyRing.generate_key()
    monkeypatch.setenv("HUBSPOT_OAUTH_ENCRYPTION_KEYS", first)
    writer = make_store(encryption_keys=None)
    key = writer.save(hubspot.connect())
    monkeypatch.setenv("HUBSPOT_OAUTH_ENCRYPTION_KEYS", f"{second},{first}")
    reader = make_store(encryption_keys=None)
    assert reader.key_ring.primary_key_id == key_id(second)
    assert reader.get(key) == writer.get(key)


def test_default_database_and_generated_key_file(
    hubspot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[TokenStore]
) -> None:
    from hubspot_oauth.client import crypto

    monkeypatch.setattr(crypto, "_warned", set())
    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(tmp_path / "data"))
    with pytest.warns(crypto.KeyFileWarning):
        store = TokenStore(client=hubspot.oauth_client())
    stores.append(store)
    assert store.database_url == f"sqlite:///{tmp_path / 'data' / 'tokens.db'}"
    assert (tmp_path / "data" / "tokens.db.key").stat().st_mode & 0o777 == 0o600
    key = store.save(hubspot.connect())
    again = TokenStore(client=hubspot.oauth_client())
    stores.append(again)
    assert again.get(key) == store.get(key)


def test_a_lost_key_file_is_an_error_not_a_new_key(
    hubspot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stores: list[TokenStore]
) -> None:
    from hubspot_oauth.client import crypto

    monkeypatch.setattr(crypto, "_warned", set())
    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(tmp_path / "data"))
    key_file = tmp_path / "data" / "tokens.db.key"
    with pytest.warns(crypto.KeyFileWarning):
        store = TokenStore(client=hubspot.oauth_client())
    stores.append(store)
    store.save(hubspot.connect())
    store.close()
    key_file.unlink()
    with pytest.raises(EncryptionKeyError, match="key file .* is missing"):
        TokenStore(client=hubspot.oauth_client())
    assert not key_file.exists()


# -- schema -----------------------------------------------------------------------------------


def test_a_schema_behind_or_ahead_is_refused_with_the_upgrade_command(
    database_url: str, keys: list[str]
) -> None:
    TokenStore(database_url, encryption_keys=keys).close()
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as connection:  # tables from before the migrations existed
            connection.execute(sa.text(f"DELETE FROM {VERSION_TABLE}"))
        with pytest.raises(SchemaOutdatedError) as info:
            TokenStore(database_url, encryption_keys=keys)
        assert "hubspot-oauth db upgrade --database-url" in str(info.value)
        with engine.begin() as connection:
            connection.execute(sa.text(f"INSERT INTO {VERSION_TABLE} VALUES ('ffff')"))
        with pytest.raises(SchemaOutdatedError, match="newer"):
            TokenStore(database_url, encryption_keys=keys)
        with engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
        with pytest.raises(SchemaOutdatedError, match="db upgrade"):
            TokenStore(database_url, encryption_keys=keys)
    finally:
        engine.dispose()


def test_upgrade_creates_the_schema_and_the_store_opens_it(
    database_url: str, keys: list[str]
) -> None:
    with pytest.raises(SchemaOutdatedError):
        TokenStore(database_url, encryption_keys=keys, create_schema=False)
    assert upgrade(database_url) == "0001"
    assert upgrade(database_url) == "0001"  # idempotent
    store = TokenStore(database_url, encryption_keys=keys, create_schema=False)
    assert store.connections() == []
    store.close()


def test_an_unreachable_database_is_a_retryable_error(keys: list[str]) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    with pytest.raises(StoreUnavailableError) as info:
        TokenStore(url, encryption_keys=keys)
    assert isinstance(info.value, RetryableError)
    with pytest.raises(ConfigurationError):
        TokenStore("not a url", encryption_keys=keys)


# -- httpx auth and the SDK --------------------------------------------------------------------


@pytest.mark.parametrize("clock_aligned", [True, False], ids=["store-clock", "real-clock"])
def test_c1_an_api_call_a_minute_for_45_minutes_refreshes_once(
    hubspot: Any, make_store: Any, clock_aligned: bool
) -> None:
    store = make_store() if clock_aligned else make_store(clock=None)
    key = store.save(hubspot.connect())
    statuses = []
    with hubspot.http_client(auth=store.auth(key)) as http:
        for _minute in range(45):
            statuses.append(http.get(CONTACTS, params={"limit": 1}).status_code)
            hubspot.advance(60)
    assert statuses == [200] * 45
    assert 1 <= hubspot.refresh_count() <= 2
    if clock_aligned:  # refreshed ahead of expiry: HubSpot never even answered a 401
        assert hubspot.stats()["api"]["error"] == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_httpx_auth_refreshes_on_expiry(hubspot: Any, make_store: Any) -> None:
    store = make_store(clock=None)  # the store does not see HubSpot's clock move
    key = store.save(hubspot.connect())
    async with httpx.AsyncClient(base_url=hubspot.base_url, transport=hubspot.transport,
                                 auth=store.auth(key)) as http:
        assert (await http.get(CONTACTS)).status_code == 200
        hubspot.advance(1900)
        assert (await http.get(CONTACTS)).status_code == 200
    assert hubspot.refresh_count() == 1


def test_hubspot_client_carries_a_valid_token(
    hubspot: Any, make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store()
    key = store.save(hubspot.connect())
    hubspot.advance(1800)
    sdk = store.hubspot_client(key)
    assert type(sdk).__module__.startswith("hubspot")
    assert sdk.access_token == store.get(key).access_token
    assert api_status(hubspot, sdk.access_token) == 200
    monkeypatch.setitem(sys.modules, "hubspot", None)
    with pytest.raises(ConfigurationError, match=r"hubspot-oauth\[sdk\]"):
        store.hubspot_client(key)


def test_bad_arguments_are_configuration_errors(keys: list[str], sqlite_url: str) -> None:
    with pytest.raises(ConfigurationError):
        TokenStore(sqlite_url, encryption_keys=keys, leeway=-1)
    with pytest.raises(ConfigurationError):
        TokenStore(sqlite_url, encryption_keys=["not-a-key"])
    store = TokenStore(sqlite_url, encryption_keys=keys)
    with pytest.raises(ConfigurationError):
        store.save("not a token")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        store.get("x" * 300)
    store.close()


def test_token_type_is_kept(hubspot: Any, make_store: Any) -> None:
    store = make_store()
    token = hubspot.connect()
    key = store.save(token)
    assert isinstance(store.get(key), Token)
    assert store.get(key).token_type == token.token_type


def test_an_async_client_is_refused_with_a_clear_message(
    hubspot: Any, keys: list[str], sqlite_url: str
) -> None:
    with pytest.raises(ConfigurationError, match="synchronous OAuthClient"):
        TokenStore(sqlite_url, client=hubspot.async_oauth_client(), encryption_keys=keys)


def test_a_failed_lookup_of_the_installing_user_still_saves(
    hubspot: Any, make_store: Any
) -> None:
    store = make_store(client=hubspot.oauth_client(retry=RetryPolicy(attempts=1)))
    token = hubspot.connect()
    hubspot.fail_next("introspect", "server_error")
    key = store.save(token)
    assert store.get(key) == token
    assert store.connection(key).user is None


def test_a_slow_refresh_keeps_its_lease_alive(
    hubspot_server: Any, database_url: str, keys: list[str], stores: list[TokenStore]
) -> None:
    """HubSpot takes longer than the lease: the refresher renews it, so a second process
    waits for its answer instead of refreshing the same token again."""
    hubspot = hubspot_server
    # A 1.5 s lease is renewed every 0.5 s: 1 s of slack for the renewing thread. (A 0.6 s
    # lease left 0.4 s, and a loaded machine delayed a renewal by 0.36 s.)
    slow = TokenStore(database_url, client=hubspot.oauth_client(), encryption_keys=keys,
                      clock=hubspot.now, refresh_lease=1.5)
    other = TokenStore(database_url, client=hubspot.oauth_client(), encryption_keys=keys,
                       clock=hubspot.now)
    stores.extend([slow, other])
    key = slow.save(hubspot.connect())
    hubspot.advance(1800)
    hubspot.fail_next("token", "delay", delay_ms=6000)
    results: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: results.update(slow=slow.access_token(key)))
    thread.start()
    wait_until_held_at_hubspot(hubspot)
    first_lease_end = raw_row(slow, key)["refreshing_until"]
    while time.time() < first_lease_end + 1.5:  # two leases on: only renewal keeps it
        time.sleep(0.05)
    results["other"] = other.access_token(key)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results["slow"] == results["other"]
    assert hubspot.refresh_count() == 1 and hubspot.refresh_count("error") == 0


@pytest.mark.hubspot(refresh_token_rotation="rotate")
def test_a_token_rotated_and_saved_elsewhere_mid_refresh_is_used(
    hubspot_server: Any, database_url: str, keys: list[str], stores: list[TokenStore]
) -> None:
    """While our refresh waits at HubSpot, another writer refreshes the same refresh token
    and saves the result: HubSpot answers us BAD_REFRESH_TOKEN, and the store re-reads
    the row, returns the other writer's token and does not mark the connection."""
    hubspot = hubspot_server
    calls: list[str] = []
    store = TokenStore(database_url, client=hubspot.oauth_client(), encryption_keys=keys,
                       clock=hubspot.now, on_reauthorization_required=lambda k, e: calls.append(k))
    stores.append(store)
    key = store.save(hubspot.connect())
    hubspot.advance(1800)
    hubspot.fail_next("token", "delay", delay_ms=1500)
    results: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: results.update(ours=store.access_token(key)))
    thread.start()
    wait_until_held_at_hubspot(hubspot)  # ours is held there; the other writer goes first
    elsewhere = hubspot.oauth_client().refresh(store.get(key).refresh_token)
    store.save(elsewhere, key=key, describe=False)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert results["ours"] == elsewhere.access_token
    assert hubspot.refresh_count() == 1 and hubspot.refresh_count("error") == 1
    assert calls == [] and store.connection(key).status == "active"
    assert store.refresh(key).refresh_token != elsewhere.refresh_token  # it still works


@pytest.mark.hubspot(access_token_ttl=60)
def test_tokens_shorter_lived_than_the_leeway_are_not_refreshed_on_every_call(
    hubspot: Any, make_store: Any
) -> None:
    store = make_store()  # leeway 300 s > the token's 60 s
    token = hubspot.connect()
    key = store.save(token)
    assert [store.access_token(key) for _ in range(3)] == [token.access_token] * 3
    assert hubspot.refresh_count() == 0
    hubspot.advance(31)  # past half its life
    fresh = store.access_token(key)
    assert fresh != token.access_token and store.access_token(key) == fresh
    assert hubspot.refresh_count() == 1
