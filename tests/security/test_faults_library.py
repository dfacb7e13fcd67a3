"""Library faults: connection refused, timeouts, connections cut mid-answer, truncated or
invalid JSON, HTML error pages from a proxy → typed, retryable errors; the stored token is
kept and the next attempt succeeds (case C11). Real sockets on loopback throughout."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hubspot_oauth import Endpoints, Token
from hubspot_oauth.client.oauth import OAuthClient
from hubspot_oauth.client.retry import NO_RETRY
from hubspot_oauth.client.store import ACTIVE, TokenStore
from hubspot_oauth.errors import (
    HubSpotOAuthError,
    NetworkError,
    RetryableError,
    ServerError,
)
from tests.security.canned import CannedServer
from tests.support.components import free_port

SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
REFRESH = "na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

# scenario -> the error type the library must raise
FAULTS = {
    "html502": ServerError,
    "html200": ServerError,
    "empty503": ServerError,
    "truncated_json": ServerError,
    "invalid_json": ServerError,
    "json_array": ServerError,
    "short_body": NetworkError,
    "reset": NetworkError,
    "hang": NetworkError,
}


@pytest.fixture
def canned() -> Iterator[CannedServer]:
    with CannedServer() as server:
        yield server


def _client(base_url: str, scenario: str = "ok") -> OAuthClient:
    # A short timeout only where the answer never comes: an answer that does come must not
    # be turned into a timeout by a slow moment of a loaded machine.
    return OAuthClient(
        client_id="7fff1e36-2d40-4ae1-bbb1-5266d59564fb",
        client_secret=SECRET,
        endpoints=Endpoints.local(base_url),
        timeout=0.5 if scenario == "hang" else 10.0,
        retry=NO_RETRY,
    )


def _expired_token() -> Token:
    now = datetime.now(UTC)
    return Token(
        access_token="C" + "o" * 60,
        refresh_token=REFRESH,
        expires_in=1800,
        expires_at=now - timedelta(seconds=5),
        hub_id=1234567,
        scopes=("oauth", "crm.objects.contacts.read"),
    )


def _store(tmp_path: Path, client: OAuthClient) -> TokenStore:
    return TokenStore(
        f"sqlite:///{tmp_path / 'tokens.db'}",
        client=client,
        encryption_keys=[Fernet.generate_key().decode()],
    )


def _assert_clean(error: HubSpotOAuthError) -> None:
    text = f"{error} {error!r}"
    assert SECRET not in text and REFRESH not in text


@pytest.mark.parametrize("scenario", sorted(FAULTS))
def test_exchange_and_refresh_give_typed_errors(canned: CannedServer, scenario: str) -> None:
    canned.scenario = scenario
    with _client(canned.base_url, scenario) as client:
        with pytest.raises(FAULTS[scenario]) as exchanged:
            client.exchange_code("na1-1111-2222-3333-4444-555555555555")
        assert isinstance(exchanged.value, RetryableError)
        _assert_clean(exchanged.value)
        with pytest.raises(FAULTS[scenario]) as refreshed:
            client.refresh(REFRESH)
        _assert_clean(refreshed.value)
    if isinstance(exchanged.value, ServerError) and scenario.startswith("html"):
        # status and a short excerpt of the page, so a person can tell what answered
        assert exchanged.value.body_excerpt and len(exchanged.value.body_excerpt) <= 200
        assert str(exchanged.value.status_code) in str(exchanged.value)


@pytest.mark.parametrize("scenario", sorted(FAULTS))
def test_store_keeps_the_token_through_a_fault_then_recovers(
    canned: CannedServer, tmp_path: Path, scenario: str
) -> None:
    client = _client(canned.base_url, scenario)
    store = _store(tmp_path, client)
    try:
        original = _expired_token()
        key = store.save(original)
        canned.scenario = scenario
        with pytest.raises(RetryableError):
            store.access_token(key)
        assert store.get(key) == original
        assert store.connection(key).status == ACTIVE
        canned.scenario = "ok"
        client.close()
        store.client = client = _client(canned.base_url)
        assert store.access_token(key) == canned.good_token
        assert store.get(key).refresh_token == "na1-0000-1111-2222-3333-444444444444"
    finally:
        store.close()
        client.close()


def test_connection_refused_is_a_network_error_and_keeps_the_token(tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = _client(base_url)
    store = _store(tmp_path, client)
    try:
        original = _expired_token()
        key = store.save(original)
        with pytest.raises(NetworkError) as caught:
            client.exchange_code("na1-1111-2222-3333-4444-555555555555")
        _assert_clean(caught.value)
        with pytest.raises(NetworkError):
            store.access_token(key)
        assert store.get(key) == original
        assert store.connection(key).status == ACTIVE
    finally:
        store.close()
        client.close()
