"""hubspot-oauth: HubSpot OAuth 2.0 for Python.

The app's side of HubSpot's OAuth guide (authorization URL, state, code exchange, refresh,
introspection, revocation, a multi-account token store and an `httpx.Auth`), plus a local
HubSpot (`hubspot_oauth.server`) to run and test the whole flow without a HubSpot account.

Usage:

    from hubspot_oauth import OAuthClient, Endpoints, TokenStore

    client = OAuthClient(client_id=..., client_secret=..., redirect_uri=...,
                         scopes=["crm.objects.contacts.read"])
    url = client.authorization_url(state=...)

Importing this package never imports Starlette, uvicorn or Jinja2 (the server's stack).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .endpoints import Endpoints
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConnectionNotFoundError,
    EncryptionKeyError,
    ExpiredAuthenticationError,
    HubSpotAPIError,
    HubSpotOAuthError,
    InvalidAuthorizationCodeError,
    InvalidClientError,
    InvalidRedirectURIError,
    MissingScopesError,
    NetworkError,
    RateLimitError,
    ReauthorizationRequiredError,
    RefreshInProgressError,
    RetryableError,
    SchemaOutdatedError,
    ServerError,
    StateError,
    StateExpiredError,
    StateMismatchError,
    StoreUnavailableError,
    TokenStoreError,
)
from .tokens import Token

__version__ = "0.1.0"

# Public name -> module that defines it; imported on first use to keep `import` cheap.
_LAZY = {
    "OAuthClient": ".client.oauth",
    "AsyncOAuthClient": ".client.oauth",
    "TokenInfo": ".client.protocol",
    "StateStore": ".client.state",
    "TokenStore": ".client.store",
    "Connection": ".client.store",
    "HubSpotAuth": ".client.auth",
    "ClientConfig": ".client.config",
    "RetryPolicy": ".client.retry",
    "State": ".client.state",
    "raise_for_status": ".client.protocol",
    "new_code_verifier": ".client.protocol",
}

__all__ = [
    "AsyncOAuthClient",
    "AuthenticationError",
    "BadRequestError",
    "ClientConfig",
    "ConfigurationError",
    "Connection",
    "ConnectionNotFoundError",
    "EncryptionKeyError",
    "Endpoints",
    "ExpiredAuthenticationError",
    "HubSpotAPIError",
    "HubSpotAuth",
    "HubSpotOAuthError",
    "InvalidAuthorizationCodeError",
    "InvalidClientError",
    "InvalidRedirectURIError",
    "MissingScopesError",
    "NetworkError",
    "OAuthClient",
    "RateLimitError",
    "ReauthorizationRequiredError",
    "RefreshInProgressError",
    "RetryPolicy",
    "RetryableError",
    "SchemaOutdatedError",
    "ServerError",
    "State",
    "StateError",
    "StateExpiredError",
    "StateMismatchError",
    "StateStore",
    "StoreUnavailableError",
    "Token",
    "TokenInfo",
    "TokenStore",
    "TokenStoreError",
    "__version__",
    "new_code_verifier",
    "raise_for_status",
]

if TYPE_CHECKING:  # pragma: no cover
    from .client.auth import HubSpotAuth
    from .client.config import ClientConfig
    from .client.oauth import AsyncOAuthClient, OAuthClient
    from .client.protocol import TokenInfo, new_code_verifier, raise_for_status
    from .client.retry import RetryPolicy
    from .client.state import State, StateStore
    from .client.store import Connection, TokenStore


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubspot_oauth' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
