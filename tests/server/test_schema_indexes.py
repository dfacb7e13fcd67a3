"""The migrated schema has exactly the indexes models.py declares (so a migration that
adds or drops one, like 0005's unused ``ix_access_tokens_refresh_token_id``, cannot drift
from the models), and downgrading one revision brings a dropped index back."""

from __future__ import annotations

import sqlalchemy as sa

from hubspot_oauth.server.models import metadata
from hubspot_oauth.server.storage import make_engine, upgrade


def _indexes(engine: sa.Engine) -> set[tuple[str, str, tuple[str, ...]]]:
    inspector = sa.inspect(engine)
    # PostgreSQL also lists the indexes behind UNIQUE constraints: those are not indexes
    # of the models (they are their unique constraints).
    return {(table, ix["name"], tuple(ix["column_names"]))
            for table in metadata.tables for ix in inspector.get_indexes(table)
            if not ix.get("duplicates_constraint")}


def test_migrated_indexes_are_the_models_indexes(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        found = _indexes(engine)
    finally:
        engine.dispose()
    declared = {(table.name, ix.name, tuple(c.name for c in ix.columns))
                for table in metadata.sorted_tables for ix in table.indexes}
    assert found == declared
    assert ("access_tokens", "ix_access_tokens_refresh_token_id",
            ("refresh_token_id",)) not in found
    assert ("access_tokens", "ix_access_tokens_family_id", ("family_id",)) in found


def test_downgrade_restores_the_dropped_index(sqlite_url: str) -> None:
    from alembic import command

    from hubspot_oauth.server.storage import _alembic_config

    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    try:
        with engine.begin() as conn:
            command.downgrade(_alembic_config(conn), "0004_stats_shards")
        assert ("access_tokens", "ix_access_tokens_refresh_token_id",
                ("refresh_token_id",)) in _indexes(engine)
    finally:
        engine.dispose()
