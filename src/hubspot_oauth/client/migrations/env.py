"""Alembic environment: runs on the connection handed over by `migrations.upgrade`."""

from __future__ import annotations

from alembic import context

from hubspot_oauth.client.migrations import VERSION_TABLE
from hubspot_oauth.client.migrations.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=True,  # SQLite needs batch mode for ALTER in later revisions
)
with context.begin_transaction():
    context.run_migrations()
