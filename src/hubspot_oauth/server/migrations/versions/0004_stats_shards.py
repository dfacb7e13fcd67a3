"""Stats counters sharded by writing thread: `shard` joins the primary key of `stats`.

Every counted call used to add one to a single row per (endpoint, grant_type, outcome),
so on PostgreSQL all processes and threads queued on that row's lock until commit. Each
thread now adds to a row of its own; the count of a key is the sum over its shards.
Existing counts are kept (as shard 0).

Revision ID: 0004_stats_shards
Revises: 0003_seed_fingerprint
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_stats_shards"
down_revision = "0003_seed_fingerprint"
branch_labels = None
depends_on = None

_KEY = ["endpoint", "grant_type", "outcome"]


def upgrade() -> None:
    with op.batch_alter_table("stats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shard", sa.Integer(), autoincrement=False,
                                      nullable=False, server_default="0"))
        batch_op.drop_constraint("pk_stats", type_="primary")
        batch_op.create_primary_key("pk_stats", [*_KEY, "shard"])


def downgrade() -> None:
    # Fold the shards into one row per key before the key loses its `shard`.
    stats = sa.table("stats", *(sa.column(c) for c in [*_KEY, "shard", "count"]))
    conn = op.get_bind()
    totals = conn.execute(sa.select(*(stats.c[c] for c in _KEY),
                                    sa.func.sum(stats.c.count).label("count"))
                          .group_by(*(stats.c[c] for c in _KEY))).all()
    conn.execute(sa.delete(stats))
    with op.batch_alter_table("stats", schema=None) as batch_op:
        batch_op.drop_constraint("pk_stats", type_="primary")
        batch_op.drop_column("shard")
        batch_op.create_primary_key("pk_stats", _KEY)
    folded = sa.table("stats", *(sa.column(c) for c in [*_KEY, "count"]))
    if totals:
        conn.execute(sa.insert(folded), [dict(r._mapping) for r in totals])
