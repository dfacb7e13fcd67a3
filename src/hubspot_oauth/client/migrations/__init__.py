"""Alembic migrations for the library's schema: the token store and the state store.

The version table is ``hubspot_oauth_store_version`` (the local HubSpot keeps its own,
``hubspot_oauth_server_version``, so both may share one database). Apply them with
``hubspot-oauth db upgrade --database-url URL`` or `upgrade(url)`.

`ensure_schema(engine)` is what `TokenStore` and `StateStore` call when they open a
database: an empty database gets the schema created (first run); a database whose schema
is behind (or ahead of) this version raises `SchemaOutdatedError` and changes nothing, so
two versions of an app never write one table in two shapes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import sqlalchemy as sa

from ...errors import SchemaOutdatedError

__all__ = [
    "HEAD",
    "VERSION_TABLE",
    "current_revision",
    "ensure_schema",
    "schema_status",
    "upgrade",
]

VERSION_TABLE = "hubspot_oauth_store_version"
HEAD = "0001"

logger = logging.getLogger("hubspot_oauth.store")

SchemaStatus = Literal["empty", "current", "behind", "ahead"]


def _alembic_config(connection: sa.Connection):  # -> alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: sa.Connection) -> str | None:
    """The revision recorded in ``hubspot_oauth_store_version``, or None when absent.

    Plain SQL, no Alembic import: every app process checks this when it opens a store, and
    the common answer ("current") should cost two small queries."""
    if not sa.inspect(connection).has_table(VERSION_TABLE):
        return None
    version = sa.table(VERSION_TABLE, sa.column("version_num"))
    rows = connection.execute(sa.select(version.c.version_num)).scalars().all()
    if len(rows) > 1:
        raise SchemaOutdatedError(
            f"{VERSION_TABLE} holds several revisions ({', '.join(sorted(rows))}): the "
            f"database was migrated by diverging versions of hubspot-oauth"
        )
    return rows[0] if rows else None


def schema_status(connection: sa.Connection) -> SchemaStatus:
    """``"empty"`` (none of our tables), ``"current"``, ``"behind"`` or ``"ahead"``."""
    revision = current_revision(connection)
    if revision is None:
        from .tables import metadata

        existing = set(sa.inspect(connection).get_table_names())
        ours = set(metadata.tables) & existing
        return "empty" if not ours else "behind"
    if revision == HEAD:
        return "current"
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(connection))
    known = {rev.revision for rev in script.walk_revisions()}
    return "behind" if revision in known else "ahead"


def _display(url: sa.URL | str) -> str:
    return sa.make_url(url).render_as_string(hide_password=True)


BASELINE = "0001"  # the first revision: what tables made before any migration would be


def _unversioned(url: str) -> SchemaOutdatedError:
    """Our tables but no version row: no migration can tell where to start."""
    return SchemaOutdatedError(
        f"the database {url} has hubspot-oauth store tables but no revision in "
        f"{VERSION_TABLE}, so `hubspot-oauth db upgrade --database-url {url}` cannot tell "
        f"which migrations to apply; if the tables are store schema {BASELINE}, record that "
        f"revision there (one row, version_num = '{BASELINE}') and run it again"
    )


def upgrade(database_url: str | sa.URL | sa.Engine, revision: str = "head") -> str:
    """Apply the migrations up to `revision` (default the newest). Returns the revision.

    Safe to run while other processes start on the same database: on PostgreSQL it takes
    an advisory lock; elsewhere a concurrent upgrade that loses the race re-checks the
    schema and accepts it when another process completed it.
    """
    from alembic import command

    engine = (
        database_url if isinstance(database_url, sa.Engine) else sa.create_engine(database_url)
    )
    try:
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(72057594037927)")
                if current_revision(connection) is None and schema_status(connection) != "empty":
                    raise _unversioned(_display(engine.url))
                command.upgrade(_alembic_config(connection), revision)
                return current_revision(connection) or ""
        except sa.exc.SQLAlchemyError:
            with engine.connect() as connection:
                if revision == "head" and schema_status(connection) == "current":
                    return HEAD
            raise
    finally:
        if not isinstance(database_url, sa.Engine):
            engine.dispose()


def ensure_schema(engine: sa.Engine, *, create_if_empty: bool = True) -> None:
    """Create the schema in an empty database; raise `SchemaOutdatedError` if it is behind
    or ahead of this version (nothing is changed then)."""
    with engine.connect() as connection:
        status = schema_status(connection)
        found = current_revision(connection)
    if status == "current":
        return
    if status == "empty" and create_if_empty:
        logger.info("creating the hubspot-oauth store schema in %s", _display(engine.url))
        upgrade(engine)
        return
    url = _display(engine.url)
    if status == "behind" and found is None:
        raise _unversioned(url)
    if status == "ahead":
        raise SchemaOutdatedError(
            f"the database {url} has hubspot-oauth store schema revision {found!r}, newer "
            f"than this version of hubspot-oauth understands ({HEAD}); upgrade the package"
        )
    raise SchemaOutdatedError(
        f"the database {url} has hubspot-oauth store schema revision {found or 'none'}, "
        f"this version needs {HEAD}: run `hubspot-oauth db upgrade --database-url {url}`"
    )
