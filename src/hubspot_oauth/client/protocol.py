"""The sans-I/O core of the client: build HubSpot's OAuth requests, parse its answers.

Nothing here touches the network. `OAuthClient` and `AsyncOAuthClient` send the
`RequestSpec`s built here with httpx and hand the status, headers and body back to the
parsers, so the sync and async clients cannot drift apart (DESIGN §2).

Requests (reference §4.1, §6):

- code exchange, refresh: POST ``/oauth/{version}/token`` (form), every version;
- introspect: v1 GET ``/oauth/v1/access-tokens/{t}`` or ``/refresh-tokens/{t}``;
  v3/2026-03 POST ``…/token/introspect`` (form: ``token``, ``token_type_hint``, credentials);
- revoke: v1 DELETE ``/oauth/v1/refresh-tokens/{t}``; v3/2026-03 POST ``…/token/revoke``.

Client credentials always travel in the form body (client_secret_post; HTTP Basic is
UNCONFIRMED at HubSpot, reference §4.1).

Errors (reference §4.3, §7): HubSpot answers in three dialects, sometimes mixed in one body:
the legacy ``status``/``message``, RFC 6749 §5.2 ``error``/``error_description``, and the
``category``/``correlationId`` Error object. `error_from_response` reads all three into the
tree of `hubspot_oauth.errors`. The parsers raise nothing but those errors, whatever bytes
and status they are given.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from secrets import token_urlsafe
from typing import Any, Literal
from urllib.parse import quote, urlencode

from ..endpoints import Endpoints
from ..errors import (
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
    ServerError,
)
from ..scopes import join_scopes, split_scopes
from ..tokens import Token, mask

__all__ = [
    "EXCERPT_LIMIT",
    "USER_AGENT",
    "Operation",
    "RequestSpec",
    "TokenInfo",
    "authorization_url",
    "needs_account_details",
    "code_challenge_s256",
    "error_from_response",
    "exchange_code_request",
    "introspect_request",
    "is_expired_authentication",
    "new_code_verifier",
    "parse_introspection",
    "parse_retry_after",
    "parse_revoke_response",
    "parse_token_response",
    "raise_for_status",
    "redact",
    "refresh_request",
    "revoke_request",
    "with_account_details",
]

USER_AGENT = "hubspot-oauth-python/0.1.0"
EXCERPT_LIMIT = 200
# Never let an outlandish Retry-After park a caller for hours (seconds).
_RETRY_AFTER_CAP = 3600.0

Operation = Literal["authorization_code", "refresh_token", "introspect", "revoke", "api"]
TokenTypeHint = Literal["access_token", "refresh_token"]


# --------------------------------------------------------------------------- requests


@dataclasses.dataclass(frozen=True, slots=True)
class RequestSpec:
    """One HTTP request to send, as plain data.

    **Fields:** `method` (``"GET"``, ``"POST"``, ``"DELETE"``), `url` (absolute; v1
    metadata URLs contain the token, so the repr hides it), `headers` (dict), `data` (form
    fields for an ``application/x-www-form-urlencoded`` body, or None), `operation` (which
    parser reads the answer), `secrets` (values that must never appear in errors or logs).
    """

    method: str
    url: str = dataclasses.field(repr=False)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    data: dict[str, str] | None = dataclasses.field(default=None, repr=False)
    operation: Operation = "api"
    secrets: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    @property
    def safe_url(self) -> str:
        """`url` with every secret replaced, for messages."""
        return redact(self.url, self.secrets)


def _headers() -> dict[str, str]:
    return {"Accept": "application/json", "User-Agent": USER_AGENT}


def _require(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string")
    return value


def exchange_code_request(
    endpoints: Endpoints,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    code: str,
    code_verifier: str | None = None,
) -> RequestSpec:
    """POST ``grant_type=authorization_code`` to the token endpoint of `endpoints`.

    Form fields: ``grant_type, client_id, client_secret, redirect_uri, code`` and
    ``code_verifier`` when PKCE was used (RFC 6749 §4.1.3, RFC 7636 §4.5; reference
    §4.1). `redirect_uri` must equal the one of the authorization URL.
    Raises `ConfigurationError` for an empty `code`.
    """
    data = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "redirect_uri": redirect_uri,
        "code": _require("code", code),
    }
    if code_verifier is not None:
        data["code_verifier"] = _require("code_verifier", code_verifier)
    return RequestSpec(
        "POST",
        endpoints.token_url,
        _headers(),
        data,
        "authorization_code",
        _secret_tuple(client_secret, code, code_verifier),
    )


def refresh_request(
    endpoints: Endpoints, *, client_id: str, client_secret: str, refresh_token: str
) -> RequestSpec:
    """POST ``grant_type=refresh_token`` (RFC 6749 §6; reference §4.1).

    Form fields: ``grant_type, client_id, client_secret, refresh_token``. Raises
    `ConfigurationError` for an empty refresh token.
    """
    data = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": _require("refresh_token", refresh_token),
    }
    return RequestSpec(
        "POST",
        endpoints.token_url,
        _headers(),
        data,
        "refresh_token",
        _secret_tuple(client_secret, refresh_token),
    )


def introspect_request(
    endpoints: Endpoints,
    *,
    client_id: str,
    client_secret: str,
    token: str,
    token_type_hint: str = "access_token",  # noqa: S107 - a hint name, not a secret
) -> RequestSpec:
    """Ask HubSpot what a token is (hub, user, app, scopes, seconds left).

    v1: GET ``/oauth/v1/access-tokens/{token}`` or ``/oauth/v1/refresh-tokens/{token}``
    (no credentials; reference §6.1-6.2). v3 and 2026-03: POST ``…/token/introspect``
    with form ``token, token_type_hint, client_id, client_secret`` (RFC 7662 §2.1;
    reference §6.3). Raises `ConfigurationError` for an empty token or a hint other than
    ``"access_token"``/``"refresh_token"``.
    """
    _require("token", token)
    hint = _hint(token_type_hint)
    if endpoints.api_version == "v1":
        url = (
            endpoints.access_token_info_url(token)
            if hint == "access_token"
            else endpoints.refresh_token_info_url(token)
        )
        return RequestSpec("GET", url, _headers(), None, "introspect", _secret_tuple(token))
    data = {
        "token": token,
        "token_type_hint": hint,
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return RequestSpec(
        "POST",
        endpoints.introspect_url,
        _headers(),
        data,
        "introspect",
        _secret_tuple(client_secret, token),
    )


def revoke_request(
    endpoints: Endpoints,
    *,
    client_id: str,
    client_secret: str,
    refresh_token: str,
) -> RequestSpec:
    """Revoke a refresh token (the install stays; access tokens already issued live on).

    v1: DELETE ``/oauth/v1/refresh-tokens/{token}`` (reference §4.5, [DOC-V1-DELETE]).
    v3 and 2026-03: POST ``…/token/revoke`` with form ``token, token_type_hint=
    refresh_token, client_id, client_secret`` (RFC 7009 §2.1; reference §6.4).
    """
    _require("refresh_token", refresh_token)
    if endpoints.api_version == "v1":
        return RequestSpec(
            "DELETE",
            endpoints.refresh_token_info_url(refresh_token),
            _headers(),
            None,
            "revoke",
            _secret_tuple(refresh_token),
        )
    data = {
        "token": refresh_token,
        "token_type_hint": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    return RequestSpec(
        "POST",
        endpoints.revoke_url,
        _headers(),
        data,
        "revoke",
        _secret_tuple(client_secret, refresh_token),
    )


def _hint(value: str) -> TokenTypeHint:
    if value == "access_token":
        return "access_token"
    if value == "refresh_token":
        return "refresh_token"
    raise ConfigurationError(
        f"token_type_hint must be 'access_token' or 'refresh_token', got {value!r}"
    )


def _secret_tuple(*values: str | None) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and v)


# --------------------------------------------------------------------- authorize URL


def new_code_verifier() -> str:
    """A fresh PKCE code verifier: 86 URL-safe characters (512 bits; RFC 7636 §4.1)."""
    return token_urlsafe(64)


def code_challenge_s256(code_verifier: str) -> str:
    """``BASE64URL(SHA256(verifier))`` without padding (RFC 7636 §4.2, method S256).

    Raises `ConfigurationError` when the verifier is not 43-128 unreserved characters.
    """
    if not isinstance(code_verifier, str) or not re.fullmatch(
        r"[A-Za-z0-9\-._~]{43,128}", code_verifier
    ):
        raise ConfigurationError(
            "code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 §4.1)"
        )
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    endpoints: Endpoints,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: Iterable[str] | str,
    optional_scopes: Iterable[str] | str | None = None,
    state: str | None = None,
    account_id: int | str | None = None,
    code_challenge: str | None = None,
    code_challenge_method: str = "S256",
) -> str:
    """The URL that sends the user to HubSpot's install (consent) page.

    Query: ``client_id``, ``redirect_uri``, ``scope`` (space-joined), ``optional_scope``
    (only when non-empty), ``state`` (when given), ``code_challenge`` and
    ``code_challenge_method`` (when given). Values are percent-encoded with ``%20`` for
    spaces, as HubSpot's docs and official SDK do (reference §2.2-2.3). With `account_id`
    the path is ``/oauth/{account_id}/authorize`` (reference §2.1).

    A scope may be required or optional, never both: HubSpot shows its scope-mismatch page
    when an optional scope is put into ``scope`` (case C8). Raises `ConfigurationError`
    when a scope is in both lists, when no required scope is given, or for an empty state.
    """
    required = split_scopes(scopes)
    optional = split_scopes(optional_scopes)
    both = [s for s in required if s in optional]
    if both:
        raise ConfigurationError(
            f"scope(s) {', '.join(both)} listed as both required and optional; HubSpot "
            "rejects an optional scope in `scope` (put it only in optional_scopes)"
        )
    if not required:
        raise ConfigurationError(
            "at least one required scope is needed: HubSpot requires the `scope` parameter"
        )
    params: list[tuple[str, str]] = [
        ("client_id", _require("client_id", client_id)),
        ("redirect_uri", _require("redirect_uri", redirect_uri)),
        ("scope", join_scopes(required)),
    ]
    if optional:
        params.append(("optional_scope", join_scopes(optional)))
    if state is not None:
        params.append(("state", _require("state", state)))
    if code_challenge is not None:
        if code_challenge_method not in ("S256", "plain"):
            raise ConfigurationError("code_challenge_method must be 'S256' or 'plain'")
        params.append(("code_challenge", _require("code_challenge", code_challenge)))
        params.append(("code_challenge_method", code_challenge_method))
    query = urlencode(params, quote_via=quote, safe="")
    return f"{endpoints.authorize_url(account_id)}?{query}"


# ------------------------------------------------------------------------- responses


@dataclasses.dataclass(frozen=True, slots=True)
class TokenInfo:
    """What HubSpot says about a token: v1 metadata and v3/2026-03 introspection in one type.

    **Fields:** `active` (bool; False for an unknown, expired or revoked token, RFC 7662
    §2.2), `token_use` (``"access_token"`` or ``"refresh_token"``), `hub_id` (int),
    `hub_domain` (str), `user` (installing user's email), `user_id` (int), `app_id` (int),
    `client_id` (str), `scopes` (tuple of str), `expires_in` (int seconds left, access
    tokens only), `expires_at` (aware UTC datetime computed at receipt, or None),
    `token_type` (as HubSpot spelt it: ``"access"``, ``"refresh"``, ``"Bearer"``),
    `hublet` (``"na1"``, …), `token` (the token itself; masked in the repr), `raw`
    (the JSON body without the token; hidden from the repr).
    Any field HubSpot left out is None (or ``()`` for scopes).
    """

    active: bool
    token_use: str
    hub_id: int | None = None
    hub_domain: str | None = None
    user: str | None = None
    user_id: int | None = None
    app_id: int | None = None
    client_id: str | None = None
    scopes: tuple[str, ...] = ()
    expires_in: int | None = None
    expires_at: datetime | None = None
    token_type: str | None = None
    hublet: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in ("token", "raw")
        )
        return f"TokenInfo(token={mask(self.token)}, {fields})"

    __str__ = __repr__


def parse_token_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    grant_type: str = "refresh_token",
    received_at: datetime | None = None,
    previous_refresh_token: str | None = None,
    secrets: Sequence[str] = (),
) -> Token:
    """Read a token-endpoint answer into a `Token` (RFC 6749 §5.1; reference §4.2).

    `expires_at` = `received_at` (aware UTC; default now) + ``expires_in`` seconds. A
    missing ``refresh_token`` keeps `previous_refresh_token` (RFC 6749 §6).
    Raises the error `error_from_response` gives for a non-2xx answer (grant type
    `grant_type` decides what ``invalid_grant`` means), and `ServerError` for a 2xx whose
    body is not a token response.
    """
    if not 200 <= status_code < 300:
        raise error_from_response(
            status_code, headers, body, operation=_operation(grant_type), secrets=secrets
        )
    payload = _json_object(body)
    if payload is None:
        raise _malformed(status_code, headers, body, "token response is not JSON", secrets)
    try:
        return Token.from_response(
            payload,
            received_at=received_at or datetime.now(UTC),
            previous_refresh_token=previous_refresh_token,
        )
    except (ValueError, TypeError, OverflowError) as exc:
        raise _malformed(
            status_code, headers, body, f"malformed token response: {exc}", secrets
        ) from None


def _operation(grant_type: str) -> Operation:
    return "authorization_code" if grant_type == "authorization_code" else "refresh_token"


def parse_introspection(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    token: str | None = None,
    token_type_hint: str = "access_token",  # noqa: S107 - a hint name, not a secret
    received_at: datetime | None = None,
    secrets: Sequence[str] = (),
) -> TokenInfo:
    """Read v1 metadata or a v3/2026-03 introspection answer into a `TokenInfo`.

    v1 answers have no ``active``: a 2xx means active (reference §6.1). A v3 body
    ``{"active": false}`` gives ``TokenInfo(active=False)`` (RFC 7662 §2.2). What v1 returns
    for an unknown or expired token is UNCONFIRMED (reference §14.16): a 404, or a 400
    whose code names a bad/expired token, is read as inactive too. Other errors raise as in
    `error_from_response`; a 2xx that is not a JSON object raises `ServerError`.
    """
    hint = (
        token_type_hint
        if token_type_hint in ("access_token", "refresh_token")
        else ("access_token")
    )
    if not 200 <= status_code < 300:
        error = error_from_response(
            status_code, headers, body, operation="introspect", secrets=secrets
        )
        if _means_inactive(error):
            return TokenInfo(active=False, token_use=hint, token=token)
        raise error
    payload = _json_object(body)
    if payload is None:
        raise _malformed(status_code, headers, body, "introspection is not JSON", secrets)
    return _token_info(payload, hint, token, received_at or datetime.now(UTC))


def _means_inactive(error: HubSpotAPIError) -> bool:
    if error.status_code == 404 and error.body_excerpt is None:
        return True
    code = (error.status or error.error or "").upper()
    return error.status_code in (400, 404) and (
        code in {"BAD_ACCESS_TOKEN", "BAD_REFRESH_TOKEN", "EXPIRED_ACCESS_TOKEN", "INVALID_TOKEN"}
        or code == "INVALID_GRANT"
    )


def _token_info(
    payload: Mapping[str, Any], hint: str, token: str | None, received_at: datetime
) -> TokenInfo:
    signed = payload.get("signed_access_token")
    signed = signed if isinstance(signed, Mapping) else {}
    active = payload.get("active", True)
    token_use = payload.get("token_use")
    if not isinstance(token_use, str) or token_use not in ("access_token", "refresh_token"):
        token_use = hint
    expires_in = _int(payload.get("expires_in"))
    expires_at = None
    if expires_in is not None and -(10**9) < expires_in < 10**9:
        expires_at = received_at + timedelta(seconds=expires_in)
    scopes = payload.get("scopes")
    if isinstance(scopes, str):
        scopes = scopes.split()
    raw = {k: v for k, v in payload.items() if k != "token"}
    body_token = payload.get("token")
    return TokenInfo(
        active=active is True or (isinstance(active, str) and active.lower() == "true"),
        token_use=token_use,
        hub_id=_int(payload.get("hub_id", signed.get("hubId"))),
        hub_domain=_str(payload.get("hub_domain")),
        user=_str(payload.get("user")),
        user_id=_int(payload.get("user_id", signed.get("userId"))),
        app_id=_int(payload.get("app_id", signed.get("appId"))),
        client_id=_str(payload.get("client_id")),
        scopes=tuple(
            s for s in (scopes if isinstance(scopes, list | tuple) else ()) if isinstance(s, str)
        ),
        expires_in=expires_in,
        expires_at=expires_at,
        token_type=_str(payload.get("token_type")),
        hublet=_str(payload.get("hublet", signed.get("hublet"))),
        token=body_token if isinstance(body_token, str) and body_token else token,
        raw=raw,
    )


def needs_account_details(token: Token) -> bool:
    """True when `token` lacks an account detail that introspecting its access token gives:
    `hub_id`, `hub_domain`, `user` (the installing user's email) or `scopes`.

    HubSpot's v3 token response names the hub_id and scopes but never the domain or the
    user (reference §4.2); old v1 responses carry only the tokens. Raises
    `ConfigurationError` when `token` is not a `Token`.
    """
    if not isinstance(token, Token):
        raise ConfigurationError("account details are looked up for a hubspot_oauth.Token")
    return token.hub_id is None or not token.hub_domain or not token.user or not token.scopes


def with_account_details(token: Token, info: TokenInfo) -> Token:
    """`token` completed from `info`, an introspection of its own access token (reference
    §6.1, §6.3): `hub_id`, `hub_domain`, `user`, `user_id` and `scopes`.

    What the token already has is kept (the token response is the authority on its own
    grant); what HubSpot left out stays None (v3 introspection's `hub_domain` and `user`
    are optional, reference §6.3). `expires_at` and the secrets are unchanged.
    Raises `AuthenticationError` (`status_code` 401, `category` ``INVALID_AUTHENTICATION``,
    `error` ``invalid_token``: what HubSpot's APIs answer for such a token, reference §7.3,
    RFC 6750 §3.1) when `info` is not active: the access token is unknown, expired, revoked
    or another app's (RFC 7662 §2.2).
    """
    if not info.active:
        raise AuthenticationError(
            "HubSpot's introspection says this access token is not active (unknown, "
            "expired, revoked, or another app's): refresh it, or send the user through the "
            "install again",
            status_code=401,
            category="INVALID_AUTHENTICATION",
            error="invalid_token",
        )
    return token.replace(
        hub_id=token.hub_id if token.hub_id is not None else info.hub_id,
        hub_domain=token.hub_domain or info.hub_domain,
        user=token.user or info.user,
        user_id=token.user_id if token.user_id is not None else info.user_id,
        scopes=token.scopes or tuple(info.scopes),
    )


def parse_revoke_response(
    status_code: int, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str] = ()
) -> None:
    """Accept any 2xx (HubSpot's success body is UNCONFIRMED, reference §6.4; RFC 7009
    §2.2 says 200). Raises as `error_from_response` for anything else."""
    if not 200 <= status_code < 300:
        raise error_from_response(status_code, headers, body, operation="revoke", secrets=secrets)


# ---------------------------------------------------------------------------- errors

# Legacy `status` codes of the token endpoint (reference §4.3). The BAD_CLIENT_* family
# is UNCONFIRMED at HubSpot; it is mapped the RFC way.
_STATUS_ERRORS: dict[str, type[HubSpotAPIError]] = {
    "BAD_REFRESH_TOKEN": ReauthorizationRequiredError,
    "BAD_AUTH_CODE": InvalidAuthorizationCodeError,
    "EXPIRED_AUTH_CODE": InvalidAuthorizationCodeError,
    "BAD_CODE_VERIFIER": InvalidAuthorizationCodeError,
    "BAD_CLIENT_ID": InvalidClientError,
    "BAD_CLIENT_SECRET": InvalidClientError,
    "BAD_REDIRECT_URI": InvalidRedirectURIError,
    "BAD_GRANT_TYPE": BadRequestError,
}

# RFC 6749 §5.2 `error` values other than invalid_grant, whose meaning depends on the grant.
_RFC_ERRORS: dict[str, type[HubSpotAPIError]] = {
    "invalid_client": InvalidClientError,
    "unauthorized_client": InvalidClientError,
    "invalid_request": BadRequestError,
    "unsupported_grant_type": BadRequestError,
    "invalid_scope": BadRequestError,
    "unsupported_token_type": BadRequestError,
}

# 4xx statuses that mean "try again later" (reference §7.5): request timeout, 423 locked
# (wait at least 2 s), 477 account migrating between data centres (with Retry-After).
_LATER = {408: None, 423: 2.0, 477: None}

_GENERIC_MESSAGES = {
    401: "HubSpot rejected the credentials",
    403: "HubSpot refused the request",
    404: "HubSpot does not know this resource",
    429: "HubSpot's rate limit was reached",
}


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    operation: Operation = "api",
    secrets: Sequence[str] = (),
    now: datetime | None = None,
) -> HubSpotAPIError:
    """The typed error for a HubSpot error answer (reference §4.3, §7; RFC 6749 §5.2).

    `operation` says what was asked, because HubSpot's codes depend on it:
    ``invalid_grant`` / ``BAD_REFRESH_TOKEN`` on a refresh means the connection is gone
    (`ReauthorizationRequiredError`, its message says why, e.g. "not issued to this
    client", case C3); on a code exchange it means a bad, used or expired code
    (`InvalidAuthorizationCodeError`). Then: 429 → `RateLimitError` with `retry_after`
    seconds from ``Retry-After`` (seconds or an HTTP date); 5xx, 408, 423, 477, or a body
    that is not a JSON object (an HTML outage page, case C11) → `ServerError` (retryable)
    with the status and a ≤200-character excerpt, except a non-JSON 4xx page (a wrong base
    URL's 404), which is a `BadRequestError` with the same excerpt; 401
    ``EXPIRED_AUTHENTICATION`` → `ExpiredAuthenticationError`, other 401 →
    `AuthenticationError` (`InvalidClientError` on token endpoints); 403
    ``MISSING_SCOPES`` → `MissingScopesError` (``.required_scopes``, case C12); other 4xx
    → `BadRequestError`. Every value in `secrets` (and anything shaped like a HubSpot
    token) is removed from messages and excerpts. Never raises.
    """
    try:
        return _error_from_response(status_code, headers, body, operation, secrets, now)
    except Exception:  # noqa: BLE001 - the parser must never fail on odd input
        return ServerError(
            f"HubSpot answered HTTP {status_code} with a body that could not be read",
            status_code=_status(status_code),
        )


def _error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    operation: Operation,
    secrets: Sequence[str],
    now: datetime | None,
) -> HubSpotAPIError:
    status_code = _status(status_code)
    retry_after = parse_retry_after(_header(headers, "retry-after"), now=now)
    if retry_after is None:
        retry_after = _LATER.get(status_code)
    correlation_id = _header(headers, "x-hubspot-correlation-id")
    payload = _json_object(body)
    if payload is None:
        excerpt = _excerpt(body, secrets)
        if status_code == 429:
            return RateLimitError(
                _GENERIC_MESSAGES[429],
                status_code=status_code,
                correlation_id=correlation_id,
                body_excerpt=excerpt or None,
                retry_after=retry_after,
            )
        what = "an empty body" if not excerpt else "a body that is not JSON"
        # A plain 4xx page (a wrong base URL's 404, a proxy's 403) is not "try later".
        cls = (
            BadRequestError
            if 400 <= status_code < 500 and status_code not in _LATER
            else ServerError
        )
        return cls(
            f"HubSpot (or a proxy in front of it) answered HTTP {status_code} with {what}"
            + (f": {excerpt!r}" if excerpt else ""),
            status_code=status_code,
            correlation_id=correlation_id,
            body_excerpt=excerpt,
            retry_after=retry_after,
        )

    # Codes show in str(error): a server that echoes a token there must not leak it.
    status = _redacted(_str(payload.get("status")), secrets)
    if status is not None and status.lower() == "error":  # the API's generic marker
        status = None
    category = _redacted(_str(payload.get("category")), secrets)
    error = _redacted(_str(payload.get("error")), secrets)
    error_description = _str(payload.get("error_description"))
    sub_category = _str(payload.get("subCategory"))
    message = (
        _str(payload.get("message"))
        or error_description
        or _GENERIC_MESSAGES.get(status_code)
        or f"HubSpot answered HTTP {status_code}"
    )
    fields: dict[str, Any] = {
        "status_code": status_code,
        "status": status,
        "category": category,
        "error": error,
        "error_description": redact(error_description, secrets) if error_description else None,
        "correlation_id": _redacted(_str(payload.get("correlationId")), secrets) or correlation_id,
        # Attributes too, not only str(error): none may hold a token or secret (errors.py).
        "context": _scrubbed(_context(payload.get("context")), secrets),
        "errors": _scrubbed(_errors(payload.get("errors")), secrets),
        "retry_after": retry_after,
    }
    message = redact(message, secrets)
    if len(message) > 500:
        message = message[:500] + "…"
    cls = _classify(status_code, status, category, error, sub_category, message, operation)
    if cls is ReauthorizationRequiredError and status is None and error is None:
        status = "BAD_REFRESH_TOKEN" if operation == "refresh_token" else None
    return cls(message, **fields)


def _classify(
    status_code: int,
    status: str | None,
    category: str | None,
    error: str | None,
    sub_category: str | None,
    message: str,
    operation: Operation,
) -> type[HubSpotAPIError]:
    upper_status = (status or "").upper()
    upper_category = (category or "").upper()
    lower_error = (error or "").lower()
    if status_code == 429 or upper_category == "RATE_LIMITS":
        return RateLimitError
    if status_code >= 500 or status_code in _LATER:
        return ServerError
    if upper_category == "EXPIRED_AUTHENTICATION":
        return ExpiredAuthenticationError
    if upper_category == "MISSING_SCOPES":
        return MissingScopesError
    if upper_status in _STATUS_ERRORS:
        cls = _STATUS_ERRORS[upper_status]
        if cls is ReauthorizationRequiredError and operation != "refresh_token":
            # Only a failed refresh ends the connection; elsewhere the request was wrong.
            return (
                InvalidAuthorizationCodeError
                if operation == "authorization_code"
                else BadRequestError
            )
        return cls
    if lower_error == "invalid_grant":
        return _invalid_grant(operation, message, sub_category)
    if lower_error in _RFC_ERRORS:
        return _RFC_ERRORS[lower_error]
    token_endpoint = operation in ("authorization_code", "refresh_token", "introspect", "revoke")
    if status_code == 401 or upper_category == "INVALID_AUTHENTICATION":
        return InvalidClientError if token_endpoint else AuthenticationError
    if 400 <= status_code < 500:
        # The 2026-03 Error object has no `error`: read its subCategory/message for the
        # grant failure (UNCONFIRMED which shape live 2026-03 returns, reference §4.3).
        hint = f"{sub_category or ''} {message}".lower()
        if operation == "refresh_token" and "refresh token" in hint and status_code == 400:
            return ReauthorizationRequiredError
        if operation == "authorization_code" and (
            "auth code" in hint or "authorization code" in hint or "code_verifier" in hint
        ):
            return InvalidAuthorizationCodeError
        return BadRequestError
    # 1xx/3xx, or a 2xx handed to the error parser: not an answer we understand.
    return ServerError


def _invalid_grant(
    operation: Operation, message: str, sub_category: str | None
) -> type[HubSpotAPIError]:
    hint = f"{sub_category or ''} {message}".lower()
    if operation == "authorization_code":
        if "redirect" in hint:
            return InvalidRedirectURIError
        return InvalidAuthorizationCodeError
    if operation == "refresh_token":
        return ReauthorizationRequiredError
    return BadRequestError


def raise_for_status(response: Any) -> Any:
    """Return an API `response` (e.g. an `httpx.Response`, read) when it is a 2xx; else raise
    its typed error: `MissingScopesError` with ``.required_scopes`` for 403 MISSING_SCOPES
    (case C12), `ExpiredAuthenticationError`/`AuthenticationError` for 401,
    `RateLimitError` with ``.retry_after`` for 429, `ServerError` for 5xx (reference §7).

    Usage: ``contacts = raise_for_status(http.get("/crm/v3/objects/contacts")).json()``.
    """
    status = getattr(response, "status_code", 0)
    if isinstance(status, int) and 200 <= status < 300:
        return response
    raise error_from_response(status, response.headers, response.content, operation="api")


def is_expired_authentication(status_code: int, body: bytes) -> bool:
    """True for HubSpot's 401 whose JSON ``category`` is ``EXPIRED_AUTHENTICATION``
    (reference §7.2): the only 401 after which a refresh helps (reference §7.7)."""
    if status_code != 401:
        return False
    payload = _json_object(body)
    return payload is not None and payload.get("category") == "EXPIRED_AUTHENTICATION"


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110 §10.2.3): delta-seconds or
    an HTTP date. None when absent or unreadable; capped at one hour; never negative."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), _RETRY_AFTER_CAP)


# --------------------------------------------------------------------------- helpers

# Shapes of HubSpot secrets (reference §5): refresh tokens/codes and opaque access tokens.
_TOKEN_SHAPES = re.compile(
    r"\b[a-z]{2,3}\d-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    r"|\bC[A-Za-z0-9_\-]{40,}"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets`, and anything shaped like a HubSpot token, replaced by
    ``[redacted]``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
        quoted = quote(secret, safe="")
        if quoted != secret:
            text = text.replace(quoted, "[redacted]")
    return _TOKEN_SHAPES.sub("[redacted]", text)


def _excerpt(body: bytes, secrets: Sequence[str]) -> str:
    text = body[: EXCERPT_LIMIT * 8].decode("utf-8", errors="replace")
    text = " ".join(text.split())  # HTML pages: fold whitespace so the excerpt says something
    text = redact(text, secrets)
    return text[:EXCERPT_LIMIT]


def _json_object(body: bytes) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _malformed(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    reason: str,
    secrets: Sequence[str],
) -> ServerError:
    excerpt = _excerpt(body, secrets)
    return ServerError(
        redact(reason, secrets) + (f": {excerpt!r}" if excerpt else ""),
        status_code=_status(status_code),
        correlation_id=_header(headers, "x-hubspot-correlation-id"),
        body_excerpt=excerpt,
    )


def _status(status_code: object) -> int:
    return status_code if isinstance(status_code, int) and not isinstance(status_code, bool) else 0


def _header(headers: Mapping[str, str], name: str) -> str | None:
    try:
        value = headers.get(name)
        if value is None:
            for key, item in headers.items():
                if isinstance(key, str) and key.lower() == name:
                    value = item
                    break
    except Exception:  # noqa: BLE001 - odd header containers read as "absent"
        return None
    return value if isinstance(value, str) else None


def _redacted(value: str | None, secrets: Sequence[str]) -> str | None:
    return redact(value, secrets) if value else value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and abs(value) < 1e18:
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,18}", value.strip()):
        return int(value)
    return None


def _context(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        return {}
    result: dict[str, list[str]] = {}
    for key, items in value.items():
        if not isinstance(key, str):
            continue
        if isinstance(items, str):
            result[key] = [items]
        elif isinstance(items, list):
            result[key] = [i for i in items if isinstance(i, str)]
    return result


def _scrubbed(value: Any, secrets: Sequence[str], depth: int = 0) -> Any:
    """`value` (parsed JSON) with `redact` applied to every string, keys included."""
    if isinstance(value, str):
        return redact(value, secrets)
    if depth > 20:  # deeper than any HubSpot error: drop rather than walk it
        return None
    if isinstance(value, Mapping):
        return {
            (redact(k, secrets) if isinstance(k, str) else k): _scrubbed(v, secrets, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrubbed(v, secrets, depth + 1) for v in value]
    return value


def _errors(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    found = []
    for item in value[:50]:
        if isinstance(item, Mapping):
            entry = {k: v for k, v in item.items() if isinstance(k, str)}
            if "context" in entry:
                entry["context"] = _context(entry["context"])
            found.append(entry)
    return found
