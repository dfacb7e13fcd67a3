"""Where HubSpot's OAuth endpoints live, per API version and data centre.

Real HubSpot serves the authorize page on ``app.hubspot.com`` (``app-eu1.hubspot.com`` for
EU accounts, reference §2.1) and every API, token endpoints included, on
``api.hubapi.com``. A local HubSpot serves both on one base URL.
"""

from __future__ import annotations

import dataclasses
from typing import Literal
from urllib.parse import quote

from .errors import ConfigurationError

__all__ = ["API_VERSIONS", "ApiVersion", "Endpoints"]

ApiVersion = Literal["v1", "v3", "2026-03"]
API_VERSIONS: tuple[str, ...] = ("v1", "v3", "2026-03")

PRODUCTION_APP_URL = "https://app.hubspot.com"
EU_APP_URL = "https://app-eu1.hubspot.com"
PRODUCTION_API_URL = "https://api.hubapi.com"


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoints:
    """Base URLs and token API version.

    **Parameters:**
    * `app_url` - where the authorize page is (default ``https://app.hubspot.com``).
    * `api_url` - where the token endpoints and APIs are (default ``https://api.hubapi.com``).
    * `api_version` - ``"v3"`` (default), ``"v1"`` (deprecated, sunset 2027-02-16) or
      ``"2026-03"``.

    Usage: ``Endpoints()`` for production, ``Endpoints.eu()`` for EU accounts,
    ``Endpoints.local("http://localhost:8765")`` for a local HubSpot.
    Raises `ConfigurationError` for an unknown version or a URL that is not http(s).
    """

    app_url: str = PRODUCTION_APP_URL
    api_url: str = PRODUCTION_API_URL
    api_version: str = "v3"

    def __post_init__(self) -> None:
        if self.api_version not in API_VERSIONS:
            raise ConfigurationError(
                f"unknown HubSpot OAuth API version {self.api_version!r}; "
                f"use one of {', '.join(API_VERSIONS)}"
            )
        for name in ("app_url", "api_url"):
            url = getattr(self, name)
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ConfigurationError(f"{name} must be an http(s) URL, got {url!r}")
            object.__setattr__(self, name, url.rstrip("/"))

    @classmethod
    def production(cls, api_version: str = "v3") -> Endpoints:
        """Real HubSpot, North America data centre."""
        return cls(api_version=api_version)

    @classmethod
    def eu(cls, api_version: str = "v3") -> Endpoints:
        """Real HubSpot for EU accounts: authorize on app-eu1, tokens still on api.hubapi.com."""
        return cls(app_url=EU_APP_URL, api_version=api_version)

    @classmethod
    def local(cls, base_url: str, api_version: str = "v3") -> Endpoints:
        """A local HubSpot that serves the authorize page and the APIs on one base URL."""
        return cls(app_url=base_url, api_url=base_url, api_version=api_version)

    def with_version(self, api_version: str) -> Endpoints:
        """The same hosts with another token API version."""
        return dataclasses.replace(self, api_version=api_version)

    def authorize_url(self, account_id: int | str | None = None) -> str:
        """The authorize page; pinned to one account (hub_id) when `account_id` is given."""
        if account_id is None:
            return f"{self.app_url}/oauth/authorize"
        return f"{self.app_url}/oauth/{quote(str(account_id), safe='')}/authorize"

    @property
    def token_url(self) -> str:
        """POST here for both grants (form-encoded)."""
        return f"{self.api_url}/oauth/{self.api_version}/token"

    @property
    def introspect_url(self) -> str:
        """POST introspection (v3, 2026-03). v1 uses `access_token_info_url` instead."""
        version = "v3" if self.api_version == "v1" else self.api_version
        return f"{self.api_url}/oauth/{version}/token/introspect"

    @property
    def revoke_url(self) -> str:
        """POST revocation (v3, 2026-03). v1 uses DELETE on `refresh_token_info_url`."""
        version = "v3" if self.api_version == "v1" else self.api_version
        return f"{self.api_url}/oauth/{version}/token/revoke"

    def access_token_info_url(self, access_token: str) -> str:
        """v1 GET metadata of an access token."""
        return f"{self.api_url}/oauth/v1/access-tokens/{quote(access_token, safe='')}"

    def refresh_token_info_url(self, refresh_token: str) -> str:
        """v1 GET metadata of, or DELETE, a refresh token."""
        return f"{self.api_url}/oauth/v1/refresh-tokens/{quote(refresh_token, safe='')}"
