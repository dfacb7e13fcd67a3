"""`OAuthClient.with_account_details`: one introspection of a new token fills in what
HubSpot's token response leaves out (hub_domain, user, …); its failures raise typed errors
and store nothing; `TokenStore.save` never asks again for a token it can already describe.
Against the local HubSpot on a loopback port (`hubspot_server`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.components import free_port

from hubspot_oauth import Endpoints, Token, TokenInfo, TokenStore
from hubspot_oauth.client import protocol
from hubspot_oauth.errors import (
    AuthenticationError,
    ConfigurationError,
    NetworkError,
    RetryableError,
    ServerError,
)
from hubspot_oauth.tokens import new_access_token, new_refresh_token

ACME, GLOBEX = 1234567, 7654321


def introspections(hs: Any) -> dict[str, int]:
    """Every token lookup HubSpot received, answered or failed: v3/2026-03 introspect and
    v1 GET /oauth/v1/access-tokens/{token} (counted as metadata)."""
    stats = hs.stats()
    return {outcome: stats["introspect"][outcome] + stats["metadata"][outcome]
            for outcome in ("ok", "error")}


def lookups(hs: Any) -> int:
    return sum(introspections(hs).values())


@pytest.fixture
def store(hubspot_server: Any) -> TokenStore:
    """A store whose client talks to the local HubSpot over its loopback socket."""
    return hubspot_server.token_store()


@pytest.mark.parametrize("api_version", ["v1", "v3", "2026-03"])
def test_one_introspection_fills_in_the_account(hubspot_server: Any, api_version: str) -> None:
    client = hubspot_server.oauth_client(
        endpoints=hubspot_server.endpoints.with_version(api_version))
    token = client.exchange_code(hubspot_server.authorize())
    assert token.hub_domain is None and token.user is None  # the token response lacks them
    assert lookups(hubspot_server) == 0

    described = client.with_account_details(token)
    assert lookups(hubspot_server) == 1
    assert described.hub_id == ACME and described.hub_domain == "acme.example.com"
    assert described.user == "admin@example.com" and described.user_id is not None
    assert "crm.objects.contacts.read" in described.scopes
    for field in ("access_token", "refresh_token", "expires_in", "expires_at", "token_type"):
        assert getattr(described, field) == getattr(token, field), field
    # Complete now: asking again makes no call.
    assert client.with_account_details(described) is described
    assert lookups(hubspot_server) == 1


def test_save_asks_hubspot_at_most_once_per_install(hubspot_server: Any, store: TokenStore) -> None:
    client = store.client
    described = client.with_account_details(client.exchange_code(hubspot_server.authorize()))
    key = store.save(described)
    assert lookups(hubspot_server) == 1  # save knew the details: no second introspection
    assert store.connection(key).user == "admin@example.com"
    assert store.save(described, key="again") == "again"
    assert lookups(hubspot_server) == 1
    # A token as the token endpoint returned it: save looks it up itself, once.
    key = store.save(client.exchange_code(hubspot_server.authorize(portal=GLOBEX)))
    assert key == str(GLOBEX)
    assert store.connection(key).hub_domain == "globex.example.com"
    assert lookups(hubspot_server) == 2


def _unknown_token() -> Token:
    return Token(access_token=new_access_token(), refresh_token=new_refresh_token(),
                 expires_in=1800, expires_at=datetime.now(UTC) + timedelta(seconds=1800),
                 hub_id=ACME, scopes=("oauth",))


@pytest.mark.parametrize("case", ["unknown", "expired", "uninstalled"])
def test_a_token_hubspot_disowns_is_an_authentication_error_and_stores_nothing(
    hubspot_server: Any, store: TokenStore, case: str
) -> None:
    client = store.client
    if case == "unknown":
        token = _unknown_token()
    else:
        token = client.exchange_code(hubspot_server.authorize())
        if case == "expired":
            hubspot_server.advance(1801)
        else:
            assert hubspot_server.uninstall()
    with pytest.raises(AuthenticationError) as raised:
        store.save(client.with_account_details(token))
    error = raised.value
    assert error.status_code == 401 and error.category == "INVALID_AUTHENTICATION"
    assert error.error == "invalid_token" and "not active" in error.message
    assert not isinstance(error, RetryableError)
    for text in (str(error), repr(error)):
        assert token.access_token not in text and token.refresh_token not in text
    assert store.connections() == []
    assert introspections(hubspot_server) == {"ok": 1, "error": 0}  # answered: inactive


@pytest.mark.parametrize("fault", ["server_error", "html_502"])
def test_hubspot_failing_is_a_server_error_and_stores_nothing(
    hubspot_server: Any, store: TokenStore, fault: str
) -> None:
    client = store.client
    token = client.exchange_code(hubspot_server.authorize())
    attempts = client.retry.attempts
    hubspot_server.fail_next("introspect", fault, times=attempts)
    with pytest.raises(ServerError) as raised:
        store.save(client.with_account_details(token))
    assert isinstance(raised.value, RetryableError)
    assert raised.value.status_code in (500, 502)
    assert store.connections() == []
    # One lookup: its retries, nothing more.
    assert introspections(hubspot_server) == {"ok": 0, "error": attempts}
    # HubSpot back: the same token is described by the next lookup.
    assert client.with_account_details(token).user == "admin@example.com"


def test_unreachable_hubspot_is_a_network_error_and_stores_nothing(
    hubspot_server: Any, store: TokenStore
) -> None:
    token = store.client.exchange_code(hubspot_server.authorize())
    nobody = hubspot_server.oauth_client(  # waits between tries by moving the clock
        endpoints=Endpoints.local(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(NetworkError) as raised:
        store.save(nobody.with_account_details(token))
    assert isinstance(raised.value, RetryableError)
    assert token.access_token not in str(raised.value)
    assert store.connections() == []
    assert lookups(hubspot_server) == 0


def test_save_keeps_a_token_whose_lookup_failed_and_asks_once(
    hubspot_server: Any, store: TokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    """`save(token)` with no details: the store's own lookup may fail, the token is kept
    (details are for display) and HubSpot is not asked a second time."""
    token = store.client.exchange_code(hubspot_server.authorize())
    attempts = store.client.retry.attempts
    hubspot_server.fail_next("introspect", "server_error", times=attempts)
    with caplog.at_level(logging.WARNING, logger="hubspot_oauth.store"):
        key = store.save(token)
    assert store.get(key) == token
    assert store.connection(key).user is None
    assert introspections(hubspot_server) == {"ok": 0, "error": attempts}
    assert "could not look up" in caplog.text and token.access_token not in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_client_looks_up_the_same_way(hubspot_server: Any) -> None:
    async with hubspot_server.async_oauth_client() as client:
        token = await client.exchange_code(hubspot_server.authorize())
        described = await client.with_account_details(token)
        assert described.hub_domain == "acme.example.com"
        assert described.user == "admin@example.com"
        assert await client.with_account_details(described) is described
        assert hubspot_server.uninstall()
        with pytest.raises(AuthenticationError):
            await client.with_account_details(token)
    assert introspections(hubspot_server) == {"ok": 2, "error": 0}


def test_what_the_token_says_wins_and_only_tokens_are_looked_up(hubspot_server: Any) -> None:
    token = _unknown_token().replace(user_id=7)
    info = TokenInfo(active=True, token_use="access_token", hub_id=999, hub_domain="x.example",
                     user="u@x.example", user_id=8, scopes=("other",))
    merged = protocol.with_account_details(token, info)
    assert (merged.hub_id, merged.user_id, merged.scopes) == (ACME, 7, ("oauth",))
    assert (merged.hub_domain, merged.user) == ("x.example", "u@x.example")
    with pytest.raises(ConfigurationError):
        hubspot_server.oauth_client().with_account_details(token.access_token)
    assert lookups(hubspot_server) == 0
