"""Token store and state store tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hubspot_oauth.client.migrations.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hubspot_oauth_connections",
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("hub_id", sa.BigInteger, nullable=True),
        sa.Column("hub_domain", sa.String(255), nullable=True),
        sa.Column("user", sa.String(320), nullable=True),
        sa.Column("user_id", sa.BigInteger, nullable=True),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
        sa.Column("token_ciphertext", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("refreshing_until", sa.Float, nullable=True),
        sa.Column("refresh_owner", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_index(
        "ix_hubspot_oauth_connections_hub_id", "hubspot_oauth_connections", ["hub_id"]
    )
    op.create_table(
        "hubspot_oauth_states",
        sa.Column("nonce_digest", sa.String(64), primary_key=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("code_verifier", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("expires_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_hubspot_oauth_states_expires_at", "hubspot_oauth_states", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_hubspot_oauth_states_expires_at", "hubspot_oauth_states")
    op.drop_table("hubspot_oauth_states")
    op.drop_index("ix_hubspot_oauth_connections_hub_id", "hubspot_oauth_connections")
    op.drop_table("hubspot_oauth_connections")
