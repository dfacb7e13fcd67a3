"""Database access for the local HubSpot: engines, transactions, schema upgrade and check.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing half-way with
"database is locked" on lock upgrade. PostgreSQL runs at READ COMMITTED; the guarantees
that matter (single-use codes, rotation) are conditional UPDATEs, safe across processes.

Pooling and timeouts (per server process; every transaction is one short request's work):

* PostgreSQL: 8 pooled connections, up to 32 more under load (40 = the request threads
  Starlette runs, so a request never queues for a connection), 10 s pool wait, a ping
  before each checkout (after a database restart the next request reconnects instead of
  failing), recycled after 30 min, 5 s connect timeout, 15 s statement timeout and 60 s
  idle-in-transaction timeout (a stuck query or client cannot hold row locks for long).
* SQLite: 8 + 8 connections and a 30 s pool wait (the pool's queue is fairer than
  SQLite's busy handler, so more connections would only add lock contention), WAL, a
  10 s busy timeout.

A database that fails (unreachable, restarting, timed out, locked) raises SQLAlchemy's
errors, which the app answers with 503 ``SERVICE_UNAVAILABLE`` and ``Retry-After``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from ..errors import HubSpotOAuthError
from .models import SCHEMA_REVISION, VERSION_TABLE

__all__ = [
    "DatabaseSchemaError",
    "current_revision",
    "make_engine",
    "read",
    "upgrade",
    "write",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_BEGIN_OPTION = "hubspot_oauth_begin"


class DatabaseSchemaError(HubSpotOAuthError):
    """The database's schema is not the one this version needs; the message says what to run."""


def make_engine(database_url: str) -> Engine:
    """An engine for `database_url` (SQLite or PostgreSQL via psycopg).

    Raises `sqlalchemy.exc.ArgumentError` for a malformed URL.
    """
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        memory = url.database in (None, "", ":memory:")
        # timeout: the busy timeout until the PRAGMA below sets it (the same 10 s).
        kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": 10}}
        if memory:
            kwargs["poolclass"] = StaticPool
        else:
            kwargs.update(pool_size=8, max_overflow=8, pool_timeout=30)
        engine = sa.create_engine(url, **kwargs)
        _sqlite_events(engine, memory)
        return engine
    if url.drivername == "postgresql":  # psycopg 3 is what the postgres extra installs
        url = url.set(drivername="postgresql+psycopg")
    options: dict = dict(pool_size=8, max_overflow=32, pool_timeout=10, pool_pre_ping=True,
                         pool_recycle=1800)
    if url.drivername == "postgresql+psycopg":
        options["connect_args"] = {
            "connect_timeout": 5,
            "options": "-c statement_timeout=15000 -c idle_in_transaction_session_timeout=60000",
        }
    return sa.create_engine(url, **options)


def _sqlite_events(engine: Engine, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # Let SQLAlchemy's "begin" event issue BEGIN (pysqlite's own is deferred-only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


@contextlib.contextmanager
def write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite); commits on success."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


@contextlib.contextmanager
def read(engine: Engine) -> Iterator[Connection]:
    """A read transaction (deferred on SQLite: no write lock)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def _alembic_config(conn: Connection):  # noqa: ANN202
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(VERSION_TABLE):
            return None
        row = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first()  # noqa: S608
        return row[0] if row else None


def upgrade(database_url: str | Engine) -> str:
    """Bring the schema to the newest revision; returns it. Safe to run from several
    processes at once (an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite)."""
    from alembic import command

    engine = database_url if isinstance(database_url, Engine) else make_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301202611)"))
                _refuse_unversioned_tables(conn, engine)
                command.upgrade(_alembic_config(conn), "head")
        return SCHEMA_REVISION
    finally:
        if not isinstance(database_url, Engine):
            engine.dispose()


def _upgrade_command(where: str) -> str:
    return f"`hubspot-oauth db upgrade --for server --database-url {where}`"


def _refuse_unversioned_tables(conn: Connection, engine: Engine) -> None:
    """Our tables without a version row cannot be migrated (their revision is unknown)."""
    existing = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE in existing and conn.execute(
            sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).first():  # noqa: S608
        return
    if existing & {"apps", "emulator_state", "authorization_codes", "refresh_tokens"}:
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseSchemaError(
            f"database {where} has local HubSpot tables but no schema revision in "
            f"{VERSION_TABLE}, so they cannot be upgraded; use a new database (the local "
            f"HubSpot's data is disposable) or drop those tables"
        )


def check_schema(engine: Engine) -> None:
    """Raise `DatabaseSchemaError` unless the database is at `SCHEMA_REVISION`; the
    message names the command that fixes it."""
    revision = current_revision(engine)
    if revision == SCHEMA_REVISION:
        return
    where = engine.url.render_as_string(hide_password=True)
    if revision is None:
        raise DatabaseSchemaError(
            f"database {where} has no local HubSpot schema; run {_upgrade_command(where)}"
        )
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)  # type: ignore[arg-type]
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    if revision not in known:
        raise DatabaseSchemaError(
            f"database {where} is at local HubSpot schema revision {revision!r}, newer "
            f"than this version of hubspot-oauth knows ({SCHEMA_REVISION!r}); upgrade "
            f"hubspot-oauth"
        )
    raise DatabaseSchemaError(
        f"database {where} is at local HubSpot schema revision {revision!r} but this "
        f"version needs {SCHEMA_REVISION!r}; run {_upgrade_command(where)}"
    )
