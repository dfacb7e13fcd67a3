"""`ServerSettings`: everything the local HubSpot can be told (DESIGN §3-4, docs/internals.md).

Defaults follow HubSpot (reference §4-5): access tokens live 1800 s, refresh tokens do not
expire and a refresh returns the same refresh token; where HubSpot's behaviour is unknown the
RFC 6749 / RFC 9700 behaviour is the default and a setting switches it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from ..errors import ConfigurationError

__all__ = ["MIN_ADMIN_TOKEN", "ROTATION_MODES", "ServerSettings", "default_database_url",
           "is_loopback"]

ROTATION_MODES = ("off", "rotate", "strict")
MIN_ADMIN_TOKEN = 8  # characters


def default_database_url() -> str:
    """The SQLite file ``local-hubspot.db`` in the user data directory (platformdirs)."""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("hubspot-oauth", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'local-hubspot.db'}"


def is_loopback(host: str | None) -> bool:
    """True for ``localhost``, ``127.x.x.x`` and ``::1`` (the only hosts where the control
    API is on without an admin token)."""
    if not host:
        return False
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    """Settings of one local HubSpot.

    **Fields** (times in seconds unless named ``_ms``):
    * `database_url` - SQLAlchemy URL; None: SQLite ``local-hubspot.db`` in the data dir.
    * `seed_file` - TOML seed (apps, portals, users, contacts); None: DESIGN §4's default.
    * `auto_approve` - e-mail of a user who approves every authorize request with no pages.
    * `refresh_token_rotation` - ``"off"`` (HubSpot: same refresh token back), ``"rotate"``
      (new refresh token, old one retired), ``"strict"`` (rotate; reusing a retired one
      revokes the whole family, RFC 9700 §4.14.2).
    * `access_token_ttl` (1800, reference §5), `code_ttl` (300, reference §4.4 UNCONFIRMED).
    * `control_api` - None: on only when `host` is loopback; True/False forces it.
    * `admin_token` - when set, the control API requires ``Authorization: Bearer <token>``
      (and is then on whatever the host).
    * `rate_limit_max`, `rate_limit_interval_ms` - API calls allowed per window per app and
      portal (HubSpot: 100 per 10 s, reference §7.6).
    * `hublet` - data centre of portals whose seed names none (``na1``); a portal's
      hublet prefixes its codes and refresh tokens (``na1-…``, ``eu1-…``).
    * `public_url` - the base URL clients use, when not ``http://{host}:{port}``.
    * `host` - the interface the server binds (decides the control API default).
    * `revoke_cascades` - revoking a refresh token on ``/token/revoke`` also revokes the
      access tokens issued from it (RFC 7009 §2.1); v1 DELETE never does (reference §4.5).
    * `reject_unbound_code_verifier` - a `code_verifier` sent for a code that had no
      `code_challenge` is refused (RFC 9700 §4.8, PKCE downgrade).
    * `max_body_bytes` - token, introspection, revocation and sample API request bodies
      above this get 413 (the authorize pages' form and the control API have fixed
      limits of their own).
    * `api_auth` - False: the sample API answers without a bearer token, as the seed's first
      app in its first portal with all of that app's scopes (a baseline for benchmarks and
      demos; rate limit and stats still apply). Default True.

    Raises `ConfigurationError` for a value out of range.
    """

    database_url: str | None = None
    seed_file: str | Path | None = None
    auto_approve: str | None = None
    refresh_token_rotation: str = "off"
    access_token_ttl: int = 1800
    code_ttl: int = 300
    control_api: bool | None = None
    admin_token: str | None = dataclasses.field(default=None, repr=False)
    rate_limit_max: int = 100
    rate_limit_interval_ms: int = 10_000
    hublet: str = "na1"
    public_url: str | None = None
    host: str = "127.0.0.1"
    revoke_cascades: bool = True
    reject_unbound_code_verifier: bool = True
    max_body_bytes: int = 64 * 1024
    api_auth: bool = True

    def __post_init__(self) -> None:
        if self.refresh_token_rotation not in ROTATION_MODES:
            raise ConfigurationError(
                f"refresh_token_rotation must be one of {', '.join(ROTATION_MODES)}, "
                f"got {self.refresh_token_rotation!r}"
            )
        for name in ("access_token_ttl", "code_ttl", "rate_limit_max", "rate_limit_interval_ms",
                     "max_body_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
        if not self.hublet or not self.hublet.isalnum() or not self.hublet.islower():
            raise ConfigurationError(f"hublet must look like 'na1' or 'eu1', got {self.hublet!r}")
        if self.admin_token is not None and len(self.admin_token) < MIN_ADMIN_TOKEN:
            raise ConfigurationError(f"admin_token must be at least {MIN_ADMIN_TOKEN} characters")

    @property
    def resolved_database_url(self) -> str:
        """`database_url`, or the default SQLite file."""
        return self.database_url or default_database_url()

    @property
    def control_api_enabled(self) -> bool:
        """Whether `/_emulator/*` is served (see `control_api`, `admin_token`)."""
        if self.control_api is not None:
            return self.control_api
        return is_loopback(self.host) or self.admin_token is not None

    def replace(self, **changes: object) -> ServerSettings:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)
