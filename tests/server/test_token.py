"""POST /oauth/{v1,v3,2026-03}/token: both grants, every error with its exact body."""

from __future__ import annotations

import base64
import hashlib

import pytest

from hubspot_oauth.server import ServerSettings
from hubspot_oauth.tokens import looks_like_access_token, looks_like_hublet_token
from tests.support.frozen_time import freeze_emulator_time

from .conftest import ACME, CLIENT, GLOBEX, REDIRECT, Harness, assert_oauth_error, harness_for

pytestmark = pytest.mark.anyio


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"=").decode()


VERIFIER = "v" * 20 + "-._~" + "A1" * 12  # 48 unreserved characters


@pytest.mark.parametrize("version", ["v1", "v3", "2026-03"])
async def test_code_exchange_answers_hubspots_token_response(hs: Harness, version: str) -> None:
    response = await hs.exchange(version=version)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-hubspot-correlation-id"]
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1800
    assert body["hub_id"] == ACME
    assert body["user_id"] == 2620001
    assert body["scopes"] == ["oauth", "crm.objects.contacts.read",
                              "crm.objects.contacts.write", "automation"]
    assert looks_like_access_token(body["access_token"])
    assert looks_like_hublet_token(body["refresh_token"])
    assert body["refresh_token"].startswith("na1-")
    if version == "v1":
        assert "token_use" not in body
    else:
        assert body["token_use"] == "access_token"


async def test_optional_scope_the_portal_lacks_is_dropped(hs: Harness) -> None:
    body = await hs.tokens(hub_id=GLOBEX)
    assert body["hub_id"] == GLOBEX
    assert "automation" not in body["scopes"]
    assert body["scopes"][0] == "oauth"


async def test_access_token_ttl_setting(sqlite_url: str, hs_factory) -> None:
    other = await harness_for(ServerSettings(database_url=sqlite_url, access_token_ttl=60),
                              hs_factory)
    async with other.client:
        body = await other.tokens()
    assert body["expires_in"] == 60


# -- authorization_code errors ----------------------------------------------------------


async def test_code_is_single_use_and_replay_revokes_its_tokens(hs: Harness) -> None:
    code = hs.code()
    first = (await hs.exchange(code)).json()
    assert (await hs.api(first["access_token"])).status_code == 200
    replay = await hs.exchange(code)
    assert_oauth_error(replay, 400, "invalid_grant", "BAD_AUTH_CODE",
                       "auth code has already been used; the tokens issued for it are revoked "
                       "(RFC 6749 §4.1.2)")
    api = await hs.api(first["access_token"])
    assert api.status_code == 401
    assert api.json()["category"] == "INVALID_AUTHENTICATION"
    refreshed = await hs.refresh(first["refresh_token"])
    assert_oauth_error(refreshed, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "refresh token is invalid, expired or revoked: its authorization code "
                       "was used twice, so its tokens were revoked (RFC 6749 §4.1.2)")


async def test_unknown_code(hs: Harness) -> None:
    response = await hs.exchange("na1-0000-0000-0000-0000-000000000000")
    assert_oauth_error(response, 400, "invalid_grant", "BAD_AUTH_CODE",
                       "missing or unknown auth code")


async def test_missing_code(hs: Harness) -> None:
    response = await hs.token(grant_type="authorization_code", redirect_uri=REDIRECT, **CLIENT)
    assert_oauth_error(response, 400, "invalid_request", "BAD_AUTH_CODE",
                       "missing or unknown auth code: send code")


async def test_expired_code(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_emulator_time(monkeypatch)  # "1 second(s)", however slow the run
    code = hs.code()
    hs.hubspot.clock.advance(301)
    response = await hs.exchange(code)
    assert_oauth_error(response, 400, "invalid_grant", "EXPIRED_AUTH_CODE",
                       "auth code expired 1 second(s) ago")
    hs.hubspot.clock.reset()
    # An expired code was not consumed by the failed attempt, but stays expired.
    assert (await hs.exchange(code)).status_code == 200


async def test_redirect_uri_must_equal_the_authorize_one(hs: Harness) -> None:
    code = hs.code()
    other = "https://www.example.com/auth-callback"  # registered, but not the one used
    response = await hs.exchange(code, redirect_uri=other)
    assert_oauth_error(response, 400, "invalid_grant", "BAD_REDIRECT_URI",
                       "redirect_uri does not match the redirect_uri used when initiating the "
                       "authorization (RFC 6749 §4.1.3)")
    trailing = await hs.exchange(code, redirect_uri=REDIRECT + "/")
    assert trailing.json()["status"] == "BAD_REDIRECT_URI"
    assert (await hs.exchange(code)).status_code == 200  # nothing changed


async def test_missing_redirect_uri(hs: Harness) -> None:
    response = await hs.token(grant_type="authorization_code", code=hs.code(), **CLIENT)
    assert_oauth_error(response, 400, "invalid_request", "BAD_REDIRECT_URI",
                       "missing redirect_uri: send the redirect_uri of the authorization "
                       "request")


async def test_code_of_another_client(hs: Harness) -> None:
    _, client_id, secret = hs.hubspot.create_app_registration(
        name="Other", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
    code = hs.code()
    response = await hs.exchange(code, client_id=client_id, client_secret=secret)
    assert_oauth_error(response, 400, "invalid_grant", "BAD_AUTH_CODE",
                       "auth code was not issued to this client")
    assert (await hs.exchange(code)).status_code == 200


# -- client authentication ------------------------------------------------------------------


async def test_unknown_client_id(hs: Harness) -> None:
    response = await hs.exchange(client_id="nope")
    assert_oauth_error(response, 400, "invalid_client", "BAD_CLIENT_ID",
                       "missing or unknown client_id: no app has client_id 'nope'")


async def test_wrong_client_secret_changes_nothing(hs: Harness) -> None:
    code = hs.code()
    response = await hs.exchange(code, client_secret="wrong-secret")
    assert_oauth_error(response, 400, "invalid_client", "BAD_CLIENT_SECRET",
                       "invalid client_secret for this client_id")
    assert (await hs.exchange(code)).status_code == 200


async def test_missing_client_credentials(hs: Harness) -> None:
    no_id = await hs.token(grant_type="refresh_token", refresh_token="x",
                           client_secret=CLIENT["client_secret"])
    assert_oauth_error(no_id, 400, "invalid_client", "BAD_CLIENT_ID", "missing client_id")
    no_secret = await hs.token(grant_type="refresh_token", refresh_token="x",
                               client_id=CLIENT["client_id"])
    assert_oauth_error(no_secret, 400, "invalid_client", "BAD_CLIENT_SECRET",
                       "missing client_secret")


async def test_http_basic_is_not_client_authentication(hs: Harness) -> None:
    basic = base64.b64encode(f"{CLIENT['client_id']}:{CLIENT['client_secret']}".encode())
    response = await hs.client.post(
        "/oauth/v3/token", data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"Authorization": f"Basic {basic.decode()}"})
    assert_oauth_error(response, 400, "invalid_client", "BAD_CLIENT_ID",
                       "missing client_id (HTTP Basic client authentication is not supported: "
                       "send client_id and client_secret in the form body)")


# -- grant type ------------------------------------------------------------------------------


async def test_missing_and_unsupported_grant_type(hs: Harness) -> None:
    missing = await hs.token(**CLIENT)
    assert_oauth_error(missing, 400, "invalid_request", "BAD_GRANT_TYPE", "missing grant_type")
    other = await hs.token(grant_type="password", **CLIENT)
    assert_oauth_error(other, 400, "unsupported_grant_type", "BAD_GRANT_TYPE",
                       "unsupported grant_type 'password'; use authorization_code or "
                       "refresh_token")


# -- PKCE ------------------------------------------------------------------------------------


async def test_pkce_s256(hs: Harness) -> None:
    code = hs.code(code_challenge=s256(VERIFIER), code_challenge_method="S256")
    missing = await hs.exchange(code)
    assert_oauth_error(missing, 400, "invalid_grant", "BAD_CODE_VERIFIER",
                       "code_verifier is required: the authorization request had a "
                       "code_challenge (RFC 7636 §4.5)")
    wrong = await hs.exchange(code, code_verifier=VERIFIER[::-1])
    assert_oauth_error(wrong, 400, "invalid_grant", "BAD_CODE_VERIFIER",
                       "code_verifier does not match the code_challenge (RFC 7636 §4.6)")
    assert (await hs.exchange(code, code_verifier=VERIFIER)).status_code == 200


async def test_pkce_plain(hs: Harness) -> None:
    code = hs.code(code_challenge=VERIFIER, code_challenge_method="plain")
    assert (await hs.exchange(code, code_verifier=VERIFIER)).status_code == 200


async def test_pkce_s256_challenge_is_not_a_plain_verifier(hs: Harness) -> None:
    challenge = s256(VERIFIER)
    code = hs.code(code_challenge=challenge, code_challenge_method="S256")
    response = await hs.exchange(code, code_verifier=challenge)
    assert response.json()["status"] == "BAD_CODE_VERIFIER"


async def test_verifier_without_challenge_is_a_downgrade(hs: Harness) -> None:
    code = hs.code()
    response = await hs.exchange(code, code_verifier=VERIFIER)
    assert_oauth_error(response, 400, "invalid_grant", "BAD_CODE_VERIFIER",
                       "code_verifier was sent but the authorization request had no "
                       "code_challenge (RFC 9700 §4.8)")


async def test_verifier_without_challenge_allowed_by_setting(sqlite_url: str,
                                                             hs_factory) -> None:
    other = await harness_for(ServerSettings(database_url=sqlite_url,
                                             reject_unbound_code_verifier=False), hs_factory)
    async with other.client:
        response = await other.exchange(other.code(), code_verifier=VERIFIER)
    assert response.status_code == 200


# -- refresh_token grant -------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v3", "2026-03"])
async def test_refresh_returns_the_same_refresh_token(hs: Harness, version: str) -> None:
    first = await hs.tokens()
    response = await hs.refresh(first["refresh_token"], version=version,
                                redirect_uri=REDIRECT)  # tolerated, as the Node quickstart
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["refresh_token"] == first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert body["scopes"] == first["scopes"]
    assert body["hub_id"] == ACME
    assert ("token_use" in body) == (version != "v1")
    # The old access token keeps working until it expires.
    assert (await hs.api(first["access_token"])).status_code == 200
    assert (await hs.refresh(first["refresh_token"])).status_code == 200


async def test_unknown_refresh_token(hs: Harness) -> None:
    response = await hs.refresh("na1-0000-0000-0000-0000-000000000000")
    assert_oauth_error(response, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "missing or invalid refresh token")


async def test_missing_refresh_token(hs: Harness) -> None:
    response = await hs.token(grant_type="refresh_token", **CLIENT)
    assert_oauth_error(response, 400, "invalid_request", "BAD_REFRESH_TOKEN",
                       "missing or invalid refresh token: send refresh_token")


async def test_c4_access_token_sent_as_refresh_token(hs: Harness) -> None:
    tokens = await hs.tokens()
    before = hs.hubspot.stats()["token"]["refresh_token"]
    response = await hs.refresh(tokens["access_token"])
    assert_oauth_error(response, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "missing or invalid refresh token: the value sent as refresh_token is "
                       "an access token (it starts with 'C'); send the refresh_token of the "
                       "token response instead")
    # Nothing changed: both tokens still work.
    assert (await hs.api(tokens["access_token"])).status_code == 200
    assert (await hs.refresh(tokens["refresh_token"])).status_code == 200
    after = hs.hubspot.stats()["token"]["refresh_token"]
    assert after == {"ok": before["ok"] + 1, "error": before["error"] + 1}


async def test_c3_refresh_token_of_another_app(hs: Harness) -> None:
    tokens = await hs.tokens()
    _, client_id, secret = hs.hubspot.create_app_registration(
        name="App 2", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
    response = await hs.refresh(tokens["refresh_token"], client_id=client_id,
                                client_secret=secret)
    assert_oauth_error(response, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "refresh token was not issued to this client")
    assert (await hs.refresh(tokens["refresh_token"])).status_code == 200


async def test_refresh_after_uninstall(hs: Harness) -> None:
    tokens = await hs.tokens()
    assert hs.hubspot.uninstall(app_id=1, hub_id=ACME)
    response = await hs.refresh(tokens["refresh_token"])
    assert_oauth_error(response, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "refresh token is invalid, expired or revoked: the app was uninstalled "
                       "from this account")
    assert (await hs.api(tokens["access_token"])).status_code == 401
    # A new install works again.
    assert (await hs.tokens())["hub_id"] == ACME


async def test_refresh_after_v1_delete(hs: Harness) -> None:
    tokens = await hs.tokens()
    deleted = await hs.client.delete(f"/oauth/v1/refresh-tokens/{tokens['refresh_token']}")
    assert deleted.status_code == 204
    response = await hs.refresh(tokens["refresh_token"])
    assert_oauth_error(response, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                       "refresh token is invalid, expired or revoked: it was deleted")


async def test_rotation_rotate(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url,
                                          refresh_token_rotation="rotate"), hs_factory)
    async with hs.client:
        first = await hs.tokens()
        second = (await hs.refresh(first["refresh_token"])).json()
        assert second["refresh_token"] != first["refresh_token"]
        reuse = await hs.refresh(first["refresh_token"])
        assert_oauth_error(reuse, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                           "refresh token was already used and replaced by a newer one "
                           "(refresh token rotation)")
        # rotate (not strict): the newer token still works.
        third = await hs.refresh(second["refresh_token"])
        assert third.status_code == 200


async def test_rotation_strict_reuse_revokes_the_family(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url,
                                          refresh_token_rotation="strict"), hs_factory)
    async with hs.client:
        first = await hs.tokens()
        second = (await hs.refresh(first["refresh_token"])).json()
        reuse = await hs.refresh(first["refresh_token"])
        assert_oauth_error(reuse, 400, "invalid_grant", "BAD_REFRESH_TOKEN",
                           "refresh token was already used and replaced; as a retired refresh "
                           "token was reused, every token of this authorization has been "
                           "revoked (RFC 9700 §4.14.2)")
        after = await hs.refresh(second["refresh_token"])
        assert after.json()["status"] == "BAD_REFRESH_TOKEN"
        assert (await hs.api(second["access_token"])).status_code == 401
        # Another authorization of the same user is untouched.
        other = await hs.tokens()
        assert (await hs.refresh(other["refresh_token"])).status_code == 200


# -- transport-level rules ----------------------------------------------------------------


@pytest.mark.parametrize("version", ["v3", "2026-03"])
async def test_v3_refuses_credentials_in_the_query(hs: Harness, version: str) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post(
        f"/oauth/{version}/token?client_secret={CLIENT['client_secret']}",
        data={"grant_type": "refresh_token", "client_id": CLIENT["client_id"],
              "refresh_token": tokens["refresh_token"]})
    assert_oauth_error(response, 400, "invalid_request", "BAD_REQUEST",
                       f"client_secret must be sent in the form-encoded request body, not the "
                       f"query string (the {version} token endpoints take the body only)")


async def test_v1_tolerates_credentials_in_the_query(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post(
        "/oauth/v1/token", params={"grant_type": "refresh_token", **CLIENT,
                                   "refresh_token": tokens["refresh_token"]})
    assert response.status_code == 200, response.text


async def test_duplicate_parameter(hs: Harness) -> None:
    tokens = await hs.tokens()
    body = (f"grant_type=refresh_token&client_id={CLIENT['client_id']}&client_secret="
            f"{CLIENT['client_secret']}&refresh_token={tokens['refresh_token']}"
            f"&refresh_token=other")
    response = await hs.client.post(
        "/oauth/v3/token", content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_oauth_error(response, 400, "invalid_request", "BAD_REQUEST",
                       "parameter 'refresh_token' was sent more than once")


async def test_non_utf8_body(hs: Harness) -> None:
    response = await hs.client.post(
        "/oauth/v3/token", content=b"grant_type=refresh_token&refresh_token=%ff%fe",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_oauth_error(response, 400, "invalid_request", "BAD_REQUEST",
                       "the request parameters are not valid UTF-8")


async def test_json_body_is_the_wrong_content_type(hs: Harness) -> None:
    response = await hs.client.post("/oauth/v3/token", json={"grant_type": "refresh_token"})
    assert_oauth_error(response, 415, "invalid_request", "BAD_REQUEST",
                       "Content-Type must be application/x-www-form-urlencoded, got "
                       "application/json")


async def test_oversized_body(hs: Harness) -> None:
    response = await hs.client.post(
        "/oauth/v3/token", content=b"a=" + b"x" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert response.status_code == 413
    body = response.json()
    assert body["message"] == "The request body is larger than 65536 bytes."
    assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]


async def test_oversized_parameter(hs: Harness) -> None:
    response = await hs.refresh("x" * 5000)
    assert_oauth_error(response, 400, "invalid_request", "BAD_REQUEST",
                       "parameter 'refresh_token' is longer than 4096 characters")


async def test_wrong_method_is_405_in_hubspots_shape(hs: Harness) -> None:
    response = await hs.client.get("/oauth/v3/token")
    assert response.status_code == 405
    body = response.json()
    assert body["message"] == "HTTP method GET is not allowed on /oauth/v3/token"
    assert body["status"] == "error"
    assert body["category"] == "VALIDATION_ERROR"
    assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
    assert "POST" in response.headers["allow"]


async def test_unknown_version_is_404(hs: Harness) -> None:
    response = await hs.client.post("/oauth/v2/token", data={"grant_type": "refresh_token"})
    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


async def test_stats_count_grants_and_outcomes(hs: Harness) -> None:
    tokens = await hs.tokens()
    await hs.refresh(tokens["refresh_token"])
    await hs.refresh("na1-0000-0000-0000-0000-000000000000")
    await hs.exchange("nope")
    response = await hs.client.get("/_emulator/stats")
    token = response.json()["token"]
    assert token["authorization_code"] == {"ok": 1, "error": 1}
    assert token["refresh_token"] == {"ok": 1, "error": 1}
