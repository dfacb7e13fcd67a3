"""Alembic environment of the local HubSpot's schema (version table
`hubspot_oauth_server_version`). Run through `hubspot_oauth.server.storage.upgrade`."""

from __future__ import annotations

from alembic import context

from hubspot_oauth.server.models import VERSION_TABLE, metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through hubspot_oauth.server.storage.upgrade()")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
