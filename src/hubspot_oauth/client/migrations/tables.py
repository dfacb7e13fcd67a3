"""The library's tables as the current code uses them (the migrations create them).

* ``hubspot_oauth_connections`` - the token store: one row per connection (a HubSpot
  account the app is installed in, or a caller-named key). Only `token_ciphertext` holds
  secrets, encrypted by the key ring (`client/crypto.py`); the other columns are the
  non-secret facts `Connection` shows, plus the single-flight refresh bookkeeping:
  `version` (incremented by every write; the compare-and-set guard) and
  `refreshing_until` / `refresh_owner` (the refresh lease, Unix seconds).
* ``hubspot_oauth_states`` - the OAuth `state` store (`client/state.py`): one row per
  issued state, keyed by the SHA-256 hex digest of the nonce (never the nonce itself).

Times are aware UTC datetimes in Python, stored as naive UTC (`UTCDateTime`), so SQLite
and PostgreSQL compare them the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

__all__ = ["STATE_TABLE", "TOKEN_TABLE", "UTCDateTime", "connections", "metadata", "states"]

TOKEN_TABLE = "hubspot_oauth_connections"
STATE_TABLE = "hubspot_oauth_states"


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetime in Python, naive UTC in the database (same on every dialect)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


metadata = sa.MetaData()

connections = sa.Table(
    TOKEN_TABLE,
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("hub_id", sa.BigInteger, nullable=True, index=True),
    sa.Column("hub_domain", sa.String(255), nullable=True),
    sa.Column("user", sa.String(320), nullable=True),
    sa.Column("user_id", sa.BigInteger, nullable=True),
    sa.Column("scopes", sa.Text, nullable=False, default=""),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("token_ciphertext", sa.Text, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("status", sa.String(32), nullable=False, default="active"),
    sa.Column("status_reason", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("refreshing_until", sa.Float, nullable=True),
    sa.Column("refresh_owner", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

states = sa.Table(
    STATE_TABLE,
    metadata,
    sa.Column("nonce_digest", sa.String(64), primary_key=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("code_verifier", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False, index=True),
)
