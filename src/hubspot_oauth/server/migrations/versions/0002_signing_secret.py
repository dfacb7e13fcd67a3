"""The authorize pages' signing secret, shared by every process on the database.

Revision ID: 0002_signing_secret
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_signing_secret"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL until the first server process needs it (LocalHubSpot.signing_secret).
    with op.batch_alter_table("emulator_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signing_secret", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("emulator_state", schema=None) as batch_op:
        batch_op.drop_column("signing_secret")
