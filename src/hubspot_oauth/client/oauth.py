"""`OAuthClient` and `AsyncOAuthClient`: HubSpot's token endpoints over httpx.

Both are thin: requests are built and answers parsed by `hubspot_oauth.client.protocol`,
so the two clients only differ in how they send (DESIGN §2). They work against real
HubSpot (the default `Endpoints()`: app.hubspot.com + api.hubapi.com, API v3) and against a
local HubSpot (`Endpoints.local(url)`) with no other change.

Usage:

    client = OAuthClient(client_id=..., client_secret=..., redirect_uri=...,
                         scopes=["crm.objects.contacts.read"])
    url = client.authorization_url(state=nonce)
    token = client.exchange_code(code)
    token = client.with_account_details(token)   # + hub_domain, user (one introspection)
    token = client.refresh(token.refresh_token)
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit

import anyio
import httpx

from ..endpoints import Endpoints
from ..errors import (
    ConfigurationError,
    NetworkError,
    ReauthorizationRequiredError,
    RetryableError,
)
from ..scopes import split_scopes
from ..tokens import Token, looks_like_access_token
from . import protocol
from .config import DEFAULT_REDIRECT_URI, DEFAULT_SCOPES, ClientConfig
from .protocol import RequestSpec, TokenInfo
from .retry import DEFAULT_RETRY, RetryPolicy, Sleep, Tries

__all__ = ["DEFAULT_TIMEOUT", "AsyncOAuthClient", "OAuthClient"]

DEFAULT_TIMEOUT = 10.0

T = TypeVar("T")
ACCESS_TOKEN_HINT = "access_token"


class _BaseOAuthClient:
    """Settings, validation and request building shared by both clients (no I/O)."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scopes: Iterable[str] | str = DEFAULT_SCOPES,
        optional_scopes: Iterable[str] | str | None = (),
        endpoints: Endpoints | None = None,
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
        http_client: httpx.Client | httpx.AsyncClient | None = None,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError("client_id is missing (HUBSPOT_CLIENT_ID)")
        if not isinstance(client_secret, str) or not client_secret.strip():
            raise ConfigurationError("client_secret is missing (HUBSPOT_CLIENT_SECRET)")
        _check_redirect_uri(redirect_uri)
        self.client_id = client_id.strip()
        self._client_secret = client_secret.strip()
        self.redirect_uri = redirect_uri
        self.scopes = split_scopes(scopes)
        self.optional_scopes = split_scopes(optional_scopes)
        if not self.scopes:
            raise ConfigurationError(
                "scopes is empty: HubSpot needs at least one required scope "
                "(e.g. crm.objects.contacts.read)"
            )
        _check_scope_lists(self.scopes, self.optional_scopes, "scopes", "optional_scopes")
        if endpoints is None:
            endpoints = Endpoints()
        if not isinstance(endpoints, Endpoints):
            raise ConfigurationError("endpoints must be an Endpoints instance")
        self.endpoints = endpoints
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds")
        self.timeout = timeout
        self.retry = retry if retry is not None else DEFAULT_RETRY
        if not isinstance(self.retry, RetryPolicy):
            raise ConfigurationError("retry must be a RetryPolicy")
        _redact_httpx_logs()
        self._owns_http = http_client is None
        self._open_http(transport, http_client, timeout)

    def _open_http(self, transport: Any, http_client: Any, timeout: Any) -> None:
        """Check `transport`/`http_client` and set `_http` and `_sleep` (the I/O side)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: ClientConfig, **kwargs: Any) -> Self:
        """A client from `ClientConfig` settings; `kwargs` as the constructor's (transport,
        http_client, timeout, retry). Raises `ConfigurationError` naming missing settings."""
        return cls(**{**cls._config_kwargs(config), **kwargs})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """A client from the environment (DESIGN §3 names: ``HUBSPOT_CLIENT_ID``, …).

        `overrides` may hold settings (as `ClientConfig.from_env`) and constructor
        arguments (transport, http_client, timeout, retry)."""
        kwargs = {k: overrides.pop(k) for k in _CLIENT_ONLY if k in overrides}
        return cls.from_config(ClientConfig.from_env(environ, **overrides), **kwargs)

    @classmethod
    def _config_kwargs(cls, config: ClientConfig) -> dict[str, Any]:
        client_id, client_secret = config.require_credentials()
        # The same rule as the constructor's, named as the user set it: never move an
        # optional scope into `scope` (case C8).
        _check_scope_lists(
            config.scopes,
            config.optional_scopes,
            "HUBSPOT_SCOPES (--scopes)",
            "HUBSPOT_OPTIONAL_SCOPES (--optional-scopes)",
        )
        return {
            "client_id": client_id,
            "client_secret": client_secret,
            "redirect_uri": config.redirect_uri,
            "scopes": config.scopes,
            "optional_scopes": config.optional_scopes,
            "endpoints": config.endpoints(),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(client_id={self.client_id!r}, "
            f"redirect_uri={self.redirect_uri!r}, scopes={list(self.scopes)!r}, "
            f"endpoints={self.endpoints!r})"
        )

    def authorization_url(
        self,
        state: str | None = None,
        *,
        scopes: Iterable[str] | str | None = None,
        optional_scopes: Iterable[str] | str | None = None,
        account_id: int | str | None = None,
        code_challenge: str | None = None,
        code_verifier: str | None = None,
        pkce: str | None = None,
    ) -> str:
        """The URL to send the user to for installing the app (reference §2).

        **Parameters:**
        * `state` - the nonce from `StateStore.issue` (RFC 6749 §10.12); echoed back.
        * `scopes`, `optional_scopes` - override the client's lists for this URL. A scope is
          never put in both (HubSpot's scope-mismatch page, case C8): `ConfigurationError`,
          also when `scopes` names one of the client's optional scopes (pass
          `optional_scopes` too to say what is optional for this URL).
        * `account_id` - pin the install to one HubSpot account (``/oauth/{id}/authorize``).
        * `code_challenge` - a PKCE S256 challenge; or pass the verifier as
          `code_verifier` (alias `pkce`) and the challenge is computed (RFC 7636 §4.2).

        Returns a str. Scopes are space-joined and percent-encoded as ``%20``.
        """
        verifier = code_verifier if code_verifier is not None else pkce
        if verifier is not None:
            challenge = protocol.code_challenge_s256(verifier)
            if code_challenge is not None and code_challenge != challenge:
                raise ConfigurationError("code_challenge does not match code_verifier")
            code_challenge = challenge
        required = self.scopes if scopes is None else split_scopes(scopes)
        optional = (
            self.optional_scopes if optional_scopes is None else split_scopes(optional_scopes)
        )
        _check_scope_lists(
            required,
            optional,
            "scopes" if scopes is not None else "the client's scopes",
            "optional_scopes" if optional_scopes is not None else "the client's optional_scopes",
        )
        return protocol.authorization_url(
            self.endpoints,
            client_id=self.client_id,
            redirect_uri=self.redirect_uri,
            scopes=required,
            optional_scopes=optional,
            state=state,
            account_id=account_id,
            code_challenge=code_challenge,
        )

    def _exchange_spec(self, code: str, code_verifier: str | None) -> RequestSpec:
        return protocol.exchange_code_request(
            self.endpoints,
            client_id=self.client_id,
            client_secret=self._client_secret,
            redirect_uri=self.redirect_uri,
            code=code,
            code_verifier=code_verifier,
        )

    def _refresh_spec(self, refresh_token: str) -> RequestSpec:
        return protocol.refresh_request(
            self.endpoints,
            client_id=self.client_id,
            client_secret=self._client_secret,
            refresh_token=refresh_token,
        )

    def _introspect_spec(self, token: str, token_type_hint: str) -> RequestSpec:
        return protocol.introspect_request(
            self.endpoints,
            client_id=self.client_id,
            client_secret=self._client_secret,
            token=token,
            token_type_hint=token_type_hint,
        )

    def _revoke_spec(self, refresh_token: str) -> RequestSpec:
        return protocol.revoke_request(
            self.endpoints,
            client_id=self.client_id,
            client_secret=self._client_secret,
            refresh_token=refresh_token,
        )

    def _parse(self, spec: RequestSpec, response: httpx.Response, extra: Any = None) -> Any:
        status, headers, body = response.status_code, response.headers, response.content
        secrets = spec.secrets
        if spec.operation in ("authorization_code", "refresh_token"):
            try:
                return protocol.parse_token_response(
                    status,
                    headers,
                    body,
                    grant_type=spec.operation,
                    received_at=datetime.now(UTC),
                    previous_refresh_token=extra,
                    secrets=secrets,
                )
            except ReauthorizationRequiredError as exc:
                if extra and looks_like_access_token(extra):
                    # Case C4: an access token saved where the refresh token belongs.
                    exc.message += " (the refresh token passed looks like an access token)"
                    exc.args = (exc.message,)
                raise
        if spec.operation == "introspect":
            return protocol.parse_introspection(
                status,
                headers,
                body,
                token=extra,
                token_type_hint=(spec.data or {}).get("token_type_hint")
                or ("refresh_token" if "/refresh-tokens/" in spec.url else "access_token"),
                received_at=datetime.now(UTC),
                secrets=secrets,
            )
        protocol.parse_revoke_response(status, headers, body, secrets=secrets)
        return None

    def _tries(self, spec: RequestSpec, retry: bool) -> Tries:
        return Tries(self.retry, spec.operation, enabled=retry)

    def _step(
        self, spec: RequestSpec, tries: Tries, outcome: httpx.Response | NetworkError, extra: Any
    ) -> Any:
        """One try's outcome (an answer, or the failure to get one) parsed: the result, or
        `Sleep` to send again; raises the error when `tries` says to give up."""
        try:
            if isinstance(outcome, NetworkError):
                raise outcome
            return self._parse(spec, outcome, extra)
        except RetryableError as exc:
            sleep = tries.after_failure(exc, may_have_reached_server=_may_have_reached_server(exc))
            if sleep is None:
                raise
            return sleep

    def _network_outcome(self, spec: RequestSpec, exc: httpx.HTTPError) -> NetworkError:
        error = self._network_error(spec, exc)
        error.__cause__ = exc  # as `raise … from exc`; `_may_have_reached_server` reads it
        return error

    def _network_error(self, spec: RequestSpec, exc: Exception) -> NetworkError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
        detail = protocol.redact(str(exc) or type(exc).__name__, spec.secrets)
        return NetworkError(
            f"{spec.method} {_path_of(spec.safe_url)} {kind}: {type(exc).__name__}: {detail}"
        )


def _check_scope_lists(
    required: Iterable[str], optional: Iterable[str], required_name: str, optional_name: str
) -> None:
    """One rule for the constructor, `from_config`/`from_env` and `authorization_url`: a
    scope is required or optional, never both. HubSpot answers an install URL with an
    optional scope in ``scope`` with its scope-mismatch page (reference §2.6, case C8), so
    it is never moved there. Raises `ConfigurationError` naming the scopes."""
    both = [s for s in required if s in set(optional)]
    if both:
        raise ConfigurationError(
            f"scope(s) {', '.join(both)} listed as both required and optional (in "
            f"{required_name} and {optional_name}): optional scopes must not be in "
            "`scope`, HubSpot shows its scope-mismatch page for that (reference §2.6); "
            "list each scope in only one of them"
        )


# httpx failures raised before any byte of the request left: the server cannot have acted.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


def _may_have_reached_server(exc: BaseException) -> bool:
    """True for a `NetworkError` whose request may have been received (a read timeout, a
    connection dropped after sending, …); False for an answer (5xx, 429) or a failure
    before sending."""
    if not isinstance(exc, NetworkError):
        return False
    return not isinstance(exc.__cause__, _NOT_SENT)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _check_redirect_uri(redirect_uri: object) -> None:
    if not isinstance(redirect_uri, str) or not redirect_uri:
        raise ConfigurationError("redirect_uri is missing (HUBSPOT_REDIRECT_URI)")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"redirect_uri must be an absolute http(s) URL, got {redirect_uri!r} "
            "(HubSpot requires https, or http on localhost; reference §2.4)"
        )
    if parts.fragment or "#" in redirect_uri:
        raise ConfigurationError("redirect_uri must not contain a fragment (RFC 6749 §3.1.2)")


class OAuthClient(_BaseOAuthClient):
    """HubSpot's OAuth token endpoints, synchronously.

    **Parameters:**
    * `client_id`, `client_secret` - the app's credentials (the secret never shows in a repr).
    * `redirect_uri` - registered on the app; the same value is sent at authorize and token
      time (RFC 6749 §4.1.3). Default ``http://localhost:3000/oauth-callback``.
    * `scopes`, `optional_scopes` - required and optional scopes (lists or space/comma
      separated strings); a scope may be in only one of them.
    * `endpoints` - *(optional)* `Endpoints()` (real HubSpot, v3) by default.
    * `transport` - *(optional)* an httpx transport (tests).
    * `http_client` - *(optional)* an `httpx.Client` to use; it is not closed by `close()`.
    * `timeout` - seconds per request (default 10).
    * `retry` - `RetryPolicy` for transient failures of `refresh`, `introspect` and
      `revoke` (default: 3 tries, at most 30 s of waiting). `exchange_code` is tried once:
      a code is single use, so a lost answer cannot be replayed (RFC 6749 §4.1.2).

    Raises `ConfigurationError` for a missing secret, a redirect URI that is not http(s),
    a scope both required and optional. Use as a context manager or call `close()`.
    """

    def _open_http(
        self, transport: httpx.BaseTransport | None, http_client: httpx.Client | None, timeout: Any
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigurationError("http_client must be an httpx.Client (not AsyncClient)")
        if transport is not None and not isinstance(transport, httpx.BaseTransport):
            raise ConfigurationError(
                "transport must be a synchronous httpx transport; use AsyncOAuthClient "
                "for httpx.ASGITransport"
            )
        self._http = http_client or httpx.Client(
            transport=transport, timeout=timeout, follow_redirects=False
        )
        self._sleep: Callable[[float], None] = time.sleep

    def __enter__(self) -> OAuthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (unless `http_client` was passed in)."""
        if self._owns_http:
            self._http.close()

    def _send(self, spec: RequestSpec) -> httpx.Response | NetworkError:
        try:
            response = self._http.request(
                spec.method, spec.url, headers=spec.headers, data=spec.data
            )
            response.read()
            return response
        except httpx.HTTPError as exc:
            return self._network_outcome(spec, exc)

    def _call(self, spec: RequestSpec, extra: Any = None, *, retry: bool = True) -> Any:
        tries = self._tries(spec, retry)
        while isinstance(step := self._step(spec, tries, self._send(spec), extra), Sleep):
            self._sleep(step.seconds)
        return step

    def exchange_code(self, code: str, code_verifier: str | None = None) -> Token:
        """Exchange an authorization code for tokens (RFC 6749 §4.1.3; reference §4).

        `code_verifier` is the PKCE verifier whose challenge was in the authorization URL.
        Returns a `Token` (`expires_at` = now + ``expires_in`` seconds, UTC).
        Raises `InvalidAuthorizationCodeError` (BAD_AUTH_CODE, EXPIRED_AUTH_CODE, PKCE
        failure), `InvalidRedirectURIError`, `InvalidClientError`, `BadRequestError`,
        `ServerError`/`RateLimitError`/`NetworkError` (retryable; not retried here).
        """
        return self._call(self._exchange_spec(code, code_verifier), retry=False)

    def refresh(self, refresh_token: str) -> Token:
        """A new access token for `refresh_token` (RFC 6749 §6; reference §4).

        Returns a `Token`; when HubSpot rotates the refresh token it is the new one, when it
        returns none the old one is kept. Transient failures (connect errors, 5xx, 429
        honouring ``Retry-After``) are retried under `retry`; a 4xx never is, nor (unless
        `RetryPolicy.retry_unanswered_refresh`) a request HubSpot may have received whose
        answer was lost (read timeout, dropped connection): resending a used refresh token
        revokes the grant under rotation with reuse detection (RFC 9700 §4.14.2).
        Raises `ReauthorizationRequiredError` (BAD_REFRESH_TOKEN / invalid_grant: revoked,
        uninstalled, or issued to another client — the message says which),
        `InvalidClientError`, `BadRequestError`, or the last `RetryableError`.
        """
        return self._call(self._refresh_spec(refresh_token), refresh_token)

    def introspect(self, token: str, token_type_hint: str = ACCESS_TOKEN_HINT) -> TokenInfo:
        """What HubSpot knows about a token: hub_id, user, hub_domain, app_id, scopes,
        expires_in (seconds) … (v1 metadata or v3/2026-03 introspect; reference §6).

        Returns `TokenInfo`; `active` is False for an unknown, expired or revoked token.
        Raises `InvalidClientError`, `BadRequestError` or a `RetryableError`.
        """
        return self._call(self._introspect_spec(token, token_type_hint), token)

    def with_account_details(self, token: Token) -> Token:
        """`token` with the account details its token response left out, from one
        introspection of its access token (v1 GET ``/oauth/v1/access-tokens/{token}`` or
        v3/2026-03 introspect; reference §6.1, §6.3). Call it right after `exchange_code`:
        HubSpot's v3 token response names the hub_id but not the account's domain or the
        installing user (reference §4.2).

        Returns a new `Token` with `hub_id`, `hub_domain`, `user` (email), `user_id` and
        `scopes` filled in where it had none; `expires_at` (UTC) and the secrets unchanged.
        Makes no HTTP call when hub_id, hub_domain, user and scopes are all set already.
        Details HubSpot does not send stay None (v3's `hub_domain`/`user` are optional):
        save the result with ``TokenStore.save(token, describe=False)`` so the store does
        not ask again. Transient failures are retried under `retry`, as for `introspect`.

        Raises `AuthenticationError` (401 ``INVALID_AUTHENTICATION``) when HubSpot says
        the access token is not active (unknown, expired, revoked, another app's),
        `InvalidClientError`, `BadRequestError`, a `RetryableError` (`NetworkError`,
        `ServerError`, `RateLimitError`) once the tries are spent, or `ConfigurationError`
        when `token` is not a `Token`.
        """
        if not protocol.needs_account_details(token):
            return token
        return protocol.with_account_details(token, self.introspect(token.access_token))

    def revoke(self, refresh_token: str) -> None:
        """Revoke a refresh token (v1 DELETE or v3/2026-03 revoke; RFC 7009; reference §6.4).

        Access tokens already issued keep working until they expire (reference §4.5).
        Returns None. Raises `InvalidClientError`, `BadRequestError` or a `RetryableError`.
        """
        self._call(self._revoke_spec(refresh_token))


class AsyncOAuthClient(_BaseOAuthClient):
    """The async twin of `OAuthClient`: same parameters (with `httpx.AsyncClient` and
    async transports such as `httpx.ASGITransport`), same results, same errors; use
    ``async with`` or ``await client.aclose()``."""

    def _open_http(
        self,
        transport: httpx.AsyncBaseTransport | None,
        http_client: httpx.AsyncClient | None,
        timeout: Any,
    ) -> None:
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise ConfigurationError("transport must be an async httpx transport")
        self._http = http_client or httpx.AsyncClient(
            transport=transport, timeout=timeout, follow_redirects=False
        )
        self._sleep: Callable[[float], Any] = anyio.sleep

    async def __aenter__(self) -> AsyncOAuthClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool (unless `http_client` was passed in)."""
        if self._owns_http:
            await self._http.aclose()

    async def _send(self, spec: RequestSpec) -> httpx.Response | NetworkError:
        try:
            response = await self._http.request(
                spec.method, spec.url, headers=spec.headers, data=spec.data
            )
            await response.aread()
            return response
        except httpx.HTTPError as exc:
            return self._network_outcome(spec, exc)

    async def _call(self, spec: RequestSpec, extra: Any = None, *, retry: bool = True) -> Any:
        tries = self._tries(spec, retry)
        while isinstance(step := self._step(spec, tries, await self._send(spec), extra), Sleep):
            await self._sleep(step.seconds)
        return step

    async def exchange_code(self, code: str, code_verifier: str | None = None) -> Token:
        """As `OAuthClient.exchange_code`."""
        return await self._call(self._exchange_spec(code, code_verifier), retry=False)

    async def refresh(self, refresh_token: str) -> Token:
        """As `OAuthClient.refresh`."""
        return await self._call(self._refresh_spec(refresh_token), refresh_token)

    async def introspect(self, token: str, token_type_hint: str = ACCESS_TOKEN_HINT) -> TokenInfo:
        """As `OAuthClient.introspect`."""
        return await self._call(self._introspect_spec(token, token_type_hint), token)

    async def with_account_details(self, token: Token) -> Token:
        """As `OAuthClient.with_account_details`."""
        if not protocol.needs_account_details(token):
            return token
        return protocol.with_account_details(token, await self.introspect(token.access_token))

    async def revoke(self, refresh_token: str) -> None:
        """As `OAuthClient.revoke`."""
        await self._call(self._revoke_spec(refresh_token))


_CLIENT_ONLY = ("transport", "http_client", "timeout", "retry")

# httpx logs every request URL at INFO; v1 metadata and DELETE URLs carry the token in
# their path (reference §6.1), so those path segments are masked in httpx's records.
_V1_TOKEN_PATH = re.compile(r"(/oauth/v1/(?:access|refresh)-tokens/)[^/?#\s\"]+")
_filter_installed = False


class _TokenPathFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _V1_TOKEN_PATH.sub(r"\1[redacted]", str(a)) if isinstance(a, str | httpx.URL) else a
                for a in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _V1_TOKEN_PATH.sub(r"\1[redacted]", record.msg)
        return True


def _redact_httpx_logs() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("httpx").addFilter(_TokenPathFilter())
        _filter_installed = True
