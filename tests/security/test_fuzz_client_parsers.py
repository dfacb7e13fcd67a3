"""Hypothesis: the library's response parsers (client/protocol.py) and its clients on
arbitrary answers.

Invariants, whatever the status code, headers and body bytes:
- the parsers raise only the documented errors (subclasses of `HubSpotOAuthError`);
- `error_from_response` never raises and returns a `HubSpotAPIError`;
- a secret the request carried (client secret, code, refresh token) never appears in the
  error's message, str, repr or body excerpt, even when the server echoed it back;
- `parse_retry_after` gives None or seconds in [0, 3600].
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspot_oauth import AsyncOAuthClient, Endpoints, OAuthClient
from hubspot_oauth.client import protocol
from hubspot_oauth.client.retry import NO_RETRY
from hubspot_oauth.errors import HubSpotAPIError, HubSpotOAuthError
from hubspot_oauth.tokens import Token, new_access_token, new_authorization_code

# HUBSPOT_OAUTH_FUZZ_EXAMPLES raises it for a longer hunt; the suite keeps the default.
FUZZ = settings(
    max_examples=int(os.environ.get("HUBSPOT_OAUTH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# What HubSpot and proxies put in error bodies, with arbitrary values.
KEYS = [
    "status", "message", "correlationId", "category", "subCategory", "error",
    "error_description", "context", "errors", "links", "access_token", "refresh_token",
    "expires_in", "token_type", "hub_id", "user_id", "scopes", "active", "token_use",
    "token", "signed_access_token", "app_id", "client_id", "user", "hub_domain",
]
CODES = [
    "BAD_REFRESH_TOKEN", "BAD_AUTH_CODE", "EXPIRED_AUTH_CODE", "BAD_CLIENT_ID",
    "invalid_grant", "invalid_client", "EXPIRED_AUTHENTICATION", "MISSING_SCOPES",
    "RATE_LIMITS", "INVALID_AUTHENTICATION", "error", "",
]
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(CODES),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)
json_object = st.dictionaries(st.sampled_from(KEYS), json_value, max_size=10)


def _dump(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


bodies = st.one_of(
    st.binary(max_size=600),
    json_object.map(_dump),
    json_value.map(_dump),
    st.sampled_from([
        b"", b"null", b"[]", b"{", b'{"status":', b"<html><body>502 Bad Gateway</body></html>",
        b"\xff\xfe\x00{", b"[" * 5000 + b"]" * 5000, b'{"expires_in": 1e400}',
        b'{"access_token": "C", "expires_in": NaN}', b'{"access_token":"Cx","expires_in":"-1"}',
    ]),
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 409, 429, 477, 500, 502, 503]),
    st.integers(min_value=-5, max_value=1200),
)
header_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["0", "-3", "nan", "inf", "1e9", "Wed, 21 Oct 2015 07:28:00 GMT", "99999"]),
)
headers = st.dictionaries(
    st.sampled_from(["retry-after", "Retry-After", "x-hubspot-correlation-id", "content-type"]),
    header_values,
    max_size=3,
)
grants = st.sampled_from(["authorization_code", "refresh_token"])
operations = st.sampled_from(["authorization_code", "refresh_token", "introspect", "revoke", "api"])


def _no_secret_leaks(error: BaseException, secrets: list[str]) -> None:
    texts = [str(error), repr(error), *(str(a) for a in error.args)]
    if isinstance(error, HubSpotAPIError):
        texts += [error.message, error.body_excerpt or "", error.error_description or ""]
    for secret in secrets:
        for text in texts:
            assert secret not in text


@st.composite
def echoing_bodies(draw: st.DrawFn, secrets: list[str]) -> bytes:
    """A body that echoes a secret back, as a careless proxy or server might."""
    secret = draw(st.sampled_from(secrets))
    where = draw(st.sampled_from(["message", "error_description", "html", "status"]))
    if where == "html":
        return f"<html><p>bad token {secret}</p></html>".encode()
    return _dump({where: f"the value {secret} is wrong", "correlationId": "x"})


@FUZZ
@given(status=statuses, hdrs=headers, body=bodies, grant=grants)
def test_parse_token_response_raises_only_documented_errors(
    status: int, hdrs: dict[str, str], body: bytes, grant: str
) -> None:
    try:
        token = protocol.parse_token_response(
            status, hdrs, body, grant_type=grant, received_at=datetime(2026, 1, 1, tzinfo=UTC)
        )
    except HubSpotOAuthError:
        return
    assert 200 <= status < 300
    assert isinstance(token, Token) and isinstance(token.access_token, str)


@FUZZ
@given(status=statuses, hdrs=headers, body=bodies, hint=st.sampled_from(
    ["access_token", "refresh_token", "weird"]))
def test_parse_introspection_raises_only_documented_errors(
    status: int, hdrs: dict[str, str], body: bytes, hint: str
) -> None:
    try:
        info = protocol.parse_introspection(status, hdrs, body, token="Cabc", token_type_hint=hint)
    except HubSpotOAuthError:
        return
    assert isinstance(info, protocol.TokenInfo) and isinstance(info.active, bool)


@FUZZ
@given(status=statuses, hdrs=headers, body=bodies)
def test_parse_revoke_response_raises_only_documented_errors(
    status: int, hdrs: dict[str, str], body: bytes
) -> None:
    try:
        protocol.parse_revoke_response(status, hdrs, body)
    except HubSpotOAuthError:
        return
    assert 200 <= status < 300


@FUZZ
@given(status=statuses, hdrs=headers, body=bodies, operation=operations)
def test_error_from_response_never_raises(
    status: int, hdrs: dict[str, str], body: bytes, operation: str
) -> None:
    error = protocol.error_from_response(status, hdrs, body, operation=operation)  # type: ignore[arg-type]
    assert isinstance(error, HubSpotAPIError)
    assert isinstance(str(error), str) and isinstance(repr(error), str)
    if error.retry_after is not None:
        assert 0 <= error.retry_after <= 3600
    if error.body_excerpt is not None:
        assert len(error.body_excerpt) <= protocol.EXCERPT_LIMIT


SECRETS = [new_authorization_code(), new_access_token(), "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"]


@FUZZ
@given(
    status=st.sampled_from([400, 401, 403, 404, 429, 500, 502]),
    body=echoing_bodies(SECRETS),
    operation=operations,
)
def test_errors_never_carry_a_secret_the_server_echoed(
    status: int, body: bytes, operation: str
) -> None:
    error = protocol.error_from_response(status, {}, body, operation=operation, secrets=SECRETS)  # type: ignore[arg-type]
    _no_secret_leaks(error, SECRETS)
    try:
        protocol.parse_token_response(status, {}, body, secrets=SECRETS)
    except HubSpotOAuthError as exc:
        _no_secret_leaks(exc, SECRETS)
    else:  # an error status is never a token; otherwise the leak check above never ran
        raise AssertionError(f"HTTP {status} was parsed as a token")


@FUZZ
@given(value=st.one_of(st.none(), header_values, st.text(max_size=60)))
def test_parse_retry_after_is_bounded(value: str | None) -> None:
    seconds = protocol.parse_retry_after(value, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert seconds is None or 0 <= seconds <= 3600


@FUZZ
@given(status=statuses, body=bodies)
def test_is_expired_authentication_is_a_plain_bool(status: int, body: bytes) -> None:
    assert protocol.is_expired_authentication(status, body) in (True, False)


# --- the clients themselves, on arbitrary answers (HubSpot's side is the edge we do not own)


def _transport(status: int, hdrs: dict[str, str], body: bytes) -> httpx.MockTransport:
    safe_status = status if 100 <= status <= 599 else 502

    # Headers as bytes, as they come off the wire (any byte value, not only ASCII).
    raw = [(k.encode("ascii"), v.encode("utf-8")) for k, v in hdrs.items()]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(safe_status, headers=raw, content=body)

    return httpx.MockTransport(handler)


CLIENT_KW = {"client_id": "id", "client_secret": SECRETS[2], "retry": NO_RETRY,
             "endpoints": Endpoints.local("http://hubspot.test")}


@FUZZ
@given(status=statuses, hdrs=headers, body=bodies,
       version=st.sampled_from(["v1", "v3", "2026-03"]))
def test_oauth_client_raises_only_documented_errors(
    status: int, hdrs: dict[str, str], body: bytes, version: str
) -> None:
    endpoints = Endpoints.local("http://hubspot.test", version)
    calls = [
        lambda c: c.exchange_code(SECRETS[0]),
        lambda c: c.refresh("na1-1111-2222-3333-4444-555555555555"),
        lambda c: c.introspect(SECRETS[1]),
        lambda c: c.revoke("na1-1111-2222-3333-4444-555555555555"),
    ]
    with OAuthClient(**{**CLIENT_KW, "endpoints": endpoints},
                     transport=_transport(status, hdrs, body)) as client:
        for call in calls:
            try:
                call(client)
            except HubSpotOAuthError as exc:
                _no_secret_leaks(exc, SECRETS)


@FUZZ
@given(status=statuses, hdrs=headers, body=bodies)
def test_async_oauth_client_raises_only_documented_errors(
    status: int, hdrs: dict[str, str], body: bytes
) -> None:
    async def main() -> None:
        async with AsyncOAuthClient(**CLIENT_KW,
                                    transport=_transport(status, hdrs, body)) as client:
            calls = [lambda: client.exchange_code(SECRETS[0]), lambda: client.refresh("na1-x"),
                     lambda: client.introspect(SECRETS[1]), lambda: client.revoke("na1-x")]
            for call in calls:
                try:
                    await call()
                except HubSpotOAuthError as exc:
                    _no_secret_leaks(exc, SECRETS)

    anyio.run(main)
