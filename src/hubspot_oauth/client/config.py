"""One set of configuration names for the library, the CLI and the quickstart.

Precedence: explicit arguments (CLI flags) win over the environment, the environment over
defaults (DESIGN §3). The Node quickstart's ``CLIENT_ID``/``CLIENT_SECRET``/``SCOPE`` are read
when the ``HUBSPOT_`` names are absent.

| environment | meaning |
|---|---|
| ``HUBSPOT_CLIENT_ID``, ``HUBSPOT_CLIENT_SECRET`` | the app's credentials |
| ``HUBSPOT_REDIRECT_URI`` | default ``http://localhost:3000/oauth-callback`` |
| ``HUBSPOT_SCOPES``, ``HUBSPOT_OPTIONAL_SCOPES`` | space- or comma-separated |
| ``HUBSPOT_BASE_URL`` | a local HubSpot serving the authorize page and the API |
| ``HUBSPOT_API_VERSION`` | ``v3`` (default), ``v1``, ``2026-03`` |
| ``HUBSPOT_OAUTH_DATABASE_URL`` | token store; default a SQLite file in the data directory |
| ``HUBSPOT_OAUTH_ENCRYPTION_KEYS`` | comma-separated key ring, first key encrypts |
| ``HUBSPOT_OAUTH_DATA_DIR`` | where default files live (default: the user data directory) |
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..endpoints import API_VERSIONS, Endpoints
from ..errors import ConfigurationError
from ..scopes import split_scopes

__all__ = ["DEFAULT_REDIRECT_URI", "DEFAULT_SCOPES", "ClientConfig", "data_dir"]

DEFAULT_REDIRECT_URI = "http://localhost:3000/oauth-callback"
DEFAULT_SCOPES: tuple[str, ...] = ("crm.objects.contacts.read",)


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The folder for default files (token database, key file, local HubSpot database).

    ``HUBSPOT_OAUTH_DATA_DIR`` when set, else the platform's user data directory
    (``~/.local/share/hubspot-oauth`` on Linux). Created on first use, mode 0700.
    """
    env = os.environ if environ is None else environ
    configured = env.get("HUBSPOT_OAUTH_DATA_DIR")
    if configured:
        path = Path(configured).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("hubspot-oauth", appauthor=False))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Resolved settings. Build it with `ClientConfig.from_env(**flags)`.

    The repr never shows the client secret, the encryption keys, or a password inside
    `database_url` or `base_url`.
    """

    client_id: str | None = None
    client_secret: str | None = dataclasses.field(default=None, repr=False)
    redirect_uri: str = DEFAULT_REDIRECT_URI
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    optional_scopes: tuple[str, ...] = ()
    base_url: str | None = None
    api_version: str = "v3"
    database_url: str | None = None
    encryption_keys: tuple[str, ...] = dataclasses.field(default=(), repr=False)

    def __repr__(self) -> str:
        shown = {
            "client_id": self.client_id,
            "client_secret": "***" if self.client_secret else None,
            "redirect_uri": self.redirect_uri,
            "scopes": self.scopes,
            "optional_scopes": self.optional_scopes,
            "base_url": _hide_password(self.base_url),
            "api_version": self.api_version,
            "database_url": _hide_password(self.database_url),
            "encryption_keys": f"<{len(self.encryption_keys)} key(s)>",
        }
        return "ClientConfig(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> ClientConfig:
        """Settings from `overrides` (None means "not given"), then the environment, then
        defaults. Raises `ConfigurationError` for an unknown API version."""
        env = os.environ if environ is None else environ
        given = {k: v for k, v in overrides.items() if v is not None}
        scopes_raw = given.get("scopes", _first(env, "HUBSPOT_SCOPES", "SCOPE"))
        optional_raw = given.get("optional_scopes", _first(env, "HUBSPOT_OPTIONAL_SCOPES"))
        keys_raw = given.get("encryption_keys", _first(env, "HUBSPOT_OAUTH_ENCRYPTION_KEYS"))
        if isinstance(keys_raw, str):
            keys = tuple(k.strip() for k in keys_raw.split(",") if k.strip())
        else:
            keys = tuple(keys_raw or ())
        version = given.get("api_version", _first(env, "HUBSPOT_API_VERSION") or "v3")
        if version not in API_VERSIONS:
            raise ConfigurationError(
                f"unknown HUBSPOT_API_VERSION {version!r}; use one of {', '.join(API_VERSIONS)}"
            )
        return cls(
            client_id=given.get("client_id", _first(env, "HUBSPOT_CLIENT_ID", "CLIENT_ID")),
            client_secret=given.get(
                "client_secret", _first(env, "HUBSPOT_CLIENT_SECRET", "CLIENT_SECRET")
            ),
            redirect_uri=given.get(
                "redirect_uri", _first(env, "HUBSPOT_REDIRECT_URI") or DEFAULT_REDIRECT_URI
            ),
            scopes=split_scopes(scopes_raw) if scopes_raw is not None else DEFAULT_SCOPES,
            optional_scopes=split_scopes(optional_raw),
            base_url=given.get("base_url", _first(env, "HUBSPOT_BASE_URL")),
            api_version=version,
            database_url=given.get(
                "database_url", _first(env, "HUBSPOT_OAUTH_DATABASE_URL")
            ),
            encryption_keys=keys,
        )

    @property
    def has_credentials(self) -> bool:
        """True when both the client ID and the client secret are set."""
        return bool(self.client_id and self.client_secret)

    def require_credentials(self) -> tuple[str, str]:
        """(client_id, client_secret), or `ConfigurationError` naming what is missing."""
        missing = [
            name
            for name, value in (
                ("HUBSPOT_CLIENT_ID", self.client_id),
                ("HUBSPOT_CLIENT_SECRET", self.client_secret),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(f"missing {' and '.join(missing)} (flag or environment)")
        assert self.client_id and self.client_secret
        return self.client_id, self.client_secret

    def endpoints(self) -> Endpoints:
        """`Endpoints.local(base_url)` when a local HubSpot is configured, else production."""
        if self.base_url:
            return Endpoints.local(self.base_url, api_version=self.api_version)
        return Endpoints.production(api_version=self.api_version)

    def default_database_url(self) -> str:
        """`database_url`, else a SQLite file ``tokens.db`` in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{data_dir() / 'tokens.db'}"


def _hide_password(url: str | None) -> str | None:
    """`url` with the password of its userinfo replaced by ``***`` (for reprs and logs)."""
    if not url:
        return url
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return "<unparsable URL>"
