"""`StateStore`: the OAuth ``state`` nonce, issued before the redirect, consumed once after.

HubSpot echoes ``state`` unchanged on the redirect to the app (reference §3). Keeping each
user's state through the round trip is the guide's five steps:

1. ``nonce = states.issue({"user": 42, "return_to": "/settings"})`` - a fresh
   ≥128-bit nonce bound to what the app must remember;
2. ``client.authorization_url(state=nonce)`` - send the user to HubSpot;
3. HubSpot redirects to the redirect URI with ``code`` and the same ``state``;
4. ``payload = states.consume(request.query_params.get("state"))`` - exactly once;
   `StateMismatchError` for a missing, forged or reused state (RFC 6749 §10.12, CSRF),
   `StateExpiredError` when the user took longer than `ttl`;
5. ``client.exchange_code(code, code_verifier=payload.code_verifier)``.

Several states live side by side, so a user who opens the install in two tabs finishes
both (case C6). Backends: ``memory://`` (one process) and any SQLAlchemy URL of the token
store (``sqlite:///…``, ``postgresql+psycopg://…``) so several processes share states. The
SQL table (``hubspot_oauth_states``, created by the store's Alembic migrations in
`client/migrations`) holds the SHA-256 digest of each nonce, never the nonce; consuming is
one conditional ``DELETE … RETURNING``, so of two concurrent consumers exactly one wins.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import (
    ConfigurationError,
    RetryableError,
    StateError,
    StateExpiredError,
    StateMismatchError,
)

__all__ = ["DEFAULT_TTL", "MEMORY_URL", "State", "StateStore", "StateStoreUnavailableError"]

DEFAULT_TTL = 600
# An install that takes longer than this is not coming back; also keeps `now + ttl` a
# representable datetime.
MAX_TTL = 30 * 86400
MEMORY_URL = "memory://"
# Expired rows are kept this long so a late callback reads "expired", not "unknown".
_KEEP_EXPIRED = timedelta(hours=24)
_MAX_NONCE_LENGTH = 512
_MAX_MEMORY_STATES = 100_000


class StateStoreUnavailableError(StateError, RetryableError):
    """The state store's database could not be reached or timed out: the state was not
    issued (or not consumed). Try again."""


class State(dict[str, Any]):
    """The payload given to `StateStore.issue` (a plain dict of it), plus:

    * `code_verifier` - the PKCE verifier issued with the state, or None (hidden in repr);
    * `issued_at`, `expires_at` - aware UTC datetimes.
    """

    __slots__ = ("code_verifier", "expires_at", "issued_at")

    def __init__(
        self,
        payload: Mapping[str, Any],
        *,
        code_verifier: str | None,
        issued_at: datetime,
        expires_at: datetime,
    ) -> None:
        super().__init__(payload)
        self.code_verifier = code_verifier
        self.issued_at = issued_at
        self.expires_at = expires_at

    @property
    def payload(self) -> dict[str, Any]:
        """The payload as a plain dict."""
        return dict(self)

    def __repr__(self) -> str:
        verifier = "<set>" if self.code_verifier else None
        return (
            f"State({dict.__repr__(self)}, code_verifier={verifier}, "
            f"expires_at={self.expires_at.isoformat()})"
        )


def _digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("utf-8")).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class StateStore:
    """Issue and consume single-use OAuth state nonces.

    **Parameters:**
    * `url` - ``"memory://"`` (default; this process only) or a SQLAlchemy database URL
      (``sqlite:///path.db``, ``postgresql+psycopg://…``) or `sqlalchemy.Engine`. A SQL
      database gets the library's schema on first use; one whose schema is behind raises
      `SchemaOutdatedError` (run ``hubspot-oauth db upgrade``).
    * `now` - *(optional)* a callable returning the aware UTC "now" (tests move time).

    Usage: ``nonce = states.issue({"user": 42}, ttl=600)``;
    ``payload = states.consume(nonce)``.
    """

    def __init__(
        self,
        url: Any = MEMORY_URL,
        *,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self._now = now or _utcnow
        self._backend: _MemoryBackend | _SQLBackend
        if isinstance(url, str) and url.split(":", 1)[0].lower() == "memory":
            self._backend = _MemoryBackend()
            self.url = MEMORY_URL
        else:
            self._backend = _SQLBackend(url)
            self.url = self._backend.display_url

    def __repr__(self) -> str:
        return f"StateStore({self.url!r})"

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release database connections (a no-op for memory)."""
        self._backend.close()

    def issue(
        self,
        payload: Mapping[str, Any] | None = None,
        ttl: float = DEFAULT_TTL,
        code_verifier: str | None = None,
    ) -> str:
        """A new nonce for the ``state`` parameter, bound to `payload`.

        **Parameters:** `payload` - JSON-serialisable mapping the app wants back after the
        redirect (default ``{}``); `ttl` - seconds the state stays valid (default 600);
        `code_verifier` - the PKCE verifier to keep with it (RFC 7636), returned by
        `consume` as ``.code_verifier``.

        Returns a URL-safe nonce of 43 characters (256 bits from `secrets`, RFC 6749
        §10.10 asks for ≥128). Raises `ConfigurationError` for a payload that is not a
        JSON-serialisable mapping or a `ttl` that is not a positive number of seconds up to
        `MAX_TTL` (30 days).
        """
        if payload is None:
            payload = {}
        if not isinstance(payload, Mapping):
            raise ConfigurationError("state payload must be a mapping (a dict)")
        try:
            encoded = json.dumps(dict(payload), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"state payload must be JSON-serialisable: {exc}") from None
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= MAX_TTL:
            raise ConfigurationError(
                f"ttl must be a positive number of seconds, at most {MAX_TTL} (30 days)"
            )
        if code_verifier is not None and (not isinstance(code_verifier, str) or not code_verifier):
            raise ConfigurationError("code_verifier must be a non-empty string")
        nonce = secrets.token_urlsafe(32)
        issued_at = self._now()
        expires_at = issued_at + timedelta(seconds=float(ttl))
        self._backend.insert(_digest(nonce), encoded, code_verifier, issued_at, expires_at)
        return nonce

    def consume(self, nonce: str | None) -> State:
        """The payload issued with `nonce`, exactly once (RFC 6749 §10.12).

        Returns a `State` (a dict of the payload with `code_verifier`, `issued_at`,
        `expires_at`). The state is gone afterwards, whatever the outcome.
        Raises `StateMismatchError` when `nonce` is missing, malformed, unknown or already
        consumed (a forged or replayed callback), `StateExpiredError` when it was issued but
        its `ttl` has passed. Two concurrent calls with one nonce: exactly one succeeds.
        """
        if not isinstance(nonce, str) or not nonce:
            raise StateMismatchError("the callback carries no state; start the install again")
        if len(nonce) > _MAX_NONCE_LENGTH:
            raise StateMismatchError("the state is not one this app issued")
        row = self._backend.take(_digest(nonce))
        if row is None:
            raise StateMismatchError(
                "the state is unknown or was already used; start the install again"
            )
        encoded, code_verifier, issued_at, expires_at = row
        if self._now() >= expires_at:
            raise StateExpiredError(
                f"the state expired at {expires_at.isoformat()}; start the install again"
            )
        return State(
            json.loads(encoded),
            code_verifier=code_verifier,
            issued_at=issued_at,
            expires_at=expires_at,
        )

    def purge_expired(self) -> int:
        """Delete states that expired more than 24 hours ago. Returns how many."""
        return self._backend.purge(self._now() - _KEEP_EXPIRED)


_Row = tuple[str, "str | None", datetime, datetime]


class _MemoryBackend:
    def __init__(self) -> None:
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()

    def insert(
        self,
        digest: str,
        payload: str,
        code_verifier: str | None,
        issued_at: datetime,
        expires_at: datetime,
    ) -> None:
        with self._lock:
            if len(self._rows) >= _MAX_MEMORY_STATES:
                self._purge_locked(issued_at)
                while len(self._rows) >= _MAX_MEMORY_STATES:  # oldest first (insertion order)
                    self._rows.pop(next(iter(self._rows)))
            self._rows[digest] = (payload, code_verifier, issued_at, expires_at)

    def take(self, digest: str) -> _Row | None:
        with self._lock:
            return self._rows.pop(digest, None)

    def purge(self, before: datetime) -> int:
        with self._lock:
            return self._purge_locked(before)

    def _purge_locked(self, before: datetime) -> int:
        old = [d for d, row in self._rows.items() if row[3] < before]
        for digest in old:
            del self._rows[digest]
        return len(old)

    def close(self) -> None:
        pass


class _SQLBackend:
    def __init__(self, url: Any) -> None:
        import sqlalchemy as sa

        from .migrations import ensure_schema
        from .migrations.tables import states

        self._table = states
        if isinstance(url, sa.Engine):
            self._engine, self._owns_engine = url, False
        else:
            try:
                parsed = sa.make_url(url)
            except (sa.exc.ArgumentError, TypeError, ValueError):
                raise ConfigurationError(
                    f"StateStore url must be 'memory://' or a database URL such as "
                    f"sqlite:///states.db, got {url!r}"
                ) from None
            if parsed.drivername in ("postgresql", "postgres"):  # psycopg 3 is what we ship
                parsed = parsed.set(drivername="postgresql+psycopg")
            from .store import create_store_engine

            # The token store's pooling and timeouts (store.py), so both behave alike.
            self._engine = create_store_engine(parsed.render_as_string(hide_password=False))
            self._owns_engine = True
        self.display_url = self._engine.url.render_as_string(hide_password=True)
        self._guard(lambda: ensure_schema(self._engine))
        self._inserts = 0

    def _guard(self, operation: Callable[[], Any]) -> Any:
        """Run a database operation; an unreachable database is a retryable error."""
        from ._database import guarded  # with SQLAlchemy: only for a database URL

        return guarded(operation, self._unavailable)

    def _unavailable(self, reason: str) -> StateStoreUnavailableError:
        return StateStoreUnavailableError(
            f"the state store database {self.display_url} is unavailable ({reason}); try again"
        )

    def insert(
        self,
        digest: str,
        payload: str,
        code_verifier: str | None,
        issued_at: datetime,
        expires_at: datetime,
    ) -> None:
        t = self._table

        def run() -> None:
            with self._engine.begin() as connection:
                connection.execute(
                    t.insert().values(
                        nonce_digest=digest,
                        payload=payload,
                        code_verifier=code_verifier,
                        created_at=issued_at,
                        expires_at=expires_at,
                    )
                )
                self._inserts += 1
                if self._inserts % 100 == 1:  # sweep now and then, not on every issue
                    connection.execute(t.delete().where(t.c.expires_at < issued_at - _KEEP_EXPIRED))

        self._guard(run)

    def take(self, digest: str) -> _Row | None:
        t = self._table
        statement = (
            t.delete()
            .where(t.c.nonce_digest == digest)
            .returning(t.c.payload, t.c.code_verifier, t.c.created_at, t.c.expires_at)
        )

        def run() -> Any:
            with self._engine.begin() as connection:
                return connection.execute(statement).first()

        row = self._guard(run)
        if row is None:
            return None
        return (row[0], row[1], row[2], row[3])

    def purge(self, before: datetime) -> int:
        t = self._table

        def run() -> int:
            with self._engine.begin() as connection:
                return connection.execute(t.delete().where(t.c.expires_at < before)).rowcount

        return self._guard(run)

    def close(self) -> None:
        if self._owns_engine:
            self._engine.dispose()
