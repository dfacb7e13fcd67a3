"""The local HubSpot's tables (SQLAlchemy 2 Core; schema managed by Alembic in migrations/).

Times are UTC epoch seconds (floats) on the emulator clock. Codes, tokens and client
secrets are stored only as digests (`token_digest`), passwords as argon2 hashes.
JSON columns hold lists of scopes / URLs / contact properties.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "SCHEMA_REVISION",
    "VERSION_TABLE",
    "access_tokens",
    "apps",
    "authorization_codes",
    "contacts",
    "emulator_state",
    "faults",
    "installs",
    "metadata",
    "portal_users",
    "portals",
    "rate_windows",
    "refresh_tokens",
    "stats",
    "users",
]

VERSION_TABLE = "hubspot_oauth_server_version"
# The newest Alembic revision; a database at another revision is refused until upgraded.
SCHEMA_REVISION = "0005_drop_unused_token_index"

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

apps = sa.Table(
    "apps",
    metadata,
    sa.Column("app_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("client_id", sa.String(100), nullable=False, unique=True),
    # HMAC-SHA256(salt, secret): secrets are random, so a fast keyed digest suffices.
    sa.Column("client_secret_salt", sa.String(64), nullable=False),
    sa.Column("client_secret_digest", sa.String(64), nullable=False),
    sa.Column("redirect_urls", sa.JSON, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("optional_scopes", sa.JSON, nullable=False),
)

portals = sa.Table(
    "portals",
    metadata,
    sa.Column("hub_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hub_domain", sa.String(253), nullable=False),
    sa.Column("hublet", sa.String(10), nullable=False, default="na1"),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    # None: the portal has every product; else the scopes its products allow.
    sa.Column("available_scopes", sa.JSON, nullable=True),
    # Scopes the portal lacks even when `available_scopes` is None.
    sa.Column("missing_scopes", sa.JSON, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(200), nullable=False),
    sa.Column("first_name", sa.String(100), nullable=False, default=""),
    sa.Column("last_name", sa.String(100), nullable=False, default=""),
)

# role: "super_admin" | "marketplace" (App Marketplace Access) | "none" (reference §2.5)
portal_users = sa.Table(
    "portal_users",
    metadata,
    sa.Column("hub_id", sa.Integer, sa.ForeignKey("portals.hub_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.user_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
)

installs = sa.Table(
    "installs",
    metadata,
    sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.app_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("hub_id", sa.Integer, sa.ForeignKey("portals.hub_id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("installed_at", sa.Double, nullable=False),
    sa.Column("uninstalled_at", sa.Double, nullable=True),
)

authorization_codes = sa.Table(
    "authorization_codes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("app_id", sa.Integer, nullable=False),
    sa.Column("hub_id", sa.Integer, nullable=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("redirect_uri", sa.Text, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("code_challenge", sa.String(200), nullable=True),
    sa.Column("code_challenge_method", sa.String(10), nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    # Set once, by a conditional UPDATE: the single-use guarantee (RFC 6749 §4.1.2).
    sa.Column("consumed_at", sa.Double, nullable=True),
    # The token family the redemption created; a replay revokes it.
    sa.Column("family_id", sa.String(36), nullable=True),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("family_id", sa.String(36), nullable=False, index=True),
    sa.Column("app_id", sa.Integer, nullable=False),
    sa.Column("hub_id", sa.Integer, nullable=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("retired_at", sa.Double, nullable=True),  # replaced by rotation
    sa.Column("revoked_at", sa.Double, nullable=True),  # deleted, revoked, uninstalled
    sa.Column("revoked_reason", sa.String(40), nullable=True),
    sa.Index("ix_refresh_tokens_app_hub", "app_id", "hub_id"),
)

access_tokens = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_digest", sa.String(64), nullable=False, unique=True),
    sa.Column("family_id", sa.String(36), nullable=False, index=True),
    # Not indexed: no query looks access tokens up by refresh token (migration 0005).
    sa.Column("refresh_token_id", sa.Integer, nullable=True),
    sa.Column("app_id", sa.Integer, nullable=False),
    sa.Column("hub_id", sa.Integer, nullable=False),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("issued_at", sa.Double, nullable=False),
    sa.Column("expires_at", sa.Double, nullable=False),
    sa.Column("revoked_at", sa.Double, nullable=True),
    sa.Index("ix_access_tokens_app_hub", "app_id", "hub_id"),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hub_id", sa.Integer, nullable=False, index=True),
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)

# One row (id=1): shared by every process on the database, so they act as one server.
emulator_state = sa.Table(
    "emulator_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("clock_offset", sa.Double, nullable=False, default=0.0),
    # Bumped whenever apps change, so per-process caches of apps know to reload.
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    # Key of the authorize pages' signed cookie and forms (hex), made once by the first
    # process: every process on the database accepts the others' pages (load balancing).
    sa.Column("signing_secret", sa.String(64), nullable=True),
    # SHA-256 of the seed the database was filled from: a server started with another
    # seed on it is refused instead of silently serving the old data.
    sa.Column("seed_fingerprint", sa.String(64), nullable=True),
)

faults = sa.Table(
    "faults",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("endpoint", sa.String(20), nullable=False),
    sa.Column("fault", sa.String(40), nullable=False),
    sa.Column("remaining", sa.Integer, nullable=False),
    sa.Column("delay_ms", sa.Integer, nullable=False, default=0),
    sa.Index("ix_faults_endpoint_remaining", "endpoint", "remaining"),
)

stats = sa.Table(
    "stats",
    metadata,
    sa.Column("endpoint", sa.String(20), primary_key=True),
    sa.Column("grant_type", sa.String(40), primary_key=True),  # "" when not a token call
    sa.Column("outcome", sa.String(10), primary_key=True),  # "ok" | "error"
    sa.Column("count", sa.Integer, nullable=False),
    # Each writing thread adds to a row of its own (ratelimit.stats_shard), so concurrent
    # calls never wait on one row's lock; a count is the sum over shards.
    sa.Column("shard", sa.Integer, primary_key=True, autoincrement=False,
              server_default="0"),
)

rate_windows = sa.Table(
    "rate_windows",
    metadata,
    sa.Column("app_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hub_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("window_start", sa.BigInteger, nullable=False),  # epoch ms
    sa.Column("count", sa.Integer, nullable=False),
)
