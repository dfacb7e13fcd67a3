"""The sans-I/O core: request building, the authorization URL and HubSpot's error dialects.

Pure functions, no server: each HubSpot body below is the shape the reference quotes
(§4.3, §6, §7) or a case of shared/cases (C3, C4, C8, C9, C11, C12)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from hubspot_oauth import Endpoints
from hubspot_oauth.client import protocol
from hubspot_oauth.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ExpiredAuthenticationError,
    HubSpotAPIError,
    InvalidAuthorizationCodeError,
    InvalidClientError,
    InvalidRedirectURIError,
    MissingScopesError,
    RateLimitError,
    ReauthorizationRequiredError,
    RetryableError,
    ServerError,
)

CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
REDIRECT = "http://localhost:3000/oauth-callback"
REFRESH = "na1-8649-43d7-456c-a15c-305ec7f11101"
ACCESS = "C" + "x" * 70
VERSIONS = ["v1", "v3", "2026-03"]


def body(data: object) -> bytes:
    return json.dumps(data).encode()


def query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


# --------------------------------------------------------------- authorization URL


def test_authorization_url_joins_scopes_with_percent_20_and_keeps_optional_apart():
    url = protocol.authorization_url(
        Endpoints(),
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
        scopes=["crm.objects.contacts.read", "oauth"],
        optional_scopes=["crm.objects.contacts.write", "automation"],
        state="s-1",
    )
    assert url.startswith("https://app.hubspot.com/oauth/authorize?")
    raw = urlsplit(url).query
    assert "scope=crm.objects.contacts.read%20oauth" in raw
    assert "optional_scope=crm.objects.contacts.write%20automation" in raw
    assert "+" not in raw
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Foauth-callback" in raw
    q = query(url)
    assert q["scope"] == ["crm.objects.contacts.read oauth"]
    assert q["state"] == ["s-1"]
    assert q["client_id"] == [CLIENT_ID]


def test_authorization_url_sends_optional_scope_only_when_given():
    url = protocol.authorization_url(
        Endpoints(), client_id=CLIENT_ID, redirect_uri=REDIRECT, scopes="crm.objects.contacts.read"
    )
    assert "optional_scope" not in url
    assert "state" not in query(url)
    assert "code_challenge" not in url


@pytest.mark.parametrize(
    "scopes, optional",
    [
        (["crm.objects.contacts.read", "automation"], ["automation"]),  # C8, first input
        ("automation", "automation"),
    ],
)
def test_authorization_url_never_puts_an_optional_scope_into_scope(scopes, optional):
    """Case C8: HubSpot shows its scope-mismatch page for an optional scope in `scope`."""
    with pytest.raises(ConfigurationError, match="automation"):
        protocol.authorization_url(
            Endpoints(),
            client_id=CLIENT_ID,
            redirect_uri=REDIRECT,
            scopes=scopes,
            optional_scopes=optional,
        )


def test_authorization_url_needs_a_required_scope():
    with pytest.raises(ConfigurationError, match="required scope"):
        protocol.authorization_url(
            Endpoints(), client_id=CLIENT_ID, redirect_uri=REDIRECT, scopes=[]
        )


def test_account_pinned_path_and_eu_host():
    url = protocol.authorization_url(
        Endpoints.eu(),
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
        scopes=["oauth"],
        account_id=1234567,
    )
    assert url.startswith("https://app-eu1.hubspot.com/oauth/1234567/authorize?")
    # C9: tokens still go to api.hubapi.com for EU accounts.
    assert Endpoints.eu().token_url == "https://api.hubapi.com/oauth/v3/token"


def test_pkce_s256_matches_rfc_7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert protocol.code_challenge_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    url = protocol.authorization_url(
        Endpoints(),
        client_id=CLIENT_ID,
        redirect_uri=REDIRECT,
        scopes=["oauth"],
        code_challenge=protocol.code_challenge_s256(verifier),
    )
    q = query(url)
    assert q["code_challenge"] == ["E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"]
    assert q["code_challenge_method"] == ["S256"]


def test_new_code_verifier_is_fresh_and_valid():
    verifiers = {protocol.new_code_verifier() for _ in range(20)}
    assert len(verifiers) == 20
    for verifier in verifiers:
        assert 43 <= len(verifier) <= 128
        protocol.code_challenge_s256(verifier)  # valid per RFC 7636 §4.1
    with pytest.raises(ConfigurationError):
        protocol.code_challenge_s256("too-short")


# ------------------------------------------------------------------------ requests


@pytest.mark.parametrize("version", VERSIONS)
def test_code_exchange_and_refresh_requests(version):
    endpoints = Endpoints(api_version=version)
    spec = protocol.exchange_code_request(
        endpoints,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        redirect_uri=REDIRECT,
        code="na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        code_verifier="v" * 43,
    )
    assert (spec.method, spec.url) == ("POST", f"https://api.hubapi.com/oauth/{version}/token")
    assert spec.data == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        "code": "na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "code_verifier": "v" * 43,
    }
    spec = protocol.refresh_request(
        endpoints, client_id=CLIENT_ID, client_secret=SECRET, refresh_token=REFRESH
    )
    assert spec.data == {
        "grant_type": "refresh_token",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "refresh_token": REFRESH,
    }
    assert SECRET not in repr(spec) and REFRESH not in repr(spec)


def test_introspect_and_revoke_requests_per_version():
    v1 = Endpoints(api_version="v1")
    spec = protocol.introspect_request(v1, client_id=CLIENT_ID, client_secret=SECRET, token=ACCESS)
    assert (spec.method, spec.url, spec.data) == (
        "GET",
        f"https://api.hubapi.com/oauth/v1/access-tokens/{ACCESS}",
        None,
    )
    assert ACCESS not in repr(spec)
    spec = protocol.introspect_request(
        v1,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        token=REFRESH,
        token_type_hint="refresh_token",
    )
    assert spec.url == f"https://api.hubapi.com/oauth/v1/refresh-tokens/{REFRESH}"
    spec = protocol.revoke_request(
        v1, client_id=CLIENT_ID, client_secret=SECRET, refresh_token=REFRESH
    )
    assert (spec.method, spec.url) == (
        "DELETE",
        f"https://api.hubapi.com/oauth/v1/refresh-tokens/{REFRESH}",
    )
    for version in ("v3", "2026-03"):
        endpoints = Endpoints(api_version=version)
        spec = protocol.introspect_request(
            endpoints, client_id=CLIENT_ID, client_secret=SECRET, token=ACCESS
        )
        assert (spec.method, spec.url) == (
            "POST",
            f"https://api.hubapi.com/oauth/{version}/token/introspect",
        )
        assert spec.data == {
            "token": ACCESS,
            "token_type_hint": "access_token",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
        }
        spec = protocol.revoke_request(
            endpoints, client_id=CLIENT_ID, client_secret=SECRET, refresh_token=REFRESH
        )
        assert (spec.method, spec.url) == (
            "POST",
            f"https://api.hubapi.com/oauth/{version}/token/revoke",
        )
        assert spec.data == {
            "token": REFRESH,
            "token_type_hint": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
        }
    with pytest.raises(ConfigurationError, match="token_type_hint"):
        protocol.introspect_request(
            Endpoints(),
            client_id=CLIENT_ID,
            client_secret=SECRET,
            token=ACCESS,
            token_type_hint="id_token",
        )


# ------------------------------------------------------------------ token responses


def test_token_expiry_is_computed_from_expires_in_at_receipt():
    received = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    token = protocol.parse_token_response(
        200,
        {},
        body(
            {
                "token_type": "bearer",
                "access_token": ACCESS,
                "refresh_token": REFRESH,
                "expires_in": 1234,
                "hub_id": 1234567,
                "scopes": ["oauth"],
            }
        ),
        received_at=received,
    )
    assert token.expires_at == received + timedelta(seconds=1234)
    assert token.hub_id == 1234567 and token.scopes == ("oauth",)
    assert ACCESS not in repr(token) and REFRESH not in repr(token)


def test_token_response_without_refresh_token_keeps_the_previous_one():
    token = protocol.parse_token_response(
        200,
        {},
        body({"access_token": ACCESS, "expires_in": 1800}),
        previous_refresh_token=REFRESH,
    )
    assert token.refresh_token == REFRESH


@pytest.mark.parametrize(
    "payload",
    [b"", b"<html>ok</html>", b"[]", body({"access_token": ACCESS}), body({"expires_in": 5})],
)
def test_a_2xx_that_is_not_a_token_response_is_a_server_error(payload):
    with pytest.raises(ServerError) as info:
        protocol.parse_token_response(200, {}, payload, secrets=[REFRESH])
    assert info.value.status_code == 200
    assert ACCESS not in str(info.value)


# --------------------------------------------------------------------------- errors


def error(status, payload, operation="refresh_token", headers=None, **kw):
    data = payload if isinstance(payload, bytes) else body(payload)
    return protocol.error_from_response(status, headers or {}, data, operation=operation, **kw)


def test_c3_refresh_token_of_another_client_needs_reauthorization_and_says_why():
    exc = error(
        400,
        {
            "status": "BAD_REFRESH_TOKEN",
            "error": "invalid_grant",
            "message": "refresh token was not issued to this client",
            "error_description": "refresh token was not issued to this client",
            "correlationId": "c0ffee",
        },
    )
    assert type(exc) is ReauthorizationRequiredError
    assert exc.status == "BAD_REFRESH_TOKEN" and exc.error == "invalid_grant"
    assert "not issued to this client" in str(exc)
    assert exc.correlation_id == "c0ffee"


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"},
        {"error": "invalid_grant", "error_description": "refresh token is invalid"},
        {
            "category": "VALIDATION_ERROR",
            "correlationId": "x",
            "message": "refresh token is invalid, expired or revoked",
        },
    ],
)
def test_every_dialect_of_a_dead_refresh_token_needs_reauthorization(payload):
    assert isinstance(error(400, payload), ReauthorizationRequiredError)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (
            {"status": "BAD_AUTH_CODE", "message": "missing or unknown auth code"},
            InvalidAuthorizationCodeError,
        ),
        (
            {"status": "EXPIRED_AUTH_CODE", "message": "auth code expired"},
            InvalidAuthorizationCodeError,
        ),
        (
            {"error": "invalid_grant", "error_description": "code already used"},
            InvalidAuthorizationCodeError,
        ),
        (
            {"error": "invalid_grant", "error_description": "redirect_uri mismatch"},
            InvalidRedirectURIError,
        ),
        (
            {"status": "BAD_REDIRECT_URI", "message": "redirect uri mismatch"},
            InvalidRedirectURIError,
        ),
        ({"status": "BAD_CLIENT_ID", "message": "unknown client"}, InvalidClientError),
        ({"error": "invalid_client", "error_description": "bad secret"}, InvalidClientError),
        ({"error": "unsupported_grant_type"}, BadRequestError),
        (
            {"category": "VALIDATION_ERROR", "message": "missing field", "correlationId": "x"},
            BadRequestError,
        ),
    ],
)
def test_code_exchange_errors(payload, expected):
    exc = error(400, payload, operation="authorization_code")
    assert type(exc) is expected
    assert not isinstance(exc, RetryableError)


def test_invalid_client_on_refresh_is_not_reauthorization():
    exc = error(401, {"error": "invalid_client", "status": "BAD_CLIENT_SECRET"})
    assert type(exc) is InvalidClientError


def test_401_expired_vs_invalid_authentication():
    expired = error(
        401,
        {
            "status": "error",
            "message": "The OAuth token used to make this call expired 0 second(s) ago.",
            "correlationId": "c1",
            "category": "EXPIRED_AUTHENTICATION",
            "context": {"expire time": ["2026-03-10T23:04:41.164Z"]},
        },
        operation="api",
    )
    assert type(expired) is ExpiredAuthenticationError
    assert expired.status is None and expired.category == "EXPIRED_AUTHENTICATION"
    assert expired.context == {"expire time": ["2026-03-10T23:04:41.164Z"]}
    invalid = error(
        401,
        {"message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"},
        operation="api",
    )
    assert type(invalid) is AuthenticationError


def test_c12_missing_scopes_lists_the_required_scope():
    exc = error(
        403,
        {
            "status": "error",
            "message": "This app hasn't been granted all required scopes to make this call.",
            "correlationId": "c2",
            "errors": [
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredScopes": ["crm.objects.contacts.write"]},
                }
            ],
            "links": {"scopes": "https://developers.hubspot.com/scopes"},
            "category": "MISSING_SCOPES",
        },
        operation="api",
    )
    assert isinstance(exc, MissingScopesError)
    assert exc.required_scopes == ["crm.objects.contacts.write"]


def test_429_honours_retry_after_in_seconds_and_as_http_date():
    exc = error(
        429,
        {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "category": "RATE_LIMITS",
        },
        headers={"Retry-After": "7"},
    )
    assert isinstance(exc, RateLimitError) and isinstance(exc, RetryableError)
    assert exc.retry_after == 7.0
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
    exc = error(
        429, b"Too Many Requests", headers={"retry-after": "Sun, 01 Mar 2026 12:00:30 GMT"}, now=now
    )
    assert isinstance(exc, RateLimitError) and exc.retry_after == 30.0
    assert protocol.parse_retry_after("garbage") is None
    assert protocol.parse_retry_after("-5") == 0.0
    assert protocol.parse_retry_after("99999999") == 3600.0


def test_c11_html_outage_page_is_a_retryable_server_error_with_a_short_excerpt():
    page = (
        "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
        f"<p>upstream said: refresh_token={REFRESH} access={ACCESS}</p>"
        + "<p>padding</p>" * 200
        + "</body></html>"
    ).encode()
    exc = error(502, page, secrets=[REFRESH])
    assert type(exc) is ServerError and isinstance(exc, RetryableError)
    assert exc.status_code == 502
    assert exc.body_excerpt is not None and 0 < len(exc.body_excerpt) <= 200
    assert "502 Bad Gateway" in exc.body_excerpt
    for text in (str(exc), repr(exc), exc.body_excerpt, exc.message):
        assert REFRESH not in text and ACCESS not in text
    assert "502" in str(exc)


@pytest.mark.parametrize("status", [500, 503, 504])
def test_5xx_json_and_empty_bodies_are_server_errors(status):
    assert type(error(status, {"status": "error", "message": "internal"})) is ServerError
    assert type(error(status, b"")) is ServerError


def test_try_later_4xx_statuses_are_retryable():
    """Reference §7.5: 423 (locked, wait at least 2 s) and 477 (account migrating data
    centres, with Retry-After) ask for a later try, as does 408."""
    locked = error(423, {"status": "error", "message": "locked"}, operation="api")
    assert isinstance(locked, ServerError) and locked.retry_after == 2.0
    moving = error(477, b"", operation="api", headers={"Retry-After": "60"})
    assert isinstance(moving, RetryableError) and moving.retry_after == 60.0
    assert isinstance(error(408, b"timeout"), RetryableError)


def test_a_plain_4xx_page_is_a_bad_request_with_an_excerpt():
    """A 404 HTML page (a wrong base URL) will not pass by retrying."""
    exc = error(404, b"<html><body>Not Found</body></html>")
    assert type(exc) is BadRequestError and exc.status_code == 404
    assert exc.body_excerpt == "<html><body>Not Found</body></html>"


def test_is_expired_authentication():
    assert protocol.is_expired_authentication(401, body({"category": "EXPIRED_AUTHENTICATION"}))
    assert not protocol.is_expired_authentication(401, body({"category": "INVALID_AUTHENTICATION"}))
    assert not protocol.is_expired_authentication(403, body({"category": "EXPIRED_AUTHENTICATION"}))
    assert not protocol.is_expired_authentication(401, b"<html>")


def test_redact_removes_known_secrets_and_token_shapes():
    text = protocol.redact(f"a {SECRET} b {REFRESH} c {ACCESS} d", [SECRET])
    assert SECRET not in text and REFRESH not in text and ACCESS not in text


# -------------------------------------------------------------------- introspection


def test_v1_access_token_metadata():
    received = datetime(2026, 3, 1, tzinfo=UTC)
    info = protocol.parse_introspection(
        200,
        {},
        body(
            {
                "token": ACCESS,
                "user": "admin@example.com",
                "hub_domain": "acme.example.com",
                "scopes": ["oauth", "crm.objects.contacts.read"],
                "hub_id": 1234567,
                "app_id": 1,
                "expires_in": 1799,
                "user_id": 42,
                "token_type": "access",
            }
        ),
        token=ACCESS,
        received_at=received,
    )
    assert info.active and info.token_use == "access_token"
    assert (info.hub_id, info.user, info.user_id, info.hub_domain, info.app_id) == (
        1234567,
        "admin@example.com",
        42,
        "acme.example.com",
        1,
    )
    assert info.scopes == ("oauth", "crm.objects.contacts.read")
    assert info.expires_at == received + timedelta(seconds=1799)
    assert info.token == ACCESS and ACCESS not in repr(info) and ACCESS not in str(info)
    assert "token" not in info.raw


def test_v3_refresh_token_introspection_and_inactive_token():
    info = protocol.parse_introspection(
        200,
        {},
        body(
            {
                "active": True,
                "token_use": "refresh_token",
                "token": REFRESH,
                "client_id": CLIENT_ID,
                "hub_id": 1234567,
                "user_id": 42,
                "app_id": 1,
                "scopes": ["oauth"],
                "token_type": "refresh",
            }
        ),
        token=REFRESH,
        token_type_hint="refresh_token",
    )
    assert info.active and info.token_use == "refresh_token" and info.client_id == CLIENT_ID
    assert REFRESH not in repr(info)
    dead = protocol.parse_introspection(200, {}, body({"active": False}), token=ACCESS)
    assert dead.active is False and dead.hub_id is None


def test_introspection_errors_raise_typed_errors():
    with pytest.raises(InvalidClientError):
        protocol.parse_introspection(401, {}, body({"error": "invalid_client"}))
    with pytest.raises(ServerError):
        protocol.parse_introspection(200, {}, b"<html></html>")
    # v1 metadata of an unknown token (UNCONFIRMED shape, reference §14.16): inactive.
    info = protocol.parse_introspection(
        404, {}, body({"status": "error", "message": "token not found"}), token=ACCESS
    )
    assert info.active is False


def test_revoke_accepts_any_2xx():
    assert protocol.parse_revoke_response(204, {}, b"") is None
    assert protocol.parse_revoke_response(200, {}, b"{}") is None
    with pytest.raises(HubSpotAPIError):
        protocol.parse_revoke_response(400, {}, body({"error": "invalid_request"}))


def test_access_token_shape_check_accepts_dashes_in_the_body():
    """Access tokens are ``C`` + base64url, so ``-`` may come right after the ``C``: the
    C4 hint ("looks like an access token") must not depend on luck."""
    from hubspot_oauth.tokens import looks_like_access_token, new_access_token

    assert looks_like_access_token("C-x" + "a" * 60)
    assert all(looks_like_access_token(new_access_token()) for _ in range(2000))
    assert not looks_like_access_token(REFRESH)
    assert not looks_like_access_token("6f18f21e-a743-4509-b7fd-1a5e632fffa1")
