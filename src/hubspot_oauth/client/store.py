"""The token store: tokens of many connected HubSpot accounts, encrypted at rest, refreshed
exactly once however many threads, processes and hosts ask at the same moment.

Usage:

    store = TokenStore("sqlite:///tokens.db", client=client)    # or postgresql+psycopg://…
    key = store.save(token)              # "1234567" (str(hub_id)) unless key="…" is given
    access = store.access_token(key)     # valid for at least `leeway` seconds
    httpx.Client(auth=store.auth(key))   # bearer + one refresh-and-retry on 401 EXPIRED

**Single-flight refresh** (DESIGN §5, reference/peers.md §5.A). A refresh of one
connection runs under

1. an in-process lock per connection key (threads of one process queue behind it);
2. a database lease taken by one compare-and-set UPDATE
   (``… SET refreshing_until = now + refresh_lease WHERE key = ? AND version = ? AND
   (refreshing_until IS NULL OR refreshing_until < now)``), so exactly one process on any
   host refreshes; the others poll the row until it changes;
3. a re-read of the row once the lease is held: when another process refreshed in the
   meantime its token is used and HubSpot is not called.

The new access token and the (possibly rotated) refresh token are written by one UPDATE
guarded by the row's `version`, so a rotated refresh token is never lost to a concurrent
writer. A ``BAD_REFRESH_TOKEN`` answer while another process holds a newer token (because
our lease expired and it took over) re-reads and succeeds. Only a refresh that fails for
good while we still hold the lease marks the connection ``needs_reauthorization``, raises
`ReauthorizationRequiredError` (with `connection_key`) and calls
``on_reauthorization_required(key, error)`` - once, in the process that saw it. Transient
failures (`RetryableError`) keep the stored token and release the lease.

The lease lasts `refresh_lease` seconds (default 30) and is renewed every third of that
while the refresh runs, so a slow HubSpot (the client retries transient failures for up
to a minute) never loses it; a process killed in the middle of a refresh stops renewing,
and its lease expires within `refresh_lease` seconds, after which the next caller
refreshes. (A refresh answer lost with a killed process cannot be recovered by anyone;
harmless unless HubSpot rotates refresh tokens, which it does not by default.)

**Cache.** A fresh token is served from a small in-process cache of decrypted tokens
(at most `CACHE_ENTRIES` connections, each entry at most `cache_ttl` seconds old, default
5) without touching the database; a token within the leeway on the store's clock is never
served from it. Every write of this store (save, refresh, delete, re-authorization
marking, key rotation) updates or drops its entry at once, and ``refresh(key,
stale_access_token=…)`` always reads the database. Changes made by *other* processes or
`TokenStore` instances (a delete, a re-install, their refresh) are seen within
`cache_ttl` seconds at most; ``cache_ttl=0`` turns the cache off.

**Expiry.** The store decides on its own clock (`clock`, default the real UTC time) with
the token's own `expires_at`; a refresh result's expiry is anchored at the store's clock
*before* the request was sent (never a hard-coded 1800 s, reference §5).

**Databases.** SQLite (the default: ``tokens.db`` in `data_dir()`) runs in WAL mode with a
30 s busy timeout, so processes on one host share the file safely. PostgreSQL
(``postgresql+psycopg://user:pw@host/db``, the ``postgres`` extra) is for many hosts; the
engine pools 5 connections (+10 overflow) per process, waits at most 30 s for one, pings
them before use, recycles them after 30 minutes, and sets a 10 s connect timeout, a 30 s
statement timeout and a 60 s idle-in-transaction timeout. Every store transaction is a
single short statement, so no lock is held across an HTTP call. Pass `engine_options` to
override any of these (they are `sqlalchemy.create_engine` keywords).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import sqlalchemy as sa

from ..errors import (
    ConfigurationError,
    ConnectionNotFoundError,
    EncryptionKeyError,
    HubSpotOAuthError,
    ReauthorizationRequiredError,
    RefreshInProgressError,
    StoreUnavailableError,
    TokenStoreError,
)
from ..tokens import Token
from . import protocol
from ._database import guarded
from .config import ClientConfig
from .crypto import KeyRing
from .migrations import ensure_schema
from .migrations.tables import connections as _connections

if TYPE_CHECKING:  # pragma: no cover
    from .auth import HubSpotAuth

__all__ = [
    "ACTIVE",
    "NEEDS_REAUTHORIZATION",
    "Connection",
    "RefreshInProgressError",
    "StoreUnavailableError",
    "TokenStore",
    "create_store_engine",
]

logger = logging.getLogger("hubspot_oauth.store")

# Built once: constructing the statement per call cost more than running it (benchmarks).
_READ_ROW = sa.select(
    _connections.c.key, _connections.c.version, _connections.c.status,
    _connections.c.status_reason, _connections.c.refreshing_until, _connections.c.refresh_owner,
    _connections.c.token_ciphertext, _connections.c.key_id,
).where(_connections.c.key == sa.bindparam("key"))

ACTIVE = "active"
NEEDS_REAUTHORIZATION = "needs_reauthorization"

ConnectionStatus = Literal["active", "needs_reauthorization"]

# Bound of the decrypted-token cache; when full the oldest entry is evicted.
CACHE_ENTRIES = 10_000


class RefreshingClient(Protocol):
    """What the store needs from a client: `OAuthClient.refresh`."""

    def refresh(self, refresh_token: str) -> Token: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Connection:
    """One stored connection, without secrets (safe to show and log).

    **Fields:** `key` (str), `hub_id` (int or None), `hub_domain` (str or None), `user`
    (installing user's email or None), `user_id` (int or None), `scopes` (tuple of str),
    `expires_at` (aware UTC datetime of the stored access token), `status` (``"active"`` or
    ``"needs_reauthorization"``), `updated_at` (aware UTC), `status_reason` (HubSpot's code
    that ended the connection, e.g. ``"BAD_REFRESH_TOKEN"``, else None).
    """

    key: str
    hub_id: int | None
    hub_domain: str | None
    user: str | None
    user_id: int | None
    scopes: tuple[str, ...]
    expires_at: datetime
    status: ConnectionStatus
    updated_at: datetime
    status_reason: str | None = None

    @property
    def needs_reauthorization(self) -> bool:
        """True when only a new install can bring this connection back."""
        return self.status == NEEDS_REAUTHORIZATION


class _Cached(NamedTuple):
    token: Token
    version: int  # the row version the token was read from or written as
    cached_at: float  # time.monotonic() when cached
    due_at: datetime  # on the store's clock: from here on the token needs a refresh

    def __repr__(self) -> str:  # never the token
        return f"_Cached(version={self.version}, cached_at={self.cached_at:.3f})"


class _Row(NamedTuple):
    key: str
    version: int
    status: str
    status_reason: str | None
    refreshing_until: float | None
    refresh_owner: str | None
    ciphertext: str
    key_id: str


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_store_engine(
    database_url: str, engine_options: Mapping[str, Any] | None = None
) -> sa.Engine:
    """A SQLAlchemy engine with the store's deliberate pooling and timeouts (module doc).

    Raises `ConfigurationError` for a URL SQLAlchemy cannot use (e.g. a missing driver).
    """
    try:
        url = sa.make_url(database_url)
    except sa.exc.ArgumentError:
        raise ConfigurationError(
            "malformed database URL; use sqlite:///path/tokens.db or "
            "postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    options: dict[str, Any] = {}
    backend = url.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"unsupported database {url.render_as_string(hide_password=True)}: hubspot-oauth "
            "supports only sqlite:///path/tokens.db or "
            "postgresql+psycopg://user:password@host/dbname"
        )
    if backend == "sqlite":
        in_memory = url.database in (None, "", ":memory:")
        options["connect_args"] = {"timeout": 30.0, "check_same_thread": False}
        if in_memory:
            options["poolclass"] = sa.pool.StaticPool
        else:
            options.update(pool_size=5, max_overflow=20, pool_timeout=30)
    elif backend == "postgresql":
        options.update(
            pool_size=5,
            max_overflow=10,
            pool_timeout=30,
            pool_recycle=1800,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": 10,
                "options": "-c statement_timeout=30000 "
                "-c idle_in_transaction_session_timeout=60000",
            },
        )
    options.update(engine_options or {})
    try:
        engine = sa.create_engine(url, **options)
    except (ImportError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
        hint = (" (psycopg 3 is needed: pip install 'hubspot-oauth[postgres]')"
                if backend == "postgresql" else "")
        raise ConfigurationError(
            f"cannot use database {url.render_as_string(hide_password=True)}: "
            f"{type(exc).__name__}{hint}"
        ) from None
    if backend == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the single writer; busy_timeout: writers queue.
            if url.database not in (None, "", ":memory:"):
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


class _LeaseKeeper:
    """Renews a refresh lease every third of `refresh_lease` until stopped (or lost)."""

    def __init__(self, store: TokenStore, key: str, owner: str) -> None:
        self._store, self._key, self._owner = store, key, owner
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"hubspot-oauth lease {key}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        c = _connections.c
        lease = self._store.refresh_lease
        while not self._stopped.wait(lease / 3):
            try:
                kept = self._store._update(
                    (c.key == self._key) & (c.refresh_owner == self._owner),
                    refreshing_until=time.time() + lease,
                )
            except TokenStoreError:
                continue  # the database is away; try again next period
            if not kept:
                return  # saved, released, or taken over: nothing left to keep


class TokenStore:
    """Tokens of many HubSpot connections, encrypted at rest, refreshed single-flight.

    **Parameters:**
    * `database_url` - SQLAlchemy URL; default ``ClientConfig().default_database_url()``
      (``HUBSPOT_OAUTH_DATABASE_URL``, else ``sqlite:///<data_dir>/tokens.db``).
    * `client` - an `OAuthClient` (anything with ``refresh(refresh_token) -> Token``);
      needed by `access_token`, `refresh`, `auth` once a token is due.
    * `encryption_keys` *(optional)* - Fernet keys, first encrypts (see `crypto.py`);
      default ``HUBSPOT_OAUTH_ENCRYPTION_KEYS`` or a generated key file.
    * `leeway` - seconds: `access_token` refreshes when the token has this little left
      (default 300; at most half the token's `expires_in`, so short-lived tokens are not
      refreshed on every call).
    * `on_reauthorization_required` *(optional)* - ``hook(key, error)`` called once when a
      connection turns ``needs_reauthorization``; its exceptions are logged, not raised.
    * `clock` *(optional)* - returns the aware UTC "now" used for expiry decisions.
    * `refresh_lease` - seconds the database lease of a refresh lasts unless renewed
      (default 30; renewed every third of it while the refresh runs).
    * `cache_ttl` - seconds a decrypted token may be served from the in-process cache
      (default 5; 0 disables it). Changes by other processes or store instances are seen
      within this time at most; this store's own writes at once (module doc, **Cache**).
    * `refresh_wait` - seconds a caller waits for another's refresh before
      `RefreshInProgressError` (default `refresh_lease` + 30).
    * `engine` / `engine_options` *(optional)* - an existing engine, or
      `create_engine` keywords overriding the defaults of `create_store_engine`.
    * `create_schema` - create the tables in an empty database (default True). A database
      whose schema is behind raises `SchemaOutdatedError` either way.

    Raises `ConfigurationError` (bad URL, missing driver, malformed key) and
    `SchemaOutdatedError`. Every method raises `StoreUnavailableError` (a `RetryableError`;
    nothing changed) when the database cannot be reached or times out.
    """

    def __init__(
        self,
        database_url: str | None = None,
        client: RefreshingClient | None = None,
        *,
        encryption_keys: str | Sequence[str] | None = None,
        leeway: float = 300,
        on_reauthorization_required: Callable[[str, ReauthorizationRequiredError], Any]
        | None = None,
        clock: Callable[[], datetime] | None = None,
        refresh_lease: float = 30.0,
        refresh_wait: float | None = None,
        key_file: str | None = None,
        engine: sa.Engine | None = None,
        engine_options: Mapping[str, Any] | None = None,
        create_schema: bool = True,
        cache_ttl: float = 5.0,
    ) -> None:
        if leeway < 0 or refresh_lease <= 0 or cache_ttl < 0:
            raise ConfigurationError(
                "leeway and cache_ttl must be >= 0 and refresh_lease > 0 (seconds)"
            )
        if engine is not None:
            self._engine = engine
            url = engine.url.render_as_string(hide_password=False)
        else:
            url = database_url or ClientConfig.from_env().default_database_url()
            self._engine = create_store_engine(url, engine_options)
        self.database_url = sa.make_url(url).render_as_string(hide_password=True)
        refresh = getattr(client, "refresh", None)
        if client is not None and (
            not callable(refresh) or inspect.iscoroutinefunction(refresh)
        ):
            raise ConfigurationError(
                "TokenStore needs a synchronous OAuthClient (its refresh is called in the "
                "caller's thread); HubSpotAuth from store.auth(key) also works with "
                "httpx.AsyncClient"
            )
        self.client = client
        self.leeway = float(leeway)
        self.on_reauthorization_required = on_reauthorization_required
        self._clock = clock or _utcnow
        self.refresh_lease = float(refresh_lease)
        self.refresh_wait = float(refresh_wait if refresh_wait is not None else refresh_lease + 30)
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._locks_guard = threading.Lock()
        self.cache_ttl = float(cache_ttl)
        self._cache: dict[str, _Cached] = {}
        self._cache_guard = threading.Lock()
        # Bumped by every write of this store: a reader that started before a write must
        # not cache what it read (it may be older than the write).
        self._cache_epoch = 0
        self._monotonic = time.monotonic  # tests replace it
        self._guard(lambda: ensure_schema(self._engine, create_if_empty=create_schema))
        # A new key file is only made for an empty store: rows written under a lost key
        # must fail loudly, not be shadowed by a key that cannot read them.
        self._keys = KeyRing.from_settings(
            encryption_keys,
            database_url=url,
            key_file=key_file,
            create=not self._guard(self._holds_tokens),
        )

    def __repr__(self) -> str:
        return f"TokenStore({self.database_url!r}, keys={self._keys!r})"

    def _holds_tokens(self) -> bool:
        with self._engine.connect() as conn:
            return conn.execute(sa.select(_connections.c.key).limit(1)).first() is not None

    # -- plumbing -------------------------------------------------------------------

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (share it, e.g. with a `StateStore`)."""
        return self._engine

    @property
    def key_ring(self) -> KeyRing:
        """The encryption key ring (its repr names key ids, never keys)."""
        return self._keys

    def close(self) -> None:
        """Close the pooled database connections."""
        self._engine.dispose()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _guard(self, operation: Callable[[], Any]) -> Any:
        """Run a database operation; turn an unreachable database into a retryable error."""
        return guarded(operation, self._unavailable)

    def _unavailable(self, reason: str) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"the token store database {self.database_url} is unavailable ({reason}); "
            "nothing was changed, try again"
        )

    def _lock_for(self, key: str) -> threading.Lock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = threading.Lock()
                self._locks[key] = lock
            return lock

    # -- cache of decrypted tokens (module doc, **Cache**) ------------------------------

    def _cached(self, key: str) -> Token | None:
        """The cached token when it is young enough and not due on the store's clock."""
        entry = self._cache.get(key)
        if (
            entry is not None
            and self._monotonic() - entry.cached_at < self.cache_ttl
            and self._clock() < entry.due_at
        ):
            return entry.token
        return None

    def _cache_put(self, key: str, token: Token, version: int, epoch: int) -> None:
        """Cache what a reader read, unless a write of this store happened since `epoch`
        (taken before the read)."""
        if self.cache_ttl <= 0:
            return
        entry = _Cached(token, version, self._monotonic(), self._due_at(token))
        with self._cache_guard:
            if self._cache_epoch != epoch:
                return
            self._store_entry(key, entry)

    def _cache_written(
        self, key: str, epoch: int, token: Token | None = None, version: int = 0
    ) -> None:
        """After a write of this store: cache the written `token` when no other write
        happened since `epoch` (taken before the write), else drop the entry."""
        entry = None
        if token is not None and self.cache_ttl > 0:
            entry = _Cached(token, version, self._monotonic(), self._due_at(token))
        with self._cache_guard:
            unchanged = self._cache_epoch == epoch
            self._cache_epoch += 1
            if entry is not None and unchanged:
                self._store_entry(key, entry)
            else:
                self._cache.pop(key, None)

    def _store_entry(self, key: str, entry: _Cached) -> None:
        # Caller holds _cache_guard. Dicts keep insertion order: evict the oldest.
        self._cache.pop(key, None)
        while len(self._cache) >= CACHE_ENTRIES:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = entry

    def _encrypt(self, token: Token) -> str:
        return self._keys.encrypt(json.dumps(token.to_dict()).encode("utf-8"))

    def _decrypt(self, row: _Row) -> Token:
        plaintext = self._keys.decrypt(
            row.ciphertext, what=f"connection {row.key!r} (written with key id {row.key_id})"
        )
        try:
            return Token.from_dict(json.loads(plaintext))
        except (ValueError, TypeError):
            raise EncryptionKeyError(
                f"connection {row.key!r} decrypted to a malformed record"
            ) from None

    def _read(self, key: str) -> _Row:
        def run() -> Any:
            with self._engine.connect() as connection:
                return connection.execute(_READ_ROW, {"key": key}).first()

        found = self._guard(run)
        if found is None:
            raise ConnectionNotFoundError(key)
        return _Row(*found)

    def _update(self, where: Any, **values: Any) -> bool:
        """One guarded UPDATE in its own transaction; True when it changed the row."""
        statement = sa.update(_connections).where(where).values(**values)

        def run() -> int:
            with self._engine.begin() as connection:
                return connection.execute(statement).rowcount

        return self._guard(run) == 1

    @staticmethod
    def _check_key(key: str) -> str:
        if not isinstance(key, str) or not key or len(key) > 255:
            raise ConfigurationError("a connection key is a non-empty string of <= 255 chars")
        return key

    # -- public API -----------------------------------------------------------------

    def save(self, token: Token, key: str | None = None, *, describe: bool | None = None) -> str:
        """Store `token` (encrypted) under `key`, default ``str(token.hub_id)``; returns the key.

        Replaces what was stored under that key (a re-install): the connection becomes
        ``active`` again and a refresh in flight for the old token will not overwrite it.

        HubSpot's token response names the account (`hub_id`) but not the installing user's
        email or the account's domain. With `describe` (default: when the store has a
        client and the token lacks hub_id, hub_domain, user or scopes) the store asks
        HubSpot once (`OAuthClient.with_account_details`, reference §6) so `Connection`
        can show them; if that call fails the token is saved as it is (with a warning).
        Pass ``describe=False`` for a token that already went through
        `with_account_details`: HubSpot may leave some details out, and asking again
        would only repeat its answer.

        Raises `ConfigurationError` when the token has no hub_id and no key is given.
        """
        if not isinstance(token, Token):
            raise ConfigurationError("TokenStore.save needs a hubspot_oauth.Token")
        if describe is None:
            describe = protocol.needs_account_details(token)
        if describe and self.client is not None:
            token = self._described(token)
        if key is None:
            if token.hub_id is None:
                raise ConfigurationError("the token has no hub_id: pass save(token, key=...)")
            key = str(token.hub_id)
        key = self._check_key(key)
        now = _utcnow()
        values = self._token_columns(token)
        values.update(
            status=ACTIVE, status_reason=None, refreshing_until=None, refresh_owner=None,
            updated_at=now,
        )
        c = _connections.c
        epoch = self._cache_epoch

        def run() -> None:
            with self._engine.begin() as connection:
                changed = connection.execute(
                    sa.update(_connections)
                    .where(c.key == key)
                    .values(version=c.version + 1, **values)
                ).rowcount
                if changed:
                    return
                connection.execute(
                    sa.insert(_connections).values(
                        key=key, version=1, created_at=now, **values
                    )
                )

        try:
            try:
                self._guard(run)
            except sa.exc.IntegrityError:
                # Another process inserted the same key at the same moment: update theirs.
                self._guard(run)
        finally:
            self._cache_written(key, epoch)  # the version is unknown here: drop
        return key

    def _described(self, token: Token) -> Token:
        """`token` with its account details from the client's one lookup; as it is when
        that fails: saving must not lose a token over details that are for display."""
        lookup = getattr(self.client, "with_account_details", None)
        introspect = getattr(self.client, "introspect", None)
        try:
            if callable(lookup):
                return lookup(token)
            if callable(introspect):  # a client of its own making, without the lookup
                return protocol.with_account_details(token, introspect(token.access_token))
        except HubSpotOAuthError as exc:
            logger.warning("could not look up the installing user of a token (%s); saving "
                           "it without", type(exc).__name__)
        return token

    def _token_columns(self, token: Token) -> dict[str, Any]:
        return {
            "hub_id": token.hub_id,
            "hub_domain": token.hub_domain,
            "user": token.user,
            "user_id": token.user_id,
            "scopes": " ".join(token.scopes),
            "expires_at": token.expires_at,
            "token_ciphertext": self._encrypt(token),
            "key_id": self._keys.primary_key_id,
        }

    def get(self, key: str) -> Token:
        """The stored token as saved (not refreshed). Raises `ConnectionNotFoundError`,
        `EncryptionKeyError`."""
        return self._decrypt(self._read(self._check_key(key)))

    def access_token(self, key: str) -> str:
        """An access token valid for at least `leeway` seconds on the store's clock,
        refreshing it (single-flight) when needed.

        Raises `ConnectionNotFoundError`, `ReauthorizationRequiredError` (connection ended;
        `.connection_key` is set), `RetryableError` (HubSpot or the database unavailable,
        stored token untouched), `EncryptionKeyError`, `ConfigurationError` (no client).
        """
        return self.valid_token(key).access_token

    def valid_token(self, key: str) -> Token:
        """Like `access_token`, but returns the whole `Token`."""
        key = self._check_key(key)
        cached = self._cached(key)
        if cached is not None:
            return cached
        epoch = self._cache_epoch
        row = self._read(key)
        if row.status != ACTIVE:
            raise self._stored_reauthorization_error(row)
        token = self._decrypt(row)
        if not self._due(token):
            self._cache_put(key, token, row.version, epoch)
            return token
        return self._refresh_single_flight(key, lambda r, t: self._due(t))

    def refresh(self, key: str, stale_access_token: str | None = None) -> Token:
        """Refresh now, whatever the expiry says (e.g. after HubSpot answered 401
        ``EXPIRED_AUTHENTICATION``, or when HubSpot's clock runs ahead of ours).

        Single-flight: concurrent calls share one refresh. With `stale_access_token`, the
        refresh happens only while the stored access token is still that one (otherwise
        another caller already refreshed and its token is returned). Returns the new
        `Token`; raises like `access_token`.
        """
        key = self._check_key(key)
        row = self._read(key)
        if row.status != ACTIVE:
            raise self._stored_reauthorization_error(row)
        seen_version = row.version
        if stale_access_token is None:
            return self._refresh_single_flight(key, lambda r, t: r.version == seen_version)
        return self._refresh_single_flight(
            key, lambda r, t: t.access_token == stale_access_token
        )

    def _due(self, token: Token) -> bool:
        return self._clock() >= self._due_at(token)

    def _due_at(self, token: Token) -> datetime:
        # A token living shorter than twice the leeway (e.g. a 60 s test token) is renewed
        # at half its life, or every call would refresh it.
        leeway = min(self.leeway, token.expires_in / 2) if token.expires_in > 0 else self.leeway
        return token.expires_at - timedelta(seconds=leeway)

    def _refresh_single_flight(
        self, key: str, needs_refresh: Callable[[_Row, Token], bool]
    ) -> Token:
        if self.client is None:
            raise ConfigurationError(
                "this TokenStore has no client: TokenStore(url, client=OAuthClient(...)) "
                "is needed to refresh tokens"
            )
        lock = self._lock_for(key)
        if not lock.acquire(timeout=self.refresh_wait):
            raise RefreshInProgressError(
                f"connection {key!r} is being refreshed by another thread; try again"
            )
        try:
            return self._refresh_locked(key, needs_refresh)
        finally:
            lock.release()

    def _refresh_locked(
        self, key: str, needs_refresh: Callable[[_Row, Token], bool]
    ) -> Token:
        c = _connections.c
        deadline = time.monotonic() + self.refresh_wait
        pause = 0.02
        while True:
            epoch = self._cache_epoch
            row = self._read(key)
            if row.status != ACTIVE:
                raise self._stored_reauthorization_error(row)
            token = self._decrypt(row)
            if not needs_refresh(row, token):
                self._cache_put(key, token, row.version, epoch)
                return token
            owner = uuid.uuid4().hex
            now = time.time()
            leased = self._update(
                (c.key == key)
                & (c.version == row.version)
                & (c.status == ACTIVE)
                & (c.refreshing_until.is_(None) | (c.refreshing_until < now)),
                refreshing_until=now + self.refresh_lease,
                refresh_owner=owner,
            )
            if leased:
                # Re-read what we now hold: the version guard means it is the row we
                # judged, but a key rotation may have re-encrypted it in between.
                held = self._read(key)
                if held.version == row.version and held.refresh_owner == owner:
                    outcome = self._refresh_with_lease(key, held, self._decrypt(held), owner)
                    if outcome is not None:
                        return outcome
                    pause = 0.02
                    continue
            if time.monotonic() > deadline:
                raise RefreshInProgressError(
                    f"connection {key!r} has been refreshing elsewhere for more than "
                    f"{self.refresh_wait:g} s; the stored token is unchanged, try again"
                )
            # Another process holds the lease: wait for its result (jitter spreads polls).
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 1.5, 0.25)

    def _refresh_with_lease(
        self, key: str, row: _Row, token: Token, owner: str
    ) -> Token | None:
        """Call HubSpot while holding the lease. Returns the new token, or None when the
        row changed under us and the caller should look again."""
        assert self.client is not None
        if not token.refresh_token:
            error = ReauthorizationRequiredError(
                f"connection {key!r} has no refresh token; send the user through the "
                f"install flow again",
                status_code=400,
                status="BAD_REFRESH_TOKEN",
            )
            return self._mark_needs_reauthorization(key, row, owner, error)
        started = self._clock()
        keeper = _LeaseKeeper(self, key, owner)
        keeper.start()
        try:
            return self._call_and_save(key, row, token, owner, started)
        finally:
            keeper.stop()

    def _call_and_save(
        self, key: str, row: _Row, token: Token, owner: str, started: datetime
    ) -> Token | None:
        c = _connections.c
        assert self.client is not None and token.refresh_token
        try:
            fresh = self.client.refresh(token.refresh_token)
        except ReauthorizationRequiredError as error:
            current = self._read(key)
            if current.version != row.version:
                # Someone else saved a newer token (rotated it, or a re-install): use it.
                return None
            return self._mark_needs_reauthorization(key, row, owner, error)
        except BaseException:
            # Transient or unexpected: keep the stored token, let the next caller retry.
            with contextlib.suppress(TokenStoreError):  # else the lease expires by itself
                self._update(
                    (c.key == key) & (c.refresh_owner == owner),
                    refreshing_until=None,
                    refresh_owner=None,
                )
            raise
        merged = Token(
            access_token=fresh.access_token,
            refresh_token=fresh.refresh_token or token.refresh_token,
            expires_in=fresh.expires_in,
            # Anchored on our clock at the moment we asked: never later than HubSpot's.
            expires_at=started + timedelta(seconds=fresh.expires_in),
            token_type=fresh.token_type,
            hub_id=fresh.hub_id if fresh.hub_id is not None else token.hub_id,
            user_id=fresh.user_id if fresh.user_id is not None else token.user_id,
            scopes=fresh.scopes or token.scopes,
            user=fresh.user or token.user,
            hub_domain=fresh.hub_domain or token.hub_domain,
        )
        values = self._token_columns(merged)
        # The version guard alone decides: even if our lease ran out and another process
        # took over, our answer is the newest HubSpot gave (with rotation, theirs fails).
        epoch = self._cache_epoch
        try:
            saved = self._save_refreshed(
                (c.key == key) & (c.version == row.version),
                version=row.version + 1,
                refreshing_until=None,
                refresh_owner=None,
                status=ACTIVE,
                status_reason=None,
                updated_at=_utcnow(),
                **values,
            )
        except BaseException:
            self._cache_written(key, epoch)
            raise
        self._cache_written(key, epoch, merged if saved else None, row.version + 1)
        if not saved:
            logger.info("connection %r changed during its refresh; using the stored one", key)
            return None
        logger.info("refreshed the access token of connection %r", key)
        return merged

    def _save_refreshed(self, where: Any, **values: Any) -> bool:
        """Write a refresh result, retrying a database outage for up to `refresh_lease`
        seconds: HubSpot may have rotated the refresh token, and the only copy of the new
        one is in this process's memory."""
        deadline = time.monotonic() + self.refresh_lease
        pause = 0.1
        while True:
            try:
                return self._update(where, **values)
            except StoreUnavailableError:
                if time.monotonic() + pause > deadline:
                    logger.error(
                        "could not save a refreshed token: the database stayed unavailable "
                        "for %.0f s", self.refresh_lease,
                    )
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def _mark_needs_reauthorization(
        self, key: str, row: _Row, owner: str, error: ReauthorizationRequiredError
    ) -> Token | None:
        c = _connections.c
        reason = {
            "status_code": error.status_code,
            "code": error.code,
            "message": error.message,
            "correlation_id": error.correlation_id,
        }
        # Only while we still hold the lease: if it ran out and another process took
        # over, that process may hold a rotated token and its verdict stands instead.
        epoch = self._cache_epoch
        try:
            marked = self._update(
                (c.key == key) & (c.version == row.version) & (c.refresh_owner == owner),
                version=row.version + 1,
                status=NEEDS_REAUTHORIZATION,
                status_reason=json.dumps(reason),
                refreshing_until=None,
                refresh_owner=None,
                updated_at=_utcnow(),
            )
        finally:
            self._cache_written(key, epoch)
        if not marked:
            return None
        error.connection_key = key
        logger.warning(
            "connection %r needs re-authorization (%s)", key, error.code or "refused"
        )
        if self.on_reauthorization_required is not None:
            try:
                self.on_reauthorization_required(key, error)
            except Exception:
                logger.exception("on_reauthorization_required hook failed for %r", key)
        raise error

    def _stored_reauthorization_error(self, row: _Row) -> ReauthorizationRequiredError:
        try:
            reason = json.loads(row.status_reason or "{}")
        except ValueError:
            reason = {}
        code = reason.get("code")
        said = ": ".join(str(p) for p in (code, reason.get("message")) if p)
        error = ReauthorizationRequiredError(
            f"connection {row.key!r} needs re-authorization"
            + (f" (HubSpot said {said})" if said else "")
            + ": send the user through the install flow again",
            status_code=int(reason.get("status_code") or 400),
            status=code,
            correlation_id=reason.get("correlation_id"),
        )
        error.connection_key = row.key
        return error

    def delete(self, key: str) -> bool:
        """Forget a connection (does not revoke it at HubSpot: use `OAuthClient.revoke`).
        Returns True when something was deleted."""
        key = self._check_key(key)
        statement = sa.delete(_connections).where(_connections.c.key == key)
        epoch = self._cache_epoch

        def run() -> int:
            with self._engine.begin() as connection:
                return connection.execute(statement).rowcount

        try:
            return bool(self._guard(run))
        finally:
            self._cache_written(key, epoch)

    def connections(self) -> list[Connection]:
        """Every stored connection, ordered by key (no secrets, nothing decrypted)."""
        c = _connections.c
        query = sa.select(
            c.key, c.hub_id, c.hub_domain, c.user, c.user_id, c.scopes, c.expires_at,
            c.status, c.updated_at, c.status_reason,
        ).order_by(c.key)

        def run() -> list[Any]:
            with self._engine.connect() as connection:
                return list(connection.execute(query))

        return [self._connection(found) for found in self._guard(run)]

    def connection(self, key: str) -> Connection:
        """One connection's facts. Raises `ConnectionNotFoundError`."""
        key = self._check_key(key)
        c = _connections.c
        query = sa.select(
            c.key, c.hub_id, c.hub_domain, c.user, c.user_id, c.scopes, c.expires_at,
            c.status, c.updated_at, c.status_reason,
        ).where(c.key == key)

        def run() -> Any:
            with self._engine.connect() as connection:
                return connection.execute(query).first()

        found = self._guard(run)
        if found is None:
            raise ConnectionNotFoundError(key)
        return self._connection(found)

    @staticmethod
    def _connection(found: Any) -> Connection:
        reason = None
        if found.status_reason:
            try:
                reason = json.loads(found.status_reason).get("code")
            except ValueError:
                reason = None
        return Connection(
            key=found.key,
            hub_id=found.hub_id,
            hub_domain=found.hub_domain,
            user=found.user,
            user_id=found.user_id,
            scopes=tuple(found.scopes.split()) if found.scopes else (),
            expires_at=found.expires_at,
            status=NEEDS_REAUTHORIZATION if found.status == NEEDS_REAUTHORIZATION else ACTIVE,
            updated_at=found.updated_at,
            status_reason=reason,
        )

    def rotate_keys(self) -> int:
        """Re-encrypt every row not yet under the first key of the ring; returns how many
        rows were rewritten. Raises `EncryptionKeyError` (and changes that row not) when a
        row cannot be decrypted with any key of the ring.

        Each row is rewritten by an UPDATE guarded by its `version` (a concurrent refresh
        wins and is already under the new key).
        """
        c = _connections.c
        primary = self._keys.primary_key_id

        def pending() -> list[Any]:
            with self._engine.connect() as connection:
                return list(
                    connection.execute(
                        sa.select(c.key, c.version, c.token_ciphertext).where(
                            c.key_id != primary
                        )
                    )
                )

        rewritten = 0
        for key, version, ciphertext in self._guard(pending):
            rotated = self._keys.rotate(ciphertext, what=f"connection {key!r}")
            epoch = self._cache_epoch
            try:
                if self._update(
                    (c.key == key) & (c.version == version) & (c.token_ciphertext == ciphertext),
                    token_ciphertext=rotated,
                    key_id=primary,
                ):
                    rewritten += 1
            finally:
                self._cache_written(key, epoch)
        return rewritten

    def auth(self, key: str) -> HubSpotAuth:
        """An `httpx.Auth` for this connection (sync and async clients): adds the bearer
        token from `access_token(key)` and, on 401 ``EXPIRED_AUTHENTICATION``, refreshes
        once through `refresh(key, stale_access_token=…)` and retries once."""
        from .auth import HubSpotAuth

        key = self._check_key(key)
        return HubSpotAuth.for_store(self, key)

    def hubspot_client(self, key: str, **options: Any) -> Any:
        """An official ``hubspot.HubSpot`` client (``pip install 'hubspot-oauth[sdk]'``)
        carrying an access token of this connection valid for at least `leeway` seconds.
        Make a new one per unit of work; `options` go to ``hubspot.HubSpot``.

        Raises `ConfigurationError` when the SDK is not installed, else like `access_token`.
        """
        try:
            import hubspot
        except ImportError:
            raise ConfigurationError(
                "the official HubSpot SDK is not installed: pip install 'hubspot-oauth[sdk]'"
            ) from None
        return hubspot.HubSpot(access_token=self.access_token(key), **options)
