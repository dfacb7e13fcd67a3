"""HubSpotAuth against the local HubSpot's bearer-protected sample API: refreshes are counted
by the server itself (``/_emulator/stats``), not by the test."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from hubspot_oauth import (
    HubSpotAuth,
    MissingScopesError,
    ReauthorizationRequiredError,
    raise_for_status,
)

CONTACTS = "/crm/v3/objects/contacts"


class StaleProvider:
    """Hands out a token that HubSpot will find expired; refreshes through the client."""

    def __init__(self, client: Any, token: Any) -> None:
        self.client, self.token = client, token

    def access_token(self) -> str:
        return self.token.access_token

    def refresh(self, rejected: str) -> str:
        if rejected == self.token.access_token:
            self.token = self.client.refresh(self.token.refresh_token)
        return self.token.access_token


def api_calls(hubspot: Any) -> dict[str, int]:
    return hubspot.stats()["api"]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_expired_token_is_refreshed_exactly_once(hubspot, kind):
    client = hubspot.oauth_client()
    token = client.exchange_code(hubspot.authorize())
    provider = StaleProvider(client, token)
    hubspot.advance(1801)  # the access token the provider holds is now expired at HubSpot
    auth = HubSpotAuth(provider.access_token, provider.refresh)
    if kind == "sync":
        with hubspot.http_client(auth=auth) as http:
            first = http.get(CONTACTS, params={"limit": 2})
            second = http.get(CONTACTS, params={"limit": 2})
    else:

        async def go() -> tuple[httpx.Response, httpx.Response]:
            async with httpx.AsyncClient(
                base_url=hubspot.base_url, transport=hubspot.transport, auth=auth
            ) as http:
                return (
                    await http.get(CONTACTS, params={"limit": 2}),
                    await http.get(CONTACTS, params={"limit": 2}),
                )

        first, second = anyio.run(go)
    assert first.status_code == 200 and second.status_code == 200
    assert len(raise_for_status(first).json()["results"]) == 2
    assert hubspot.refresh_count() == 1 and auth.refreshes == 1


def test_invalid_authentication_never_refreshes(hubspot):
    client = hubspot.oauth_client()
    token = client.exchange_code(hubspot.authorize())
    provider = StaleProvider(client, token)
    auth = HubSpotAuth(lambda: "C" + "x" * 60, provider.refresh)  # a token HubSpot never issued
    with hubspot.http_client(auth=auth) as http:
        answer = http.get(CONTACTS)
    assert answer.status_code == 401
    assert answer.json()["category"] == "INVALID_AUTHENTICATION"
    assert hubspot.refresh_count() == 0 and auth.refreshes == 0


def test_never_loops_when_hubspot_keeps_answering_expired(hubspot):
    store = hubspot.token_store()
    key = store.save(hubspot.oauth_client().exchange_code(hubspot.authorize()))
    hubspot.fail_next("api", "expired_authentication", times=5)
    auth = store.auth(key)
    with hubspot.http_client(auth=auth) as http:
        answer = http.get(CONTACTS)
    assert answer.status_code == 401
    assert answer.json()["category"] == "EXPIRED_AUTHENTICATION"
    assert hubspot.refresh_count() == 1  # one refresh, one retry, then the 401 is returned
    assert sum(api_calls(hubspot).values()) == 2


def test_store_auth_survives_an_expired_answer_and_uninstall_raises(hubspot_server):
    """Over a real socket: store.auth(key) → one refresh on EXPIRED_AUTHENTICATION; after
    uninstall the next refresh raises the re-authorization error to the caller."""
    hubspot = hubspot_server
    seen: list[tuple[str, Exception]] = []
    store = hubspot.token_store(on_reauthorization_required=lambda k, e: seen.append((k, e)))
    key = store.save(hubspot.oauth_client().exchange_code(hubspot.authorize()))
    with httpx.Client(base_url=hubspot.base_url, auth=store.auth(key)) as http:
        hubspot.fail_next("api", "expired_authentication")
        assert http.get(CONTACTS).status_code == 200
        assert hubspot.refresh_count() == 1
        hubspot.uninstall()
        hubspot.fail_next("api", "expired_authentication")
        with pytest.raises(ReauthorizationRequiredError):
            http.get(CONTACTS)
    assert [k for k, _ in seen] == [key]


def test_c12_missing_scopes_names_the_scope(hubspot):
    """Case C12: a token granted only the read scope creates a contact: 403 MISSING_SCOPES,
    and the library's error lists crm.objects.contacts.write."""
    client = hubspot.oauth_client(optional_scopes=[])
    token = client.exchange_code(hubspot.authorize(optional_scopes=[]))
    assert "crm.objects.contacts.write" not in token.scopes
    with hubspot.http_client(auth=HubSpotAuth(token.access_token)) as http:
        answer = http.post(CONTACTS, json={"properties": {"email": "new@example.com"}})
    assert answer.status_code == 403
    with pytest.raises(MissingScopesError) as info:
        raise_for_status(answer)
    assert info.value.required_scopes == ["crm.objects.contacts.write"]
    assert info.value.category == "MISSING_SCOPES" and info.value.status_code == 403
