"""Database access for the local HubSpot: engines, transactions, schema upgrade and check.

SQLite runs in WAL mode with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing half-way with
"database is locked" on lock upgrade. PostgreSQL runs at READ COMMITTED; the guarantees
that matter (single-use codes, rotation) are conditional UPDATEs, safe across processes.

Pooling and timeouts (per server process; every transaction is one short request's work):

* PostgreSQL: 16 pooled connections, one for each of `LocalHubSpot.db_threads` (8) and
  the pages' and control API's threads (a connection opened for a burst is kept, not
  closed and reopened on the next one), up to 24 more, 10 s pool wait, recycled after 30 min,
  5 s connect timeout, 15 s statement timeout and 60 s idle-in-transaction timeout (a
  stuck query or client cannot hold row locks for long). A connection is pinged at
  checkout only when it may be dead: its socket has something to read while idle (a
  restarted or stopped server closes its connections) or it was idle over
  `PING_AFTER_IDLE` seconds; a dead one invalidates the pool, so after a database
  restart the next request reconnects instead of failing. (A ping on every checkout cost
  a round trip per transaction.)
* SQLite: 8 + 8 connections and a 30 s pool wait (the pool's queue is fairer than
  SQLite's busy handler, so more connections would only add lock contention), WAL, a
  10 s busy timeout.

A database that fails (unreachable, restarting, timed out, locked) raises SQLAlchemy's
errors, which the app answers with 503 ``SERVICE_UNAVAILABLE`` and ``Retry-After``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from ..errors import HubSpotOAuthError
from .models import SCHEMA_REVISION, VERSION_TABLE

__all__ = [
    "DatabaseSchemaError",
    "FastPathBusy",
    "FastPathMiss",
    "FastTransaction",
    "HotStatement",
    "InlineConnection",
    "all_hot",
    "current_revision",
    "execute_hot",
    "first_hot",
    "make_engine",
    "read",
    "upgrade",
    "write",
]

log = logging.getLogger("hubspot_oauth.server")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_BEGIN_OPTION = "hubspot_oauth_begin"
BUSY_TIMEOUT_MS = 10_000  # SQLite: how long a pooled connection waits for a lock


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
    options: dict = dict(pool_size=16, max_overflow=24, pool_timeout=10, pool_recycle=1800)
    if url.drivername == "postgresql+psycopg":
        options["connect_args"] = {
            "connect_timeout": 5,
            "options": "-c statement_timeout=15000 -c idle_in_transaction_session_timeout=60000",
        }
    engine = sa.create_engine(url, **options)
    _ping_when_maybe_dead(engine)
    return engine


PING_AFTER_IDLE = 5.0  # seconds a pooled PostgreSQL connection may sit unused unpinged
_RETURNED_AT = "hubspot_oauth_returned_at"


def _readable(dbapi_connection: Any) -> bool:
    """True when an idle connection's socket has data or EOF: the server sent something
    unasked, which is how it ends a connection (shutdown, restart, terminated backend)."""
    fileno = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        return True  # cannot tell: ping
    try:
        poller = select.poll()
        poller.register(fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except Exception:  # noqa: BLE001 - a closed or broken connection: the ping tells
        return True


def _ping_when_maybe_dead(engine: Engine) -> None:
    """SQLAlchemy's pessimistic disconnect handling (a checkout event that raises
    `DisconnectionError`: the pool reconnects and retries), pinging only a connection that
    may be dead (see the module docstring)."""
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _connect(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if (returned is not None and time.monotonic() - returned <= PING_AFTER_IDLE
                and not _readable(dbapi_connection)):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_connection, None):
                # Every connection opened before now is stale too (a restart ends all).
                raise sa_exc.InvalidatePoolError(str(exc)) from exc
            raise


def _sqlite_events(engine: Engine, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:  # noqa: ANN001
        # Let SQLAlchemy's "begin" event issue BEGIN (pysqlite's own is deferred-only).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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


class HotStatement:
    """A statement of a hot path, compiled by SQLAlchemy once per dialect and then run on
    the driver's cursor by `FastTransaction` (SQLAlchemy's per-execute work, ~25 µs CPU a
    statement, is most of a request's cost; the driver's own is ~3 µs). The same
    `stmt` runs on a `Connection` as usual. Binds and results go through the column
    types' own processors (JSON, booleans), so values are what SQLAlchemy would give.
    `stmt` may be a function of the dialect name, for dialect-specific statements
    (``INSERT … ON CONFLICT``); `for_dialect(name)` gives the statement to run elsewhere."""

    def __init__(self, stmt: Any) -> None:
        self._factory = stmt if callable(stmt) and not isinstance(stmt, sa.ClauseElement) \
            else (lambda _name: stmt)
        self._statements: dict[str, Any] = {}
        self._compiled: dict[tuple[str, str], tuple] = {}

    def for_dialect(self, name: str) -> Any:
        """The SQLAlchemy statement for dialect `name` (for `Connection.execute`)."""
        stmt = self._statements.get(name)
        if stmt is None:
            stmt = self._statements[name] = self._factory(name)
        return stmt

    def compiled(self, dialect: sa.Dialect) -> tuple:
        key = (dialect.name, dialect.driver)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._compile(dialect)
        return found

    def _compile(self, dialect: sa.Dialect) -> tuple:
        stmt = self.for_dialect(dialect.name)
        compiled = stmt.compile(dialect=dialect)
        if compiled.escaped_bind_names:
            raise ValueError("hot statements use plain bind names")
        names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        binds = []
        for name in names:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((name, None if bind.required else bind.effective_value, processor))
        columns = list(getattr(stmt, "exported_columns", ()))
        row = None
        if columns:
            row = collections.namedtuple("Row", [c.key for c in columns])  # noqa: PYI024
        # Result processors need the driver's type codes: made at the first fetch.
        return str(compiled), compiled.positional, binds, row, [c.type for c in columns], {}


class FastPathMiss(Exception):  # noqa: N818 - a signal, not an error
    """A hot path met anything but its common case (or, run inline, a busy database): its
    transaction is rolled back (it wrote nothing that stays) and the general code
    answers instead, with every rule."""


class FastPathBusy(FastPathMiss):  # noqa: N818 - a signal, not an error
    """An inline hot path found the database busy (another writer, or a checkpoint that
    holds off writers for a moment): nothing was written, and the same request may well
    run inline a moment later (`token.run_inline` waits for that on the event loop)."""


class FastTransaction:
    """One transaction on a pooled DBAPI connection, for the hot paths' `HotStatement`s.

    Same transaction as `write(engine)`: ``BEGIN IMMEDIATE`` on SQLite, the driver's
    implicit BEGIN (READ COMMITTED) on PostgreSQL; commits on success, rolls back on any
    exception. Driver errors are raised as SQLAlchemy's (``OperationalError`` …, so the
    app answers 503), and a connection the database dropped is invalidated, as a
    `Connection` would. With `inline` (an `InlineConnection`, see there) it runs on that
    connection and every driver error is a `FastPathMiss` instead."""

    __slots__ = ("_cursor", "_dbapi_error", "_inline", "_raw", "dialect", "engine")

    def __init__(self, engine: Engine, inline: InlineConnection | None = None) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._dbapi_error = self.dialect.loaded_dbapi.Error
        self._inline = inline
        self._raw: Any = None
        self._cursor: Any = None
        if inline is not None:
            self._raw = inline.raw
            return
        try:
            self._raw = engine.raw_connection()
        except self._dbapi_error as exc:
            raise self._wrap(exc, None) from exc

    def _release(self) -> None:
        if self._inline is None:
            self._raw.close()
        else:
            self._inline.release()

    def __enter__(self) -> FastTransaction:
        try:
            self._cursor = self._raw.cursor()
            if self.dialect.name == "sqlite":
                self._cursor.execute("BEGIN IMMEDIATE")
        except self._dbapi_error as exc:
            error = self._wrap(exc, "BEGIN IMMEDIATE")
            self._release()
            raise error from exc
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self._raw.commit()
                except self._dbapi_error as error:
                    wrapped = self._wrap(error, "COMMIT")
                    self._rollback()
                    raise wrapped from error
                if self._inline is not None:
                    self._inline.committed()
            else:
                self._rollback()
        finally:
            self._release()

    def _rollback(self) -> None:
        # Quietly: the first error is reported. A connection invalidated by it (the
        # database dropped it) has nothing to roll back.
        if self._inline is None and not self._raw.is_valid:
            return
        with contextlib.suppress(self._dbapi_error):
            self._raw.rollback()

    def _wrap(self, exc: BaseException, statement: str | None) -> BaseException:
        if self._inline is not None:
            self._inline.failed(exc)
            busy = getattr(exc, "sqlite_errorcode", None) in _SQLITE_BUSY
            return FastPathBusy() if busy else FastPathMiss()
        invalidated = False
        if self._raw is not None and self.dialect.is_disconnect(
                exc, self._raw.dbapi_connection, self._cursor):
            self._raw.invalidate(exc)
            invalidated = True
        return sa_exc.DBAPIError.instance(statement, None, exc, self._dbapi_error,
                                          hide_parameters=True,
                                          connection_invalidated=invalidated,
                                          dialect=self.dialect)

    def execute(self, hot: HotStatement, params: Mapping[str, Any] | None = None) -> Any:
        """Run `hot` with `params`; returns the cursor (for `rowcount`)."""
        sql, positional, binds = hot.compiled(self.dialect)[:3]
        params = params or {}
        if positional:
            values: Any = [p(params.get(n, d)) if p else params.get(n, d)
                           for n, d, p in binds]
        else:
            values = {n: p(params.get(n, d)) if p else params.get(n, d) for n, d, p in binds}
        try:
            self._cursor.execute(sql, values)
        except self._dbapi_error as exc:
            raise self._wrap(exc, sql) from exc
        return self._cursor

    def _row(self, hot: HotStatement, raw: Any) -> Any:
        _sql, _positional, _binds, row, types, made = hot.compiled(self.dialect)
        processors = made.get("processors")
        if processors is None:
            processors = [t.dialect_impl(self.dialect).result_processor(self.dialect, d[1])
                          for t, d in zip(types, self._cursor.description, strict=True)]
            processors = made["processors"] = processors if any(processors) else []
        if processors:
            raw = [p(v) if p else v for p, v in zip(processors, raw, strict=True)]
        return row._make(raw)

    def first(self, hot: HotStatement, params: Mapping[str, Any] | None = None) -> Any:
        """The first row (a named tuple) or None."""
        cursor = self.execute(hot, params)
        try:
            raw = cursor.fetchone()
        except self._dbapi_error as exc:
            raise self._wrap(exc, None) from exc
        return None if raw is None else self._row(hot, raw)

    def all(self, hot: HotStatement, params: Mapping[str, Any] | None = None) -> list:
        """Every row (named tuples)."""
        cursor = self.execute(hot, params)
        try:
            raws = cursor.fetchall()
        except self._dbapi_error as exc:
            raise self._wrap(exc, None) from exc
        return [self._row(hot, raw) for raw in raws]


def execute_hot(db: Connection | FastTransaction, hot: HotStatement,
                params: Mapping[str, Any]) -> Any:
    """Run `hot` on a hot path's `FastTransaction` (returns its cursor) or on a
    `Connection` (returns the result): both have `rowcount`."""
    if isinstance(db, FastTransaction):
        return db.execute(hot, params)
    return db.execute(hot.for_dialect(db.dialect.name), params)


def first_hot(db: Connection | FastTransaction, hot: HotStatement,
              params: Mapping[str, Any]) -> Any:
    """The first row of `hot` (attribute access) or None, on a `FastTransaction` or a
    `Connection`."""
    if isinstance(db, FastTransaction):
        return db.first(hot, params)
    return db.execute(hot.for_dialect(db.dialect.name), params).first()


def all_hot(db: Connection | FastTransaction, hot: HotStatement,
            params: Mapping[str, Any]) -> list:
    """Every row of `hot` (attribute access), on a `FastTransaction` or a `Connection`."""
    if isinstance(db, FastTransaction):
        return db.all(hot, params)
    return list(db.execute(hot.for_dialect(db.dialect.name), params).all())


_SQLITE_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


class InlineConnection:
    """A SQLite connection of its own (the engine's URL and settings, out of its pool)
    for hot-path transactions run on the event loop thread, saving the thread-pool hop
    (~100 µs CPU a request). It never waits: its busy timeout is 0, so a write lock held
    by another connection or process, like any other driver error, is a `FastPathMiss`
    and the caller runs the request in the thread pool, which waits as usual. One
    transaction at a time (a non-blocking lock); PostgreSQL and in-memory SQLite never
    run inline (a network round trip or row lock must not block the loop).

    WAL checkpoints (copying the log into the database and syncing it, milliseconds)
    would stall the loop when a commit here crossed SQLite's auto-checkpoint size; so
    this connection never checkpoints, and every `CHECKPOINT_EVERY` commits a worker
    thread runs a PASSIVE one (it never blocks writers) on a pooled connection.

    Under steady writes a PASSIVE checkpoint never catches up with the log (commits land
    while it syncs), so SQLite never starts the log over and the WAL file grew without
    bound (500 MB after 24,000 refreshes), and appending to a growing file cost ~20 µs
    CPU a commit more than rewriting one. So once the log holds `RESTART_FRAMES`, the
    worker finishes with a RESTART checkpoint: it holds off writers for the moment it
    takes (this connection then misses; the thread pool waits) and the next commit
    writes the log from its start."""

    CHECKPOINT_EVERY = 200  # commits of a few pages each: about SQLite's 1000-page default
    RESTART_FRAMES = 16_384  # WAL pages (64 MB at 4 KiB): about 2,600 refreshes
    RESTART_WAIT_MS = 100  # the RESTART's busy timeout: at most this long for other users
    CLOSE_WAIT = 5.0  # seconds `close` waits for a running checkpoint thread

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._broken = False
        self._commits = 0
        self._checkpointing = False
        # Guards starting the checkpoint thread against `close`, so close sees every thread.
        self._checkpoint_lock = threading.Lock()
        self._checkpointer: threading.Thread | None = None
        self._closed = False
        self.raw: Any = None

    def transaction(self, engine: Engine) -> FastTransaction:
        """A `FastTransaction` on this connection, or `FastPathMiss` when it is in use,
        or the database is not a SQLite file."""
        if engine.dialect.name != "sqlite" or isinstance(engine.pool, StaticPool):
            raise FastPathMiss
        if not self._lock.acquire(blocking=False):
            raise FastPathBusy
        try:
            if self._engine is not engine or self.raw is None:
                self._open(engine)
            return FastTransaction(engine, inline=self)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, engine: Engine) -> None:
        self._discard()
        own = make_engine(engine.url.render_as_string(hide_password=False))
        try:
            raw = own.raw_connection()
            raw.detach()
        except Exception:  # noqa: BLE001 - no inline connection: the thread pool answers
            raise FastPathMiss from None
        finally:
            own.dispose()
        raw.dbapi_connection.execute("PRAGMA busy_timeout=0")
        raw.dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
        self.raw, self._engine = raw, engine
        with self._checkpoint_lock:
            self._closed = False  # in use again after a `close`

    def committed(self) -> None:
        """Count a commit; start a checkpoint in a worker thread every so often."""
        self._commits += 1
        if self._commits >= self.CHECKPOINT_EVERY and not self._checkpointing:
            with self._checkpoint_lock:
                if self._closed:
                    return
                self._commits = 0
                self._checkpointing = True
                self._checkpointer = threading.Thread(
                    target=self._checkpoint, args=(self._engine,), daemon=True,
                    name="hubspot-oauth-wal-checkpoint")
                self._checkpointer.start()

    def _checkpoint(self, engine: Engine) -> None:
        try:
            if self._closed:  # `close` came first: open nothing on an engine being disposed
                return
            raw = engine.raw_connection()
            try:
                db = raw.dbapi_connection
                _busy, frames, _done = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames >= self.RESTART_FRAMES:
                    db.execute(f"PRAGMA busy_timeout={self.RESTART_WAIT_MS}")
                    try:
                        db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                    finally:
                        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            finally:
                raw.close()
        except Exception:  # noqa: BLE001 - the next one (or any pooled commit) catches up
            log.debug("WAL checkpoint failed", exc_info=True)
        finally:
            self._checkpointing = False

    def failed(self, exc: BaseException) -> None:
        """A driver error: keep the connection when the database was only busy (else it
        is closed when the transaction ends)."""
        if getattr(exc, "sqlite_errorcode", None) not in _SQLITE_BUSY:
            self._broken = True

    def _discard(self) -> None:
        raw, self.raw, self._engine = self.raw, None, None
        if raw is not None:
            with contextlib.suppress(Exception):
                raw.close()

    def release(self) -> None:
        if self._broken:
            self._broken = False
            self._discard()
        self._lock.release()

    def close(self) -> None:
        """Close the connection (the next transaction opens a new one). A checkpoint
        thread not yet started on its connection skips; a running one is waited for, at
        most `CLOSE_WAIT` seconds, so none opens a connection after the engine is
        disposed."""
        with self._checkpoint_lock:
            self._closed = True
            thread, self._checkpointer = self._checkpointer, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.CLOSE_WAIT)
        with self._lock:
            self._discard()


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
