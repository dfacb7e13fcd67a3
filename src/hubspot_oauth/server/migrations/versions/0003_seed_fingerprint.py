"""The fingerprint of the seed a database was filled from.

Revision ID: 0003_seed_fingerprint
Revises: 0002_signing_secret
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_seed_fingerprint"
down_revision = "0002_signing_secret"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for databases seeded before: the next server adopts its own seed's fingerprint.
    with op.batch_alter_table("emulator_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seed_fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("emulator_state", schema=None) as batch_op:
        batch_op.drop_column("seed_fingerprint")
