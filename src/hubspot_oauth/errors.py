"""The exceptions the library raises.

Every error derives from `HubSpotOAuthError`. The tree separates what a caller must do next:

```
HubSpotOAuthError
├── ConfigurationError            bad arguments or settings (also a ValueError)
├── StateError                    the OAuth `state` did not check out (RFC 6749 §10.12)
│   ├── StateMismatchError        unknown, forged or already used
│   └── StateExpiredError         issued, but past its time to live
├── TokenStoreError               the local token store
│   ├── ConnectionNotFoundError   no connection under that key (also a KeyError)
│   ├── EncryptionKeyError        no key in the key ring decrypts a stored token
│   ├── SchemaOutdatedError       the database needs `hubspot-oauth db upgrade`
│   ├── StoreUnavailableError     the store's database is unreachable (also RetryableError)
│   └── RefreshInProgressError    another process is still refreshing (also RetryableError)
├── HubSpotAPIError               HubSpot answered with an error
│   ├── ReauthorizationRequiredError   the connection is gone: send the user through install again
│   ├── BadRequestError           the request is wrong; retrying it unchanged cannot help
│   │   ├── InvalidClientError          unknown client_id or wrong client secret
│   │   ├── InvalidAuthorizationCodeError   BAD_AUTH_CODE / EXPIRED_AUTH_CODE / PKCE failure
│   │   └── InvalidRedirectURIError     redirect_uri differs from the authorize request
│   ├── AuthenticationError       401 INVALID_AUTHENTICATION on an API call
│   │   └── ExpiredAuthenticationError  401 EXPIRED_AUTHENTICATION
│   ├── MissingScopesError        403 MISSING_SCOPES; `.required_scopes`
│   ├── RateLimitError            429 (also RetryableError); `.retry_after`
│   └── ServerError               5xx or a body that is not HubSpot's JSON (also RetryableError)
└── RetryableError                try again later; `.retry_after` seconds or None
    ├── NetworkError              connect failure, timeout, broken connection
    ├── RateLimitError
    ├── ServerError
    ├── StoreUnavailableError
    └── RefreshInProgressError
```

`HubSpotAPIError` carries what HubSpot said: `status_code` (HTTP), `status` (HubSpot's
legacy code such as ``BAD_REFRESH_TOKEN``), `category` (e.g. ``EXPIRED_AUTHENTICATION``),
`error` / `error_description` (RFC 6749 §5.2), `message`, `correlation_id`, `context`,
and `body_excerpt` (at most 200 characters, for bodies that were not JSON). None of these
ever holds a token or a secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConnectionNotFoundError",
    "EncryptionKeyError",
    "ExpiredAuthenticationError",
    "HubSpotAPIError",
    "HubSpotOAuthError",
    "InvalidAuthorizationCodeError",
    "InvalidClientError",
    "InvalidRedirectURIError",
    "MissingScopesError",
    "NetworkError",
    "RateLimitError",
    "ReauthorizationRequiredError",
    "RefreshInProgressError",
    "RetryableError",
    "SchemaOutdatedError",
    "ServerError",
    "StateError",
    "StateExpiredError",
    "StateMismatchError",
    "StoreUnavailableError",
    "TokenStoreError",
]


class HubSpotOAuthError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(HubSpotOAuthError, ValueError):
    """A setting or argument is missing or malformed (e.g. no client secret)."""


class StateError(HubSpotOAuthError):
    """The `state` returned to the redirect URI failed its check (RFC 6749 §10.12)."""


class StateMismatchError(StateError):
    """The state is unknown, forged, or was already consumed (states are single use)."""


class StateExpiredError(StateError):
    """The state was issued by us but its time to live has passed."""


class TokenStoreError(HubSpotOAuthError):
    """A failure of the local token store (not of HubSpot)."""


class ConnectionNotFoundError(TokenStoreError, KeyError):
    """No connection is stored under the given key."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key

    def __str__(self) -> str:
        return f"no HubSpot connection stored under key {self.key!r}"


class EncryptionKeyError(TokenStoreError):
    """No key of the key ring decrypts a stored token (wrong or missing key)."""


class SchemaOutdatedError(TokenStoreError):
    """The database schema is behind this version; run `hubspot-oauth db upgrade`."""


class RetryableError(HubSpotOAuthError):
    """A failure that may pass: retry later, after `retry_after` seconds when given."""

    retry_after: float | None = None


class StoreUnavailableError(TokenStoreError, RetryableError):
    """The token store's database could not be reached or timed out; nothing was changed."""


class RefreshInProgressError(TokenStoreError, RetryableError):
    """Another thread or process has been refreshing this connection for longer than the
    wait allows (`refresh_wait`); the stored token is unchanged. Try again later."""


class NetworkError(RetryableError):
    """HubSpot could not be reached: connection refused, timeout, broken connection."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class HubSpotAPIError(HubSpotOAuthError):
    """HubSpot answered a request with an error.

    **Attributes:** `status_code` (int, HTTP status), `status` (HubSpot's legacy code, e.g.
    ``"BAD_AUTH_CODE"``, or None), `category` (e.g. ``"MISSING_SCOPES"``, or None), `error`
    and `error_description` (RFC 6749 §5.2 fields, or None), `message` (str),
    `correlation_id` (str or None), `context` (mapping of str to list of str), `errors`
    (list of HubSpot's error details), `body_excerpt` (first 200 characters of a non-JSON
    body, else None).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        status: str | None = None,
        category: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        correlation_id: str | None = None,
        context: Mapping[str, Sequence[str]] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        body_excerpt: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.status = status
        self.category = category
        self.error = error
        self.error_description = error_description
        self.correlation_id = correlation_id
        self.context = {k: list(v) for k, v in (context or {}).items()}
        self.errors = [dict(e) for e in (errors or [])]
        self.body_excerpt = body_excerpt
        self.retry_after = retry_after

    @property
    def code(self) -> str | None:
        """The most specific code HubSpot gave: `status`, else `category`, else `error`."""
        return self.status or self.category or self.error

    def __str__(self) -> str:
        parts = [f"HTTP {self.status_code}"]
        if self.code:
            parts.append(self.code)
        text = f"{' '.join(parts)}: {self.message}"
        if self.correlation_id:
            text += f" (correlation id {self.correlation_id})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class ReauthorizationRequiredError(HubSpotAPIError):
    """The refresh token no longer works: the app was uninstalled, the token was revoked
    or deleted, or it was issued to another client. Only a new install fixes it.

    `connection_key` names the token-store connection when the store raised it.
    """

    connection_key: str | None = None


class BadRequestError(HubSpotAPIError):
    """HubSpot rejected the request as wrong; sending it again unchanged cannot succeed."""


class InvalidClientError(BadRequestError):
    """Unknown `client_id` or wrong `client_secret` (RFC 6749 §5.2 `invalid_client`)."""


class InvalidAuthorizationCodeError(BadRequestError):
    """The authorization code is unknown, used, expired, or its PKCE verifier is wrong."""


class InvalidRedirectURIError(BadRequestError):
    """`redirect_uri` differs from the one used at authorization (RFC 6749 §4.1.3)."""


class AuthenticationError(HubSpotAPIError):
    """401 INVALID_AUTHENTICATION: the API call carried no valid access token."""


class ExpiredAuthenticationError(AuthenticationError):
    """401 EXPIRED_AUTHENTICATION: the access token has expired; refresh and retry once."""


class MissingScopesError(HubSpotAPIError):
    """403 MISSING_SCOPES. `required_scopes` lists the scopes HubSpot said are needed."""

    @property
    def required_scopes(self) -> list[str]:
        """Scopes named in the error's `errors[].context.requiredScopes` (or `context`)."""
        found: list[str] = []
        sources: list[Mapping[str, Any]] = [self.context]
        sources.extend(e.get("context") or {} for e in self.errors)
        for ctx in sources:
            for name in ("requiredScopes", "missingScopes"):
                for scope in ctx.get(name) or []:
                    if isinstance(scope, str) and scope not in found:
                        found.append(scope)
        return found


class RateLimitError(HubSpotAPIError, RetryableError):
    """429 RATE_LIMITS: too many calls; wait `retry_after` seconds when HubSpot said."""


class ServerError(HubSpotAPIError, RetryableError):
    """HubSpot (or a proxy before it) failed: 5xx, or a body that is not HubSpot's JSON."""
