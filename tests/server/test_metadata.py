"""Token metadata (v1), introspection and revocation (v3/2026-03), validated against
HubSpot's own OpenAPI document (tests/security/data/hubspot-auth-oauth-openapi-2026-09.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from hubspot_oauth.server import ServerSettings

from .conftest import ACME, CLIENT, REDIRECT, Harness, assert_oauth_error, harness_for

pytestmark = pytest.mark.anyio

# HubSpot's OpenAPI document (2026-09), kept in the repository so the suite needs nothing
# outside it; tests/security/test_openapi_document.py checks our schemas against it.
SPEC_PATH = (
    Path(__file__).resolve().parents[1] / "security" / "data"
    / "hubspot-auth-oauth-openapi-2026-09.json"
)


def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


def validate(schema_name: str, instance: Any) -> None:
    """Validate `instance` against components.schemas[schema_name] of HubSpot's spec."""
    spec = _spec()
    schema = {"$ref": f"#/components/schemas/{schema_name}",
              "components": spec["components"]}
    validator = jsonschema_rs.Draft4Validator(schema, validate_formats=True)
    errors = [str(e) for e in validator.iter_errors(instance)]
    assert not errors, errors


async def test_token_responses_validate_against_hubspots_spec(hs: Harness) -> None:
    tokens = await hs.tokens()
    validate("TokenResponseIF", tokens)
    validate("AccessTokenResponse", tokens)
    refreshed = (await hs.refresh(tokens["refresh_token"], version="2026-03")).json()
    validate("TokenResponseIF", refreshed)


async def test_token_errors_validate_as_hubspots_error_object(hs: Harness) -> None:
    body = (await hs.refresh("na1-0000-0000-0000-0000-000000000000")).json()
    validate("Error", body)
    assert body["error"] == "invalid_grant"


async def test_v1_access_token_metadata(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.client.get(f"/oauth/v1/access-tokens/{tokens['access_token']}")
    assert response.status_code == 200
    info = response.json()
    assert info["token"] == tokens["access_token"]
    assert info["user"] == "admin@example.com"
    assert info["hub_domain"] == "acme.example.com"
    assert info["hub_id"] == ACME
    assert info["app_id"] == 1
    assert info["user_id"] == 2620001
    assert info["token_type"] == "access"
    assert info["scopes"] == tokens["scopes"]
    assert info["is_private_distribution"] is False
    assert 1795 <= info["expires_in"] <= 1800
    signed = info["signed_access_token"]
    validate("SignedAccessToken", signed)
    assert signed["hubId"] == ACME and signed["appId"] == 1 and signed["hublet"] == "na1"
    hs.hubspot.clock.advance(600)
    later = (await hs.client.get(f"/oauth/v1/access-tokens/{tokens['access_token']}")).json()
    assert 1195 <= later["expires_in"] <= 1200


async def test_v1_access_token_metadata_unknown_or_expired(hs: Harness) -> None:
    tokens = await hs.tokens()
    hs.hubspot.clock.advance(1800)
    for token in (tokens["access_token"], "Cunknown" + "x" * 40):
        response = await hs.client.get(f"/oauth/v1/access-tokens/{token}")
        assert response.status_code == 404
        body = response.json()
        assert body["status"] == "BAD_ACCESS_TOKEN"
        assert body["message"] == ("access token not found: it is unknown, expired, deleted "
                                   "or revoked")
        validate("Error", body)


async def test_v1_refresh_token_metadata_and_delete(hs: Harness) -> None:
    tokens = await hs.tokens()
    url = f"/oauth/v1/refresh-tokens/{tokens['refresh_token']}"
    info = (await hs.client.get(url)).json()
    assert info == {"token": tokens["refresh_token"], "user": "admin@example.com",
                    "hub_domain": "acme.example.com", "scopes": tokens["scopes"],
                    "hub_id": ACME, "client_id": CLIENT["client_id"], "user_id": 2620001,
                    "token_type": "refresh"}
    deleted = await hs.client.delete(url)
    assert deleted.status_code == 204
    assert deleted.content == b""
    # The access tokens already issued keep working (reference §4.5) ...
    assert (await hs.api(tokens["access_token"])).status_code == 200
    # ... the refresh token is gone, and the install stays.
    assert (await hs.client.get(url)).status_code == 404
    again = await hs.client.delete(url)
    assert again.status_code == 404
    assert again.json()["status"] == "BAD_REFRESH_TOKEN"
    assert any(i["hub_id"] == ACME and i["installed"] for i in hs.hubspot.installs())


@pytest.mark.parametrize("version", ["v3", "2026-03"])
async def test_introspect_access_token(hs: Harness, version: str) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post(f"/oauth/{version}/token/introspect", data={
        **CLIENT, "token": tokens["access_token"], "token_type_hint": "access_token"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    info = response.json()
    validate("TokenInfoResponseBaseIF", info)
    validate("PublicAccessTokenInfoResponse", info)
    assert info["active"] is True
    assert info["token_use"] == "access_token"
    assert info["token_type"] == "Bearer"
    assert info["client_id"] == CLIENT["client_id"]
    assert info["hub_id"] == ACME
    assert info["scopes"] == tokens["scopes"]
    assert 1795 <= info["expires_in"] <= 1800


async def test_introspect_refresh_token_by_hint_named_field(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post("/oauth/v3/token/introspect", data={
        **CLIENT, "refresh_token": tokens["refresh_token"],
        "token_type_hint": "refresh_token"})
    info = response.json()
    validate("TokenInfoResponseBaseIF", info)
    validate("PublicRefreshTokenInfoResponse", info)
    assert info["active"] is True
    assert info["token_use"] == "refresh_token"
    assert info["token"] == tokens["refresh_token"]
    assert info["app_id"] == 1


async def test_introspect_inactive(hs: Harness) -> None:
    tokens = await hs.tokens()
    _, other_id, other_secret = hs.hubspot.create_app_registration(
        name="Other", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
    cases = [
        ({**CLIENT, "token": "Cnope" + "x" * 40}),
        ({**CLIENT, "token": "na1-0000-0000-0000-0000-000000000000",
          "token_type_hint": "refresh_token"}),
        ({"client_id": other_id, "client_secret": other_secret,
          "token": tokens["access_token"]}),
    ]
    for form in cases:
        response = await hs.client.post("/oauth/v3/token/introspect", data=form)
        assert response.status_code == 200
        assert response.json() == {"active": False}
    hs.hubspot.clock.advance(1801)
    expired = await hs.client.post("/oauth/v3/token/introspect",
                                   data={**CLIENT, "token": tokens["access_token"]})
    assert expired.json() == {"active": False}


async def test_introspect_needs_client_credentials(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post("/oauth/v3/token/introspect", data={
        "client_id": CLIENT["client_id"], "client_secret": "wrong-one",
        "token": tokens["access_token"]})
    assert_oauth_error(response, 400, "invalid_client", "BAD_CLIENT_SECRET",
                       "invalid client_secret for this client_id")
    missing = await hs.client.post("/oauth/v3/token/introspect", data=CLIENT)
    assert_oauth_error(missing, 400, "invalid_request", "BAD_REQUEST",
                       "missing token: send token (and token_type_hint)")


@pytest.mark.parametrize("version", ["v3", "2026-03"])
async def test_revoke_refresh_token(hs: Harness, version: str) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post(f"/oauth/{version}/token/revoke", data={
        **CLIENT, "token": tokens["refresh_token"], "token_type_hint": "refresh_token"})
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["cache-control"] == "no-store"
    refreshed = await hs.refresh(tokens["refresh_token"])
    assert_oauth_error(refreshed, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "refresh token is invalid, expired or revoked: it was revoked")
    # revoke_cascades (default): the access tokens of that authorization go too (RFC 7009).
    assert (await hs.api(tokens["access_token"])).status_code == 401
    # RFC 7009 §2.2: unknown and already-revoked tokens also answer 200.
    for token in (tokens["refresh_token"], "na1-0000-0000-0000-0000-000000000000"):
        again = await hs.client.post(f"/oauth/{version}/token/revoke",
                                     data={**CLIENT, "token": token})
        assert again.status_code == 200


async def test_revoke_without_cascade(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url, revoke_cascades=False),
                           hs_factory)
    async with hs.client:
        tokens = await hs.tokens()
        await hs.client.post("/oauth/v3/token/revoke",
                             data={**CLIENT, "token": tokens["refresh_token"]})
        assert (await hs.api(tokens["access_token"])).status_code == 200
        assert (await hs.refresh(tokens["refresh_token"])).status_code == 400


async def test_revoke_access_token(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post("/oauth/v3/token/revoke", data={
        **CLIENT, "token": tokens["access_token"], "token_type_hint": "access_token"})
    assert response.status_code == 200
    assert (await hs.api(tokens["access_token"])).status_code == 401
    assert (await hs.refresh(tokens["refresh_token"])).status_code == 200


async def test_revoke_a_token_of_another_client(hs: Harness) -> None:
    tokens = await hs.tokens()
    _, other_id, other_secret = hs.hubspot.create_app_registration(
        name="Other", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
    response = await hs.client.post("/oauth/v3/token/revoke", data={
        "client_id": other_id, "client_secret": other_secret,
        "token": tokens["refresh_token"]})
    assert_oauth_error(response, 400, "unauthorized_client", "BAD_REFRESH_TOKEN",
                       "token was not issued to this client")
    assert (await hs.refresh(tokens["refresh_token"])).status_code == 200
