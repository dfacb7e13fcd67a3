"""`LocalHubSpot`: the domain of the local HubSpot (apps, portals, users, installs, codes,
tokens, the clock, faults, stats), with no HTTP in it.

Grant rules and their sources:
* codes are single use, enforced by a conditional ``UPDATE … WHERE consumed_at IS NULL``
  (atomic across processes); a replayed code revokes every token it produced
  (RFC 6749 §4.1.2, §10.5);
* `redirect_uri` at the token step must equal the authorize request's (RFC 6749 §4.1.3);
* PKCE S256/plain (RFC 7636 §4.6); a verifier for a code without challenge is refused
  (RFC 9700 §4.8, setting `reject_unbound_code_verifier`);
* refresh tokens are bound to their client (RFC 6749 §10.4; HubSpot's "refresh token was
  not issued to this client"); rotation is a setting (reference §4.5: HubSpot returns the
  same refresh token; RFC 9700 §4.14.2 for `strict`);
* codes, tokens and client secrets are stored only as digests, passwords as argon2 hashes.

Errors of the token endpoints are `wire.OAuthError`s (HubSpot's `status` + RFC `error`).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..errors import ConfigurationError
from ..scopes import ALWAYS_GRANTED, split_scopes
from ..tokens import (
    looks_like_access_token,
    new_access_token,
    new_authorization_code,
    new_refresh_token,
)
from . import install as rules
from .clock import Clock
from .faults import Faults
from .models import (
    access_tokens,
    apps,
    authorization_codes,
    contacts,
    emulator_state,
    faults,
    installs,
    portal_users,
    portals,
    rate_windows,
    refresh_tokens,
    stats,
    users,
)
from .ratelimit import RateWindow, count_call, counted, counts_in_statement, hit, stats_shard
from .seed import INSTALL_ROLES, Seed, SeedError, default_seed, load_seed, sample_contacts
from .settings import ServerSettings
from .storage import (
    FastPathMiss,
    FastTransaction,
    HotStatement,
    InlineConnection,
    check_schema,
    current_revision,
    execute_hot,
    first_hot,
    make_engine,
    read,
    upgrade,
    write,
)
from .wire import HubSpotHTTPError, OAuthError

__all__ = ["AppRecord", "FaultPending", "LocalHubSpot", "TokenGrant", "UserRecord",
           "token_digest"]


class FaultPending(Exception):  # noqa: N818 - a signal, not an error
    """A fault is queued for the endpoint: take it (`Faults.take`) before answering."""


# Hot-path statements, built once (SQLAlchemy then reuses their compiled form).
_STATE = sa.select(emulator_state.c.clock_offset, emulator_state.c.generation).where(
    emulator_state.c.id == 1)
_STATE_AND_FAULTS = sa.select(
    emulator_state.c.clock_offset, emulator_state.c.generation,
    sa.exists().where(faults.c.endpoint == sa.bindparam("endpoint"), faults.c.remaining > 0)
    .label("pending"),
).where(emulator_state.c.id == 1)
# Refresh reads its refresh token under a row lock (PostgreSQL; SQLite's BEGIN IMMEDIATE
# already serializes): FOR SHARE when rotation is off, so refreshes of one token run in
# parallel while a revoke or uninstall waits for them (and they for it): no access token
# is ever minted from a refresh token that a committed revocation already covered.
# FOR UPDATE when rotating, as the row is then retired.
_RT_BY_DIGEST = (sa.select(refresh_tokens)
                 .where(refresh_tokens.c.token_digest == sa.bindparam("digest")))
_SELECT_RT_SHARE = _RT_BY_DIGEST.with_for_update(read=True)
_SELECT_RT = _RT_BY_DIGEST.with_for_update()
_SELECT_AT_GRANT = sa.select(
    access_tokens.c.app_id, access_tokens.c.hub_id, access_tokens.c.user_id,
    access_tokens.c.scopes, access_tokens.c.expires_at, access_tokens.c.revoked_at,
).where(access_tokens.c.token_digest == sa.bindparam("digest"))


def _lookup_statement(table: sa.Table) -> sa.Select:
    return (sa.select(table, users.c.email, portals.c.hub_domain, portals.c.hublet)
            .join(users, users.c.user_id == table.c.user_id, isouter=True)
            .join(portals, portals.c.hub_id == table.c.hub_id, isouter=True)
            .where(table.c.token_digest == sa.bindparam("digest")))


_LOOKUP = {"access_token": _lookup_statement(access_tokens),
           "refresh_token": _lookup_statement(refresh_tokens)}
# The same statements on the hot paths' driver cursor (`FastTransaction`).
_HOT_STATE = HotStatement(_STATE)
_HOT_STATE_AND_FAULTS = HotStatement(_STATE_AND_FAULTS)
_INSERT_AT_VALUES = sa.insert(access_tokens).values(
    {c.name: sa.bindparam(c.name) for c in access_tokens.c if c.name != "id"})
_HOT_INSERT_AT = HotStatement(_INSERT_AT_VALUES)
# The refresh's access token and its stats count: one statement on PostgreSQL.
_HOT_INSERT_AT_COUNTED = counted(_INSERT_AT_VALUES, "token", "refresh_token", "ok")
_HOT_SELECT_AT_GRANT = HotStatement(_SELECT_AT_GRANT)
# The refresh and introspection hot paths read the shared state (as `_STATE_AND_FAULTS`;
# `endpoint` None: no fault pending) and their token in one statement, one round trip
# on PostgreSQL instead of two. Refresh: no row when the token is unknown (FOR SHARE
# cannot lock the nullable side of an outer join); introspection: NULL token columns,
# and on PostgreSQL the call's stats count in the same statement (`counted`).
_HOT_STATE_AND_RT_SHARE = HotStatement(
    sa.select(*_STATE_AND_FAULTS.selected_columns, refresh_tokens)
    .select_from(emulator_state.join(
        refresh_tokens, refresh_tokens.c.token_digest == sa.bindparam("digest")))
    .where(emulator_state.c.id == 1).with_for_update(read=True, of=refresh_tokens))
_HOT_STATE_AND_AT = counted(
    sa.select(*_STATE_AND_FAULTS.selected_columns, access_tokens.c.app_id,
              access_tokens.c.hub_id, access_tokens.c.user_id, access_tokens.c.scopes,
              access_tokens.c.expires_at, access_tokens.c.revoked_at, users.c.email,
              portals.c.hub_domain, portals.c.hublet)
    .select_from(emulator_state
                 .outerjoin(access_tokens,
                            access_tokens.c.token_digest == sa.bindparam("digest"))
                 .outerjoin(users, users.c.user_id == access_tokens.c.user_id)
                 .outerjoin(portals, portals.c.hub_id == access_tokens.c.hub_id))
    .where(emulator_state.c.id == 1), "introspect", "", "ok")
# A counter is the sum of its shards (ratelimit.count_call).
_STATS_KEY = (stats.c.endpoint, stats.c.grant_type, stats.c.outcome)
_STATS_TOTALS = sa.select(*_STATS_KEY, sa.func.sum(stats.c.count).label("count")).group_by(
    *_STATS_KEY)
# The code exchange's statements. The code row is read FOR UPDATE (PostgreSQL; SQLite's
# BEGIN IMMEDIATE already serializes): by the general path with _HOT_SELECT_CODE, by the
# fast path with _HOT_STATE_AND_CODE below. Both consume it by the same conditional
# UPDATE (the single-use guarantee, across processes) and insert with _HOT_INSERT_RT.
_ac = authorization_codes
_HOT_SELECT_CODE = HotStatement(
    sa.select(_ac).where(_ac.c.token_digest == sa.bindparam("digest")).with_for_update())
_HOT_CONSUME_CODE = HotStatement(
    sa.update(_ac).where(_ac.c.id == sa.bindparam("code_id"), _ac.c.consumed_at.is_(None))
    .values(consumed_at=sa.bindparam("now"), family_id=sa.bindparam("family")))
# Its fast path reads the shared state and the code in one statement, as refresh does (no
# row when the code is unknown).
_HOT_STATE_AND_CODE = HotStatement(
    sa.select(*_STATE_AND_FAULTS.selected_columns, _ac)
    .select_from(emulator_state.join(_ac, _ac.c.token_digest == sa.bindparam("digest")))
    .where(emulator_state.c.id == 1).with_for_update(of=_ac))
_HOT_INSERT_RT = HotStatement(sa.insert(refresh_tokens).values(
    {c.name: sa.bindparam(c.name) for c in refresh_tokens.c if c.name != "id"})
    .returning(refresh_tokens.c.id))


def token_digest(value: str) -> str:
    """SHA-256 hex of a code or token: what the database stores and looks up."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _secret_digest(salt: str, secret: str) -> str:
    return hmac.new(salt.encode("ascii"), secret.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).hexdigest()


_hasher_lock = threading.Lock()
_hasher: Any = None


def _password_hasher() -> Any:
    # argon2id with OWASP's minimum (19 MiB, t=2): a local emulator, not a bank.
    global _hasher
    with _hasher_lock:
        if _hasher is None:
            from argon2 import PasswordHasher

            _hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        return _hasher


_DUMMY_HASH: str | None = None


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _password_hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check `password` against an argon2 hash; with no hash, burn the same time and fail
    (an unknown e-mail must not answer faster than a wrong password)."""
    global _DUMMY_HASH
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _password_hasher()
    if password_hash is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = hasher.hash(secrets.token_urlsafe(12))
        password_hash = _DUMMY_HASH
        password = password + "\x00unknown"
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class AppRecord:
    """A registered app (client). The client secret is only held as a salted digest."""

    app_id: int
    name: str
    description: str
    client_id: str
    secret_salt: str = dataclasses.field(repr=False)
    secret_digest: str = dataclasses.field(repr=False)
    redirect_urls: tuple[str, ...]
    scopes: tuple[str, ...]
    optional_scopes: tuple[str, ...]

    def secret_matches(self, secret: str) -> bool:
        """Constant-time check of a client secret (RFC 6749 §10.1)."""
        return hmac.compare_digest(_secret_digest(self.secret_salt, secret),
                                   self.secret_digest)

    def registration(self) -> rules.AppRegistration:
        """The view install.py's rules take."""
        return rules.AppRegistration(
            client_id=self.client_id, name=self.name, redirect_urls=self.redirect_urls,
            scopes=self.scopes, optional_scopes=self.optional_scopes,
            description=self.description, app_id=self.app_id)


@dataclasses.dataclass(frozen=True, slots=True)
class UserRecord:
    user_id: int
    email: str
    first_name: str = ""
    last_name: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a valid access token grants: its app, portal, user and scopes; `expires_at`
    epoch seconds (UTC)."""

    app_id: int
    hub_id: int
    user_id: int
    scopes: tuple[str, ...]
    expires_at: float

    def allows(self, required: tuple[str, ...] | None) -> bool:
        """True when `required` is None/empty or the grant holds any one of its scopes (an
        endpoint lists the scopes that each suffice: "One or more of the following scopes
        are required", reference §7.4)."""
        return not required or any(s in self.scopes for s in required)


def _bad_client_id(client_id: str) -> OAuthError:
    return OAuthError("invalid_client", "BAD_CLIENT_ID",
                      f"missing or unknown client_id: no app has client_id '{client_id[:100]}'")


_BAD_SECRET = OAuthError("invalid_client", "BAD_CLIENT_SECRET",
                         "invalid client_secret for this client_id")


def _fast_first(usable: bool, inline: bool,
                fast: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """`fast()` when `usable`, or None (also on its `FastPathMiss`) to take the general
    path; an `inline` caller cannot take that path, so it gets `FastPathMiss` instead."""
    if usable:
        try:
            return fast()
        except FastPathMiss:
            if inline:
                raise
    elif inline:
        raise FastPathMiss
    return None


def _bad_refresh(message: str = "missing or invalid refresh token") -> OAuthError:
    return OAuthError("invalid_grant", "BAD_REFRESH_TOKEN", message)


class LocalHubSpot:
    """The local HubSpot's domain. See docs/internals.md for the interface.

    **Attributes:** `settings`, `engine`, `clock` (`Clock`), `faults` (`Faults`), `seed`.
    Construction upgrades an empty database, refuses one whose schema is behind
    (`DatabaseSchemaError`), and seeds an unseeded one. Raises `SeedError` for a bad seed.
    """

    def __init__(self, settings: ServerSettings, *, engine: Engine | None = None) -> None:
        self.settings = settings
        self.seed: Seed = load_seed(settings.seed_file) if settings.seed_file else default_seed()
        self.engine = engine or make_engine(settings.resolved_database_url)
        if current_revision(self.engine) is None:
            upgrade(self.engine)
        check_schema(self.engine)
        self.clock = Clock(self.engine)
        self.faults = Faults(self.engine)
        self._apps_lock = threading.Lock()
        # Threads that may run database work at once (a pool of its own, so the authorize
        # pages' threads never wait behind it). Measured with the benchmarks' refresh load:
        # on SQLite 1-2 threads leave the CPU idle (each hand-off waits for a wake-up), 32
        # keep it busy; on PostgreSQL 8 overlap the round trips as well, and 2 processes
        # × 8 answered ~1.5× as many refreshes as 2 × 32 (more threads only added GIL
        # hand-offs and busy backends). The PostgreSQL pool keeps a connection for each.
        self.db_threads = 8 if self.engine.dialect.name == "postgresql" else 32
        self._limiter: Any = None
        self._apps_generation = -1
        self._apps_by_client: dict[str, AppRecord] = {}
        self._apps_by_id: dict[int, AppRecord] = {}
        self._hublets: dict[int, str] = {}
        self._inline = InlineConnection()
        self._ensure_seeded()

    async def call(self, func: Any, *args: Any) -> Any:
        """Run blocking database work `func(*args)` in a worker thread, at most
        `db_threads` at once (an AnyIO capacity limiter of its own)."""
        import anyio.to_thread

        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.db_threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    # -- seed, reset ---------------------------------------------------------------------

    def _ensure_seeded(self) -> None:
        fingerprint = self.seed.fingerprint()
        with write(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7301202612)"))
            row = conn.execute(sa.select(emulator_state.c.seed_fingerprint)).first()
            if row is None:
                conn.execute(sa.insert(emulator_state).values(
                    id=1, clock_offset=0.0, generation=0, seed_fingerprint=fingerprint))
                self._apply_seed(conn)
            elif row.seed_fingerprint is None:  # seeded before fingerprints existed
                conn.execute(sa.update(emulator_state).values(seed_fingerprint=fingerprint))
            elif row.seed_fingerprint != fingerprint:
                where = self.engine.url.render_as_string(hide_password=True)
                raise SeedError(
                    f"database {where} holds the data of another seed than "
                    f"{self.seed.source}; use another --database-url for this seed (or "
                    "delete that database to start it over)")

    def _apply_seed(self, conn: Connection) -> None:
        seed = self.seed
        now = time.time()
        password_hashes: dict[str, str] = {}
        for app in seed.apps:
            salt = secrets.token_hex(16)
            conn.execute(sa.insert(apps).values(
                app_id=app.app_id, name=app.name, description=app.description,
                client_id=app.client_id, client_secret_salt=salt,
                client_secret_digest=_secret_digest(salt, app.client_secret),
                redirect_urls=list(app.redirect_urls), scopes=list(app.scopes),
                optional_scopes=list(app.optional_scopes)))
        for portal in seed.portals:
            conn.execute(sa.insert(portals).values(
                hub_id=portal.hub_id, hub_domain=portal.hub_domain,
                hublet=portal.hublet or self.settings.hublet,
                name=portal.name,
                available_scopes=None if portal.available_scopes is None
                else list(portal.available_scopes),
                missing_scopes=list(portal.missing_scopes)))
            rows = [{"hub_id": portal.hub_id, "properties": props, "created_at": now,
                     "updated_at": now} for props in sample_contacts(portal)]
            if rows:
                conn.execute(sa.insert(contacts), rows)
        for user in seed.users:
            key = hashlib.sha256(user.password.encode()).hexdigest()
            if key not in password_hashes:
                password_hashes[key] = hash_password(user.password)
            conn.execute(sa.insert(users).values(
                user_id=user.user_id, email=user.email.lower(),
                password_hash=password_hashes[key], first_name=user.first_name,
                last_name=user.last_name))
            for hub_id, role in user.roles.items():
                conn.execute(sa.insert(portal_users).values(hub_id=hub_id,
                                                            user_id=user.user_id, role=role))
        extra = [{"hub_id": c.hub_id, "properties": c.properties, "created_at": now,
                  "updated_at": now} for c in seed.contacts]
        if extra:
            conn.execute(sa.insert(contacts), extra)
        self._bump_generation(conn)

    def reset(self) -> None:
        """Back to the seed: every app, install, code and token gone, clock at real time,
        stats at zero, fault queue empty."""
        with write(self.engine) as conn:
            for table in (access_tokens, refresh_tokens, authorization_codes, installs,
                          contacts, portal_users, users, portals, apps, faults, stats,
                          rate_windows):
                conn.execute(sa.delete(table))
            conn.execute(sa.update(emulator_state).where(emulator_state.c.id == 1)
                         .values(clock_offset=0.0, seed_fingerprint=self.seed.fingerprint()))
            self._apply_seed(conn)

    def close(self) -> None:
        """Release the database connections."""
        self._inline.close()
        self.engine.dispose()

    # -- apps ----------------------------------------------------------------------------

    @staticmethod
    def _bump_generation(conn: Connection) -> None:
        conn.execute(sa.update(emulator_state).where(emulator_state.c.id == 1)
                     .values(generation=emulator_state.c.generation + 1))

    def _state(self, conn: Connection, fault_endpoint: str | None = None) -> float:
        """Read the shared state row once per operation: returns emulator now (epoch s) and
        refreshes the app cache when another process changed the apps. With
        `fault_endpoint`, raise `FaultPending` when a fault is queued for it (the same
        query, so the common no-fault case costs no extra round trip)."""
        if fault_endpoint is None:
            row = conn.execute(_STATE).one()
        else:
            row = conn.execute(_STATE_AND_FAULTS, {"endpoint": fault_endpoint}).one()
            if row.pending:
                raise FaultPending(fault_endpoint)
        if row.generation != self._apps_generation:
            self._load_apps(conn, row.generation)
        return time.time() + row.clock_offset

    def _fast_state(self, tx: FastTransaction, fault_endpoint: str | None) -> float:
        """`_state` on a hot path: FastPathMiss when the apps changed (the general code
        reloads them)."""
        if fault_endpoint is None:
            row = tx.first(_HOT_STATE)
        else:
            row = tx.first(_HOT_STATE_AND_FAULTS, {"endpoint": fault_endpoint})
        return self._fast_now(row, fault_endpoint)

    def _fast_now(self, row: Any, fault_endpoint: str | None) -> float:
        """Emulator now from a hot path's state columns (clock_offset, generation,
        pending); FaultPending or FastPathMiss as `_fast_state` says."""
        if fault_endpoint is not None and row.pending:
            raise FaultPending(fault_endpoint)
        if row.generation != self._apps_generation:
            raise FastPathMiss
        return time.time() + row.clock_offset

    def _fast_transaction(self, inline: bool) -> FastTransaction:
        """A hot path's transaction: on a pooled connection, or with `inline` on the
        calling (event loop) thread's own connection, never waiting (`InlineConnection`)."""
        if inline:
            return self._inline.transaction(self.engine)
        return FastTransaction(self.engine)

    def _fast_client(self, client_id: str, client_secret: str) -> AppRecord:
        app = self._apps_by_client.get(client_id)
        if app is None or not app.secret_matches(client_secret):
            raise FastPathMiss
        return app

    def _hublet(self, hub_id: int) -> str:
        """The data centre of portal `hub_id`: the prefix of its codes and refresh tokens
        (reference §5, ``na1-…``; ``eu1-`` by analogy, UNCONFIRMED)."""
        return self._hublets.get(hub_id) or self.settings.hublet

    def _load_apps(self, conn: Connection, generation: int) -> None:
        self._hublets = dict(conn.execute(sa.select(portals.c.hub_id, portals.c.hublet)).all())
        rows = conn.execute(sa.select(apps)).all()
        by_client = {}
        by_id = {}
        for r in rows:
            record = AppRecord(
                app_id=r.app_id, name=r.name, description=r.description or "",
                client_id=r.client_id, secret_salt=r.client_secret_salt,
                secret_digest=r.client_secret_digest,
                redirect_urls=tuple(r.redirect_urls), scopes=tuple(r.scopes),
                optional_scopes=tuple(r.optional_scopes))
            by_client[r.client_id] = record
            by_id[r.app_id] = record
        with self._apps_lock:
            self._apps_by_client = by_client
            self._apps_by_id = by_id
            self._apps_generation = generation

    def app(self, client_id: str) -> AppRecord | None:
        """The app with `client_id`, or None."""
        with read(self.engine) as conn:
            self._state(conn)
        return self._apps_by_client.get(client_id)

    def app_registration(self, client_id: str | None) -> rules.AppRegistration | None:
        """install.py's view of the app with `client_id`, or None when unknown."""
        record = self.app(client_id) if client_id else None
        return record.registration() if record else None

    def list_apps(self) -> list[AppRecord]:
        """Every registered app, by app_id."""
        with read(self.engine) as conn:
            self._state(conn)
        return sorted(self._apps_by_id.values(), key=lambda a: a.app_id)

    def create_app_registration(
        self,
        *,
        name: str,
        redirect_urls: Sequence[str],
        scopes: Sequence[str] | str,
        optional_scopes: Sequence[str] | str = (),
        description: str = "",
    ) -> tuple[int, str, str]:
        """Register a new app; returns ``(app_id, client_id, client_secret)`` (the secret
        is returned once, stored only as a digest). Raises `ConfigurationError` for no or
        disallowed redirect URLs (https, or http only on localhost; reference §2.4)."""
        urls = [u for u in redirect_urls if u]
        if not urls:
            raise ConfigurationError("an app needs at least one redirect URL")
        for url in urls:
            try:
                rules.validate_redirect_url(url)
            except rules.InstallError as exc:
                raise ConfigurationError(exc.message) from None
        required = list(split_scopes(scopes))
        optional = [s for s in split_scopes(optional_scopes) if s not in required]
        client_id = str(uuid.uuid4())
        client_secret = str(uuid.uuid4())
        salt = secrets.token_hex(16)
        with write(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("LOCK TABLE apps IN EXCLUSIVE MODE"))
            app_id = (conn.execute(sa.select(sa.func.max(apps.c.app_id))).scalar() or 0) + 1
            conn.execute(sa.insert(apps).values(
                app_id=app_id, name=name, description=description, client_id=client_id,
                client_secret_salt=salt, client_secret_digest=_secret_digest(salt, client_secret),
                redirect_urls=urls, scopes=required, optional_scopes=optional))
            self._bump_generation(conn)
        return app_id, client_id, client_secret

    # -- users, portals ------------------------------------------------------------------

    def authenticate_user(self, email: str, password: str) -> UserRecord | None:
        """The user whose e-mail and password these are, or None (argon2; the same work
        for an unknown e-mail as for a wrong password)."""
        with read(self.engine) as conn:
            row = conn.execute(sa.select(users).where(users.c.email == email.strip().lower())
                               ).first()
        if not verify_password(row.password_hash if row else None, password) or row is None:
            return None
        return UserRecord(row.user_id, row.email, row.first_name, row.last_name)

    def user(self, email: str) -> UserRecord | None:
        """The user with `email` (case-insensitive), or None."""
        with read(self.engine) as conn:
            row = conn.execute(sa.select(users).where(users.c.email == email.strip().lower())
                               ).first()
        return UserRecord(row.user_id, row.email, row.first_name, row.last_name) if row else None

    def portals_for(self, email: str) -> list[rules.PortalAccess]:
        """The portals the user belongs to, as install.py's `PortalAccess`, by hub_id."""
        with read(self.engine) as conn:
            rows = conn.execute(
                sa.select(portals, portal_users.c.role)
                .join(portal_users, portal_users.c.hub_id == portals.c.hub_id)
                .join(users, users.c.user_id == portal_users.c.user_id)
                .where(users.c.email == email.strip().lower())
                .order_by(portals.c.hub_id)).all()
        return [_portal_access(r) for r in rows]

    def portal_access(self, email: str, hub_id: int) -> rules.PortalAccess | None:
        """`hub_id` as the user sees it, or None when the user is not in that portal."""
        for portal in self.portals_for(email):
            if portal.hub_id == hub_id:
                return portal
        return None

    # -- authorization codes ----------------------------------------------------------------

    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        user_email: str,
        hub_id: int | None = None,
        scopes: Iterable[str] | str | None = None,
        optional_scopes: Iterable[str] | str = (),
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        """Approve an authorize request as `user_email` with no pages, as the consent page
        would; returns the code. `hub_id` None: the user's first portal where they may
        install. Runs install.py's checks (client, redirect URI, scopes, PKCE, portal
        products, the user's role); raises `InstallError` like the pages show it."""
        registration = self.app_registration(client_id)
        request = rules.AuthorizeRequest(
            client_id=client_id, redirect_uri=redirect_uri,
            scopes=None if scopes is None else tuple(split_scopes(scopes)),
            optional_scopes=tuple(split_scopes(optional_scopes)),
            code_challenge=code_challenge, code_challenge_method=code_challenge_method,
            account_id=hub_id)
        scope_request = rules.check_authorize_request(registration, request)
        if hub_id is None:
            candidates = self.portals_for(user_email)
            portal = next((p for p in candidates if p.may_install),
                          candidates[0] if candidates else None)
        else:
            portal = self.portal_access(user_email, hub_id)
        grant = rules.check_install(scope_request, portal)
        user = self.user(user_email)
        assert user is not None  # check_install refused a user with no portal
        return self.create_code(
            client_id=client_id, hub_id=grant.hub_id, user_id=user.user_id,
            redirect_uri=redirect_uri, scopes=grant.scopes, code_challenge=code_challenge,
            code_challenge_method=code_challenge_method)

    def create_code(
        self,
        *,
        client_id: str,
        hub_id: int,
        user_id: int,
        redirect_uri: str,
        scopes: Sequence[str],
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        """Store a code for an install the user just granted (after install.py's checks)
        and record the install; returns the code (stored only as its digest). Expires
        after `settings.code_ttl` seconds of emulator time. Raises `ConfigurationError`
        for an unknown client_id."""
        granted = list(dict.fromkeys([ALWAYS_GRANTED, *scopes]))
        method = None
        if code_challenge is not None:
            method = code_challenge_method or "plain"  # RFC 7636 §4.3
        with write(self.engine) as conn:
            now = self._state(conn)
            app = self._apps_by_client.get(client_id)
            if app is None:
                raise ConfigurationError(f"no app has client_id {client_id!r}")
            code = new_authorization_code(self._hublet(hub_id))
            conn.execute(sa.insert(authorization_codes).values(
                token_digest=token_digest(code), app_id=app.app_id, hub_id=hub_id,
                user_id=user_id, redirect_uri=redirect_uri, scopes=granted,
                code_challenge=code_challenge, code_challenge_method=method,
                created_at=now, expires_at=now + self.settings.code_ttl))
            self._record_install(conn, app.app_id, hub_id, user_id, granted, now)
        return code

    @staticmethod
    def _record_install(conn: Connection, app_id: int, hub_id: int, user_id: int,
                        scopes: list[str], now: float) -> None:
        done = conn.execute(sa.update(installs).where(
            installs.c.app_id == app_id, installs.c.hub_id == hub_id).values(
            user_id=user_id, scopes=scopes, installed_at=now, uninstalled_at=None)).rowcount
        if not done:
            conn.execute(sa.insert(installs).values(
                app_id=app_id, hub_id=hub_id, user_id=user_id, scopes=scopes,
                installed_at=now, uninstalled_at=None))

    # -- the token endpoint ---------------------------------------------------------------

    def _client(self, client_id: str, client_secret: str) -> AppRecord:
        app = self._apps_by_client.get(client_id)
        if app is None:
            raise _bad_client_id(client_id)
        if not app.secret_matches(client_secret):
            raise _BAD_SECRET
        return app

    def _run(self, endpoint: str, grant_type: str, body: Any,
             fault_endpoint: str | None = None) -> dict:
        """Run `body(conn, now)` in one write transaction that also counts the call; an
        `OAuthError` it raises is answered after its writes (e.g. a replay's revocation)
        are committed. With `fault_endpoint`, raises `FaultPending` (before any write)
        when a fault is queued for that endpoint: the HTTP layer then takes it."""
        failure: OAuthError | None = None
        with write(self.engine) as conn:
            now = self._state(conn, fault_endpoint)
            try:
                result = body(conn, now)
            except OAuthError as exc:
                failure = exc
                result = {}
            count_call(conn, endpoint, grant_type, "error" if failure else "ok")
        if failure is not None:
            raise failure
        return result

    def count(self, endpoint: str, grant_type: str = "", outcome: str = "error") -> None:
        """Count a call the HTTP layer answered itself (bad input, a fault)."""
        with write(self.engine) as conn:
            count_call(conn, endpoint, grant_type, outcome)

    def exchange_code(
        self,
        *,
        client_id: str,
        client_secret: str,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        fault_endpoint: str | None = None,
        inline: bool = False,
    ) -> dict[str, Any]:
        """The ``authorization_code`` grant (RFC 6749 §4.1.3). Returns the token payload
        (reference §4.2, without `token_use`). Raises `OAuthError`: BAD_CLIENT_ID,
        BAD_CLIENT_SECRET, BAD_AUTH_CODE (unknown, another client's, already used),
        EXPIRED_AUTH_CODE, BAD_REDIRECT_URI, BAD_CODE_VERIFIER. With `inline`, only the
        common case, without waiting for the database; `FastPathMiss` for anything else
        (call again without `inline`, from a worker thread)."""
        digest = token_digest(code)
        fast = _fast_first(True, inline, lambda: self._exchange_fast(
            client_id, client_secret, digest, redirect_uri, code_verifier, fault_endpoint,
            inline))
        if fast is not None:
            return fast

        def body(conn: Connection, now: float) -> dict[str, Any]:
            app = self._client(client_id, client_secret)
            row = first_hot(conn, _HOT_SELECT_CODE, {"digest": digest})
            if row is None:
                raise OAuthError("invalid_grant", "BAD_AUTH_CODE", "missing or unknown auth code")
            if row.app_id != app.app_id:
                raise OAuthError("invalid_grant", "BAD_AUTH_CODE",
                                 "auth code was not issued to this client")
            if row.consumed_at is not None:
                self._revoke_family(conn, row.family_id, now, "code_replayed")
                raise _code_replayed()
            self._check_code(row, now, redirect_uri, code_verifier)
            family = str(uuid.uuid4())
            if not self._consume_code(conn, row.id, family, now):
                # Another request redeemed it between our read and this write.
                c = authorization_codes
                winner = conn.execute(sa.select(c.c.family_id).where(c.c.id == row.id)).scalar()
                self._revoke_family(conn, winner, now, "code_replayed")
                raise _code_replayed()
            return self._issue_for_code(conn, row, family, now)

        return self._run("token", "authorization_code", body, fault_endpoint)

    def _exchange_fast(self, client_id: str, client_secret: str, digest: str,
                       redirect_uri: str, code_verifier: str | None,
                       fault_endpoint: str | None, inline: bool = False) -> dict[str, Any]:
        """`exchange_code`'s common case: this client's unused, unexpired code, its
        redirect_uri and (with a challenge) a matching verifier. The same checks and writes
        in one transaction (the code row locked FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE
        on SQLite), run by `FastTransaction`; anything else (a refusal, a replay, a lost
        race, a queued fault) is `FastPathMiss` or `FaultPending`, and the general path
        answers (and, for a replay, revokes)."""
        with self._fast_transaction(inline) as tx:
            row = tx.first(_HOT_STATE_AND_CODE, {"endpoint": fault_endpoint, "digest": digest})
            if row is None:
                raise FastPathMiss
            now = self._fast_now(row, fault_endpoint)
            app = self._fast_client(client_id, client_secret)
            if row.app_id != app.app_id or row.consumed_at is not None:
                raise FastPathMiss
            try:
                self._check_code(row, now, redirect_uri, code_verifier)
            except OAuthError:
                raise FastPathMiss from None
            family = str(uuid.uuid4())
            if not self._consume_code(tx, row.id, family, now):
                raise FastPathMiss
            payload = self._issue_for_code(tx, row, family, now)
            count_call(tx, "token", "authorization_code", "ok")
        return payload

    def _check_code(self, row: Any, now: float, redirect_uri: str,
                    code_verifier: str | None) -> None:
        """An unused code's remaining rules: unexpired, the authorize request's
        redirect_uri (RFC 6749 §4.1.3), PKCE. Raises `OAuthError`."""
        if now >= row.expires_at:
            raise OAuthError("invalid_grant", "EXPIRED_AUTH_CODE",
                             f"auth code expired {_ago(now - row.expires_at)} ago")
        if redirect_uri != row.redirect_uri:
            raise OAuthError("invalid_grant", "BAD_REDIRECT_URI",
                             "redirect_uri does not match the redirect_uri used when "
                             "initiating the authorization (RFC 6749 §4.1.3)")
        self._check_verifier(row, code_verifier)

    @staticmethod
    def _consume_code(db: Connection | FastTransaction, code_id: int, family: str,
                      now: float) -> bool:
        """Mark the code used by token family `family`; False when another request
        already did (the conditional UPDATE that makes codes single-use)."""
        return execute_hot(db, _HOT_CONSUME_CODE,
                            {"code_id": code_id, "now": now, "family": family}).rowcount == 1

    def _issue_for_code(self, db: Connection | FastTransaction, row: Any, family: str,
                        now: float) -> dict[str, Any]:
        """A consumed code's refresh and access tokens (token family `family`); returns
        the token payload."""
        scopes = list(row.scopes)
        refresh = new_refresh_token(self._hublet(row.hub_id))
        rt_id = first_hot(db, _HOT_INSERT_RT, {
            "token_digest": token_digest(refresh), "family_id": family, "app_id": row.app_id,
            "hub_id": row.hub_id, "user_id": row.user_id, "scopes": scopes,
            "created_at": now, "retired_at": None, "revoked_at": None,
            "revoked_reason": None}).id
        access = self._insert_access(db, family, rt_id, row.app_id, row.hub_id, row.user_id,
                                     scopes, now)
        return self._payload(access, refresh, row.hub_id, row.user_id, scopes)

    def _check_verifier(self, row: Any, verifier: str | None) -> None:
        if row.code_challenge:
            if not verifier:
                raise OAuthError("invalid_grant", "BAD_CODE_VERIFIER",
                                 "code_verifier is required: the authorization request "
                                 "had a code_challenge (RFC 7636 §4.5)")
            if not rules.code_challenge_matches(verifier, row.code_challenge,
                                                row.code_challenge_method):
                raise OAuthError("invalid_grant", "BAD_CODE_VERIFIER",
                                 "code_verifier does not match the code_challenge "
                                 "(RFC 7636 §4.6)")
        elif verifier and self.settings.reject_unbound_code_verifier:
            raise OAuthError("invalid_grant", "BAD_CODE_VERIFIER",
                             "code_verifier was sent but the authorization request had no "
                             "code_challenge (RFC 9700 §4.8)")

    def _insert_access(self, db: Connection | FastTransaction, family: str,
                       rt_id: int | None, app_id: int, hub_id: int, user_id: int,
                       scopes: list[str], now: float,
                       hot: HotStatement = _HOT_INSERT_AT) -> str:
        """Store a new access token of token family `family`; returns the token. `hot`:
        the INSERT to run (`_HOT_INSERT_AT_COUNTED` also counts a refresh)."""
        access = new_access_token()
        execute_hot(db, hot, {
            "token_digest": token_digest(access), "family_id": family,
            "refresh_token_id": rt_id, "app_id": app_id, "hub_id": hub_id, "user_id": user_id,
            "scopes": scopes, "issued_at": now,
            "expires_at": now + self.settings.access_token_ttl, "revoked_at": None,
            "stats_shard": stats_shard()})
        return access

    def _payload(self, access: str, refresh: str, hub_id: int, user_id: int,
                 scopes: list[str]) -> dict[str, Any]:
        return {"token_type": "bearer", "refresh_token": refresh, "access_token": access,
                "expires_in": self.settings.access_token_ttl, "hub_id": hub_id,
                "user_id": user_id, "scopes": scopes}

    @staticmethod
    def _revoke_family(conn: Connection, family: str | None, now: float, reason: str) -> None:
        if not family:
            return
        conn.execute(sa.update(refresh_tokens).where(
            refresh_tokens.c.family_id == family, refresh_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason))
        conn.execute(sa.update(access_tokens).where(
            access_tokens.c.family_id == family, access_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now))

    def refresh(self, *, client_id: str, client_secret: str, refresh_token: str,
                fault_endpoint: str | None = None, inline: bool = False) -> dict[str, Any]:
        """The ``refresh_token`` grant (RFC 6749 §6). Returns the token payload; the same
        refresh token unless rotation is on. Raises `OAuthError`: BAD_CLIENT_ID,
        BAD_CLIENT_SECRET, BAD_REFRESH_TOKEN (unknown, an access token, deleted, revoked,
        uninstalled, rotated away, or issued to another client). With `inline`, only the
        common case, without waiting for the database; `FastPathMiss` for anything else
        (call again without `inline`, from a worker thread)."""
        rotation = self.settings.refresh_token_rotation
        digest = token_digest(refresh_token)
        fast = _fast_first(rotation == "off", inline, lambda: self._refresh_fast(
            client_id, client_secret, digest, refresh_token, fault_endpoint, inline))
        if fast is not None:
            return fast

        def body(conn: Connection, now: float) -> dict[str, Any]:
            app = self._client(client_id, client_secret)
            r = refresh_tokens
            row = conn.execute(_SELECT_RT if rotation != "off" else _SELECT_RT_SHARE,
                               {"digest": digest}).first()
            if row is None:
                if looks_like_access_token(refresh_token):
                    raise _bad_refresh(
                        "missing or invalid refresh token: the value sent as refresh_token "
                        "is an access token (it starts with 'C'); send the refresh_token "
                        "of the token response instead")
                raise _bad_refresh()
            if row.app_id != app.app_id:
                raise _bad_refresh("refresh token was not issued to this client")
            if row.revoked_at is not None:
                raise _bad_refresh(_REVOKED_MESSAGES.get(row.revoked_reason or "",
                                                         _REVOKED_MESSAGES[""]))
            if row.retired_at is not None:
                return self._reused(conn, row, now, rotation)
            scopes = list(row.scopes)
            new_refresh = refresh_token
            rt_id = row.id
            if rotation != "off":
                won = conn.execute(sa.update(r).where(
                    r.c.id == row.id, r.c.retired_at.is_(None), r.c.revoked_at.is_(None))
                    .values(retired_at=now)).rowcount
                if won != 1:
                    return self._reused(conn, row, now, rotation)
                new_refresh = new_refresh_token(self._hublet(row.hub_id))
                rt_id = conn.execute(sa.insert(r).values(
                    token_digest=token_digest(new_refresh), family_id=row.family_id,
                    app_id=row.app_id, hub_id=row.hub_id, user_id=row.user_id,
                    scopes=scopes, created_at=now).returning(r.c.id)).scalar_one()
            access = self._insert_access(conn, row.family_id, rt_id, row.app_id, row.hub_id,
                                         row.user_id, scopes, now)
            return self._payload(access, new_refresh, row.hub_id, row.user_id, scopes)

        return self._run("token", "refresh_token", body, fault_endpoint)

    def _refresh_fast(self, client_id: str, client_secret: str, digest: str,
                      refresh_token: str, fault_endpoint: str | None,
                      inline: bool = False) -> dict[str, Any]:
        """`refresh`'s common case without rotation: a live refresh token of this client.
        The same statements in the same transaction (FOR SHARE on PostgreSQL, BEGIN
        IMMEDIATE on SQLite), run by `FastTransaction`; anything else is `FastPathMiss`."""
        with self._fast_transaction(inline) as tx:
            row = tx.first(_HOT_STATE_AND_RT_SHARE,
                           {"endpoint": fault_endpoint, "digest": digest})
            if row is None:
                raise FastPathMiss
            now = self._fast_now(row, fault_endpoint)
            app = self._fast_client(client_id, client_secret)
            if (row.app_id != app.app_id or row.revoked_at is not None
                    or row.retired_at is not None):
                raise FastPathMiss
            scopes = list(row.scopes)
            access = self._insert_access(tx, row.family_id, row.id, row.app_id, row.hub_id,
                                         row.user_id, scopes, now, _HOT_INSERT_AT_COUNTED)
            if not counts_in_statement(tx):
                count_call(tx, "token", "refresh_token", "ok")
        return self._payload(access, refresh_token, row.hub_id, row.user_id, scopes)

    def _reused(self, conn: Connection, row: Any, now: float, rotation: str) -> dict:
        if rotation == "strict":
            self._revoke_family(conn, row.family_id, now, "reuse_detected")
            raise _bad_refresh(
                "refresh token was already used and replaced; as a retired refresh token "
                "was reused, every token of this authorization has been revoked "
                "(RFC 9700 §4.14.2)")
        raise _bad_refresh("refresh token was already used and replaced by a newer one "
                           "(refresh token rotation)")

    # -- metadata, introspection, revocation ----------------------------------------------

    def _lookup(self, conn: Connection, token: str, kind: str) -> Any:
        return conn.execute(_LOOKUP[kind], {"digest": token_digest(token)}).first()

    def access_token_info(self, token: str) -> dict[str, Any] | None:
        """v1 GET /oauth/v1/access-tokens/{token} (reference §6.1): the metadata of a
        usable access token, `expires_in` counting down; None when it is unknown, revoked
        or expired (UNCONFIRMED what HubSpot answers then; the HTTP layer says 404)."""
        def body(conn: Connection, now: float) -> dict[str, Any]:
            row = self._lookup(conn, token, "access_token")
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                raise OAuthError("invalid_grant", "BAD_ACCESS_TOKEN", "not found")
            return self._access_info(row, token, now)

        try:
            return self._run("metadata", "access_token", body)
        except OAuthError:
            return None

    def _access_info(self, row: Any, token: str, now: float) -> dict[str, Any]:
        app = self._apps_by_id.get(row.app_id)
        return {
            "token": token,
            "user": row.email or "",
            "hub_domain": row.hub_domain or "",
            "scopes": list(row.scopes),
            "hub_id": row.hub_id,
            "app_id": row.app_id,
            "client_id": app.client_id if app else "",
            "expires_in": max(0, int(row.expires_at - now)),
            "user_id": row.user_id,
            "token_type": "access",
            "is_private_distribution": False,
            "signed_access_token": _signed_access_token(row, token),
        }

    def refresh_token_info(self, token: str) -> dict[str, Any] | None:
        """v1 GET /oauth/v1/refresh-tokens/{token} (reference §6.2), or None when unknown,
        deleted, revoked or rotated away."""
        def body(conn: Connection, now: float) -> dict[str, Any]:
            row = self._lookup(conn, token, "refresh_token")
            if row is None or row.revoked_at is not None or row.retired_at is not None:
                raise _bad_refresh()
            return self._refresh_info(row, token)

        try:
            return self._run("metadata", "refresh_token", body)
        except OAuthError:
            return None

    def _refresh_info(self, row: Any, token: str) -> dict[str, Any]:
        app = self._apps_by_id.get(row.app_id)
        return {
            "token": token,
            "user": row.email or "",
            "hub_domain": row.hub_domain or "",
            "scopes": list(row.scopes),
            "hub_id": row.hub_id,
            "client_id": app.client_id if app else "",
            "user_id": row.user_id,
            "token_type": "refresh",
        }

    def delete_refresh_token(self, token: str) -> bool:
        """v1 DELETE /oauth/v1/refresh-tokens/{token}: delete that refresh token only;
        access tokens already issued keep working until they expire, the app stays
        installed (reference §4.5). Returns False when it was unknown or already gone."""
        def body(conn: Connection, now: float) -> dict[str, Any]:
            r = refresh_tokens
            done = conn.execute(sa.update(r).where(
                r.c.token_digest == token_digest(token), r.c.revoked_at.is_(None),
                r.c.retired_at.is_(None)).values(revoked_at=now, revoked_reason="deleted")
            ).rowcount
            if not done:
                raise _bad_refresh()
            return {}

        try:
            self._run("revoke", "refresh_token", body)
        except OAuthError:
            return False
        return True

    def introspect(self, *, client_id: str, client_secret: str, token: str,
                   token_type_hint: str | None = None,
                   fault_endpoint: str | None = None, inline: bool = False) -> dict[str, Any]:
        """POST /oauth/{v3,2026-03,2026-09}/token/introspect (reference §6.3, RFC 7662). Returns
        the token's info with ``active: true``, or ``{"active": false}`` for a token that
        is unknown, expired, revoked, rotated away or issued to another client. Raises
        `OAuthError` for bad client credentials. `inline`: as `refresh` says."""
        order = ("refresh_token", "access_token") if token_type_hint == "refresh_token" \
            else ("access_token", "refresh_token")
        fast = _fast_first(order[0] == "access_token", inline, lambda: self._introspect_fast(
            client_id, client_secret, token, fault_endpoint, inline))
        if fast is not None:
            return fast

        def body(conn: Connection, now: float) -> dict[str, Any]:
            app = self._client(client_id, client_secret)
            for kind in order:
                row = self._lookup(conn, token, kind)
                if row is None:
                    continue
                if row.app_id != app.app_id or row.revoked_at is not None:
                    return {"active": False}
                if kind == "access_token":
                    if row.expires_at <= now:
                        return {"active": False}
                    return self._active_access(row, token, now)
                if row.retired_at is not None:
                    return {"active": False}
                info = self._refresh_info(row, token)
                info.pop("token_type")
                return {"active": True, **info, "app_id": row.app_id,
                        "token_type": "refresh", "token_use": "refresh_token"}
            return {"active": False}

        return self._run("introspect", "", body, fault_endpoint)

    def _introspect_fast(self, client_id: str, client_secret: str, token: str,
                         fault_endpoint: str | None, inline: bool) -> dict[str, Any]:
        """`introspect`'s common case: a live access token of this client (the same
        statements, run by `FastTransaction`); anything else is `FastPathMiss`."""
        with self._fast_transaction(inline) as tx:
            row = tx.first(_HOT_STATE_AND_AT, {"endpoint": fault_endpoint,
                                               "digest": token_digest(token),
                                               "stats_shard": stats_shard()})
            now = self._fast_now(row, fault_endpoint)
            app = self._fast_client(client_id, client_secret)
            if (row.app_id != app.app_id or row.revoked_at is not None
                    or row.expires_at <= now):
                raise FastPathMiss
            if not counts_in_statement(tx):
                count_call(tx, "introspect", "", "ok")
        return self._active_access(row, token, now)

    def _active_access(self, row: Any, token: str, now: float) -> dict[str, Any]:
        """Introspection's answer for a live access token (both paths: byte for byte)."""
        info = self._access_info(row, token, now)
        info.pop("token_type")
        return {"active": True, **info, "token_type": "Bearer", "token_use": "access_token"}

    def revoke(self, *, client_id: str, client_secret: str, token: str,
               token_type_hint: str | None = None, fault_endpoint: str | None = None) -> None:
        """POST /oauth/{v3,2026-03,2026-09}/token/revoke (RFC 7009). Revokes a refresh token (with
        `settings.revoke_cascades`, also the access tokens of its authorization) or an
        access token. Unknown or already-revoked tokens succeed silently (RFC 7009 §2.2).
        Raises `OAuthError` for bad client credentials, and ``unauthorized_client`` when
        the token belongs to another client (RFC 7009 §2.1)."""
        def body(conn: Connection, now: float) -> dict[str, Any]:
            app = self._client(client_id, client_secret)
            digest = token_digest(token)
            for table in (refresh_tokens, access_tokens):
                row = conn.execute(sa.select(table.c.id, table.c.app_id, table.c.family_id)
                                   .where(table.c.token_digest == digest)).first()
                if row is None:
                    continue
                if row.app_id != app.app_id:
                    raise OAuthError("unauthorized_client", "BAD_REFRESH_TOKEN"
                                     if table is refresh_tokens else "BAD_ACCESS_TOKEN",
                                     "token was not issued to this client")
                if table is refresh_tokens and self.settings.revoke_cascades:
                    self._revoke_family(conn, row.family_id, now, "revoked")
                elif table is refresh_tokens:
                    conn.execute(sa.update(table).where(table.c.id == row.id,
                                                        table.c.revoked_at.is_(None))
                                 .values(revoked_at=now, revoked_reason="revoked"))
                else:
                    conn.execute(sa.update(table).where(table.c.id == row.id,
                                                        table.c.revoked_at.is_(None))
                                 .values(revoked_at=now))
                break
            return {}

        self._run("revoke", "", body, fault_endpoint)

    # -- the API's bearer tokens --------------------------------------------------------

    def authenticate(self, conn: Connection, token: str, now: float) -> TokenGrant | float | None:
        """The grant of access token `token`; a float (its expiry, epoch s) when it has
        expired; None when unknown or revoked."""
        row = conn.execute(_SELECT_AT_GRANT, {"digest": token_digest(token)}).first()
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at <= now:
            return float(row.expires_at)
        return TokenGrant(row.app_id, row.hub_id, row.user_id, tuple(row.scopes),
                          row.expires_at)

    def rate_limit(self, conn: Connection, grant: TokenGrant, now: float) -> RateWindow:
        """Count one API call of the grant's app in its portal."""
        return hit(conn, grant.app_id, grant.hub_id, now, self.settings.rate_limit_max,
                   self.settings.rate_limit_interval_ms)

    def api_call_fast(self, token: str | None, grant: TokenGrant | None,
                      scopes: tuple[str, ...] | None, handler: Any,
                      fault_endpoint: str | None,
                      inline: bool = False) -> tuple[int, Any, dict[str, str]]:
        """An API call's common case in one `FastTransaction`: a live access token `token`
        (or, with `token` None, `grant`), a rate window with room, the scopes, `handler(tx,
        grant, now)` → (status, payload), stats. Returns (status, payload, rate-limit
        headers); anything else is `FastPathMiss` (the general code answers). `inline`: on
        the calling thread without waiting for the database (`InlineConnection`)."""
        with self._fast_transaction(inline) as tx:
            now = self._fast_state(tx, fault_endpoint)
            if token is not None:
                row = tx.first(_HOT_SELECT_AT_GRANT, {"digest": token_digest(token)})
                if row is None or row.revoked_at is not None or row.expires_at <= now:
                    raise FastPathMiss
                grant = TokenGrant(row.app_id, row.hub_id, row.user_id, tuple(row.scopes),
                                   row.expires_at)
            if grant is None:
                raise FastPathMiss
            window = hit(tx, grant.app_id, grant.hub_id, now, self.settings.rate_limit_max,
                         self.settings.rate_limit_interval_ms)
            if not window.allowed or not grant.allows(scopes):
                raise FastPathMiss
            try:
                status, payload = handler(tx, grant, now)
            except HubSpotHTTPError:
                raise FastPathMiss from None
            count_call(tx, "api", "", "ok")
        return status, payload, window.headers()

    def api_transaction(self) -> Any:
        """A write transaction for one API call (auth, rate window, stats, data)."""
        return write(self.engine)

    def now_in(self, conn: Connection, fault_endpoint: str | None = None) -> float:
        """Emulator now (epoch seconds) read inside `conn`'s transaction; raises
        `FaultPending` when `fault_endpoint` has a queued fault."""
        return self._state(conn, fault_endpoint)

    # -- control --------------------------------------------------------------------------

    def uninstall(self, app_id: int, hub_id: int) -> bool:
        """Uninstall app `app_id` from portal `hub_id`: its refresh and access tokens there
        stop working (refresh → BAD_REFRESH_TOKEN) and pending codes are dropped. Returns
        False when the app was not installed there."""
        with write(self.engine) as conn:
            now = self._state(conn)
            done = conn.execute(sa.update(installs).where(
                installs.c.app_id == app_id, installs.c.hub_id == hub_id,
                installs.c.uninstalled_at.is_(None)).values(uninstalled_at=now)).rowcount
            # Unused codes first: on PostgreSQL this waits for an exchange that holds its
            # code's row lock, so the token UPDATEs below (each a new READ COMMITTED
            # snapshot) see the tokens it committed; done last, they were missed and
            # stayed live (tests/security/test_fast_path_adversary.py).
            conn.execute(sa.delete(authorization_codes).where(
                authorization_codes.c.app_id == app_id, authorization_codes.c.hub_id == hub_id,
                authorization_codes.c.consumed_at.is_(None)))
            conn.execute(sa.update(refresh_tokens).where(
                refresh_tokens.c.app_id == app_id, refresh_tokens.c.hub_id == hub_id,
                refresh_tokens.c.revoked_at.is_(None)).values(
                revoked_at=now, revoked_reason="uninstalled"))
            conn.execute(sa.update(access_tokens).where(
                access_tokens.c.app_id == app_id, access_tokens.c.hub_id == hub_id,
                access_tokens.c.revoked_at.is_(None)).values(revoked_at=now))
        return bool(done)

    def installs(self) -> list[dict[str, Any]]:
        """Every install (current and uninstalled)."""
        with read(self.engine) as conn:
            rows = conn.execute(sa.select(installs).order_by(installs.c.app_id,
                                                             installs.c.hub_id)).all()
        return [{"app_id": r.app_id, "hub_id": r.hub_id, "user_id": r.user_id,
                 "scopes": list(r.scopes), "installed": r.uninstalled_at is None}
                for r in rows]

    def stats(self) -> dict[str, Any]:
        """Calls counted by endpoint, grant type and outcome (DESIGN §4's JSON shape)."""
        result: dict[str, Any] = {
            "token": {"authorization_code": {"ok": 0, "error": 0},
                      "refresh_token": {"ok": 0, "error": 0}},
            "introspect": {"ok": 0, "error": 0},
            "revoke": {"ok": 0, "error": 0},
            "metadata": {"ok": 0, "error": 0},
            "api": {"ok": 0, "error": 0},
        }
        with read(self.engine) as conn:
            rows = conn.execute(_STATS_TOTALS).all()
        for r in rows:
            if r.endpoint == "token":
                bucket = result["token"].setdefault(r.grant_type or "other",
                                                    {"ok": 0, "error": 0})
            else:
                bucket = result.setdefault(r.endpoint, {"ok": 0, "error": 0})
            bucket[r.outcome] = bucket.get(r.outcome, 0) + int(r.count)
        return result


_REVOKED_MESSAGES = {
    "": "refresh token is invalid, expired or revoked",
    "deleted": "refresh token is invalid, expired or revoked: it was deleted",
    "revoked": "refresh token is invalid, expired or revoked: it was revoked",
    "uninstalled": "refresh token is invalid, expired or revoked: the app was uninstalled "
                   "from this account",
    "code_replayed": "refresh token is invalid, expired or revoked: its authorization code "
                     "was used twice, so its tokens were revoked (RFC 6749 §4.1.2)",
    "reuse_detected": "refresh token is invalid, expired or revoked: a retired refresh token "
                      "of this authorization was reused (RFC 9700 §4.14.2)",
}


def _code_replayed() -> OAuthError:
    return OAuthError("invalid_grant", "BAD_AUTH_CODE",
                      "auth code has already been used; the tokens issued for it are revoked "
                      "(RFC 6749 §4.1.2)")


def _ago(seconds: float) -> str:
    """HubSpot's coarse unit: "N second(s)", "minute(s)", "hour(s)" or "day(s)"."""
    seconds = max(0, int(seconds))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            return f"{seconds // size} {unit}(s)"
    return f"{seconds} second(s)"


def expired_ago(seconds: float) -> str:
    """Public form of the unit rule, for 401 EXPIRED_AUTHENTICATION messages."""
    return _ago(seconds)


def _portal_access(row: Any) -> rules.PortalAccess:
    return rules.PortalAccess(
        hub_id=row.hub_id, hub_domain=row.hub_domain,
        may_install=row.role in INSTALL_ROLES,
        available_scopes=None if row.available_scopes is None
        else frozenset(row.available_scopes),
        missing_scopes=frozenset(row.missing_scopes or ()), name=row.name or "")


def _signed_access_token(row: Any, token: str) -> dict[str, Any]:
    """HubSpot's `signed_access_token` object (reference §6.3). Its signatures are digests
    of the token's digest: opaque, stable, and revealing nothing."""
    return dict(_signed_fields(token_digest(token), row.expires_at, tuple(row.scopes),
                               row.hub_id, row.user_id, row.app_id, row.hublet or "na1"))


# Introspection asks about the same live tokens again and again; every field is fixed by
# the token's row (a copy goes out each time). Keyed by the digest, never the token.
@functools.lru_cache(maxsize=4096)
def _signed_fields(digest: str, expires_at: float, scopes: tuple[str, ...], hub_id: int,
                   user_id: int, app_id: int, hublet: str) -> dict[str, Any]:
    inner = hashlib.sha256(("sig:" + digest).encode()).digest()
    return {
        "expiresAt": int(expires_at * 1000),
        "scopes": base64.urlsafe_b64encode(json.dumps(list(scopes)).encode()).decode()
        .rstrip("="),
        "hubId": hub_id,
        "userId": user_id,
        "appId": app_id,
        "signature": base64.b64encode(inner[:20]).decode(),
        "scopeToScopeGroupPks": ",".join(str(100 + i) for i in range(len(scopes))),
        "newSignature": base64.b64encode(inner).decode(),
        "hublet": hublet,
        "trialScopes": "",
        "trialScopeToScopeGroupPks": "",
        "isUserLevel": False,
        "installingUserId": user_id,
        "isServiceAccount": False,
        "isPrivateDistribution": False,
        "appInstallId": f"{app_id}-{hub_id}",
        "audience": "",
    }


@functools.lru_cache(maxsize=4096)  # the same contact timestamps, page after page
def utc_iso(epoch: float) -> str:
    """Epoch seconds → ``2026-03-10T23:04:41.164Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
