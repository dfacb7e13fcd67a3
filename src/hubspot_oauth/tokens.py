"""The `Token` value type and HubSpot's token string formats.

Formats (reference §5): access tokens are opaque, start with ``C`` and may be up to 300
characters; refresh tokens and authorization codes look like
``na1-8649-43d7-456c-a15c-305ec7f11101`` (hublet, then 4-4-4-4-12 hex digits).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "Token",
    "looks_like_access_token",
    "looks_like_hublet_token",
    "mask",
    "new_access_token",
    "new_authorization_code",
    "new_refresh_token",
]

_HUBLET_TOKEN = re.compile(
    r"[a-z]{2,3}\d-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def new_access_token() -> str:
    """A fresh opaque access token: ``C`` + 64 URL-safe base64 characters (384 bits)."""
    return "C" + secrets.token_urlsafe(48)


def _hublet_id(hublet: str) -> str:
    raw = secrets.token_hex(16)
    return f"{hublet}-{raw[0:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:28]}"


def new_refresh_token(hublet: str = "na1") -> str:
    """A fresh refresh token in HubSpot's format, e.g. ``na1-xxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``."""
    return _hublet_id(hublet)


def new_authorization_code(hublet: str = "na1") -> str:
    """A fresh authorization code; same format as a refresh token (reference §3)."""
    return _hublet_id(hublet)


def looks_like_access_token(value: str) -> bool:
    """True for strings shaped like HubSpot access tokens (opaque, starting with ``C``).

    Refresh tokens and codes start with a lowercase hublet (``na1-``) or are lowercase
    UUIDs, so an uppercase ``C`` is enough; the base64url body may contain ``-`` anywhere.
    """
    return len(value) > 20 and value.startswith("C") and not looks_like_hublet_token(value)


def looks_like_hublet_token(value: str) -> bool:
    """True for strings shaped like a refresh token or code (``na1-xxxx-…``)."""
    return bool(_HUBLET_TOKEN.fullmatch(value))  # not `$`: it allows a final newline


def mask(secret: str | None) -> str:
    """A display form of a secret that reveals nothing usable: ``C…(64 chars)``."""
    if not secret:
        return "<none>"
    return f"{secret[:3]}…({len(secret)} chars)"


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Token:
    """An access token and refresh token pair, as HubSpot's token endpoint returned it.

    Immutable. `expires_at` is an aware UTC datetime computed from `expires_in` (seconds)
    at the moment the response was received; never assume 1800 s (HubSpot changed the
    lifetime once already, reference §5). The repr masks both tokens.

    **Fields:** `access_token` (str), `refresh_token` (str or None), `token_type` (str,
    ``"bearer"``), `expires_in` (int seconds, as received), `expires_at` (datetime, UTC),
    `hub_id` (int or None), `user_id` (int or None), `scopes` (tuple of str), `user`
    (installing user's email, or None), `hub_domain` (str or None).
    """

    access_token: str = dataclasses.field(repr=False)
    refresh_token: str | None = dataclasses.field(repr=False)
    expires_in: int
    expires_at: datetime
    token_type: str = "bearer"
    hub_id: int | None = None
    user_id: int | None = None
    scopes: tuple[str, ...] = ()
    user: str | None = None
    hub_domain: str | None = None

    def __post_init__(self) -> None:
        if self.expires_at.tzinfo is None:
            raise ValueError("Token.expires_at must be an aware datetime (UTC)")
        object.__setattr__(self, "scopes", tuple(self.scopes))

    def __repr__(self) -> str:
        return (
            f"Token(access_token={mask(self.access_token)!s}, "
            f"refresh_token={mask(self.refresh_token)!s}, hub_id={self.hub_id}, "
            f"user_id={self.user_id}, scopes={list(self.scopes)}, "
            f"expires_at={self.expires_at.isoformat()})"
        )

    __str__ = __repr__

    @classmethod
    def from_response(
        cls,
        payload: Mapping[str, Any],
        *,
        received_at: datetime | None = None,
        previous_refresh_token: str | None = None,
    ) -> Token:
        """Build a Token from a token-endpoint JSON body (RFC 6749 §5.1, reference §4.2).

        `received_at` (aware UTC, default now) anchors `expires_at`. When the response
        omits `refresh_token` (allowed by RFC 6749 §6), `previous_refresh_token` is kept.
        Raises `ValueError` when `access_token` or `expires_in` is missing or malformed.
        """
        access_token = payload.get("access_token")
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("token response has no access_token")
        expires_in = payload.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, int | float | str):
            raise ValueError("token response has no expires_in")
        try:
            seconds = int(expires_in)
        except ValueError:
            raise ValueError("token response has a malformed expires_in") from None
        if seconds < 0:
            raise ValueError("token response has a negative expires_in")
        refresh_token = payload.get("refresh_token") or previous_refresh_token
        received = received_at or _utcnow()
        scopes = payload.get("scopes")
        if isinstance(scopes, str):
            scopes = scopes.split()
        return cls(
            access_token=access_token,
            refresh_token=refresh_token if isinstance(refresh_token, str) else None,
            expires_in=seconds,
            expires_at=received + timedelta(seconds=seconds),
            token_type=str(payload.get("token_type") or "bearer"),
            hub_id=_int_or_none(payload.get("hub_id")),
            user_id=_int_or_none(payload.get("user_id")),
            scopes=tuple(s for s in (scopes or ()) if isinstance(s, str)),
            user=payload.get("user") if isinstance(payload.get("user"), str) else None,
            hub_domain=payload.get("hub_domain")
            if isinstance(payload.get("hub_domain"), str)
            else None,
        )

    def expires_within(self, seconds: float, *, now: datetime | None = None) -> bool:
        """True when the access token expires in `seconds` or less (or has expired)."""
        return (self.expires_at - (now or _utcnow())).total_seconds() <= seconds

    def seconds_left(self, *, now: datetime | None = None) -> float:
        """Seconds until the access token expires (negative once expired)."""
        return (self.expires_at - (now or _utcnow())).total_seconds()

    def replace(self, **changes: Any) -> Token:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict with every field (secrets included: store it encrypted)."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "expires_at": self.expires_at.astimezone(UTC).isoformat(),
            "hub_id": self.hub_id,
            "user_id": self.user_id,
            "scopes": list(self.scopes),
            "user": self.user,
            "hub_domain": self.hub_domain,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """The inverse of `to_dict`. Raises `ValueError` on a malformed mapping."""
        try:
            expires_at = datetime.fromisoformat(data["expires_at"])
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            return cls(
                access_token=data["access_token"],
                refresh_token=data.get("refresh_token"),
                token_type=data.get("token_type", "bearer"),
                expires_in=int(data["expires_in"]),
                expires_at=expires_at,
                hub_id=_int_or_none(data.get("hub_id")),
                user_id=_int_or_none(data.get("user_id")),
                scopes=tuple(data.get("scopes") or ()),
                user=data.get("user"),
                hub_domain=data.get("hub_domain"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed token record: {type(exc).__name__}") from None


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
