"""The fault queue of the control API (DESIGN §4): make the next N calls of an endpoint
fail the way HubSpot (or a proxy in front of it) sometimes does. Kept in the database, so
every process on it sees the same queue, and each fault fires exactly `times` times."""

from __future__ import annotations

import dataclasses

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..errors import ConfigurationError
from .models import faults as faults_table
from .storage import read, write

__all__ = ["ENDPOINTS", "FAULTS", "Fault", "Faults"]

# endpoint -> the faults it accepts. html_502: a proxy's HTML outage page (case C11).
FAULTS: dict[str, tuple[str, ...]] = {
    "token": ("invalid_grant", "server_error", "rate_limit", "delay", "html_502"),
    "introspect": ("invalid_grant", "server_error", "rate_limit", "delay", "html_502"),
    "revoke": ("server_error", "rate_limit", "delay", "html_502"),
    "api": ("expired_authentication", "rate_limit", "server_error", "delay", "html_502"),
}
ENDPOINTS = tuple(FAULTS)
MAX_DELAY_MS = 30_000
MAX_TIMES = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class Fault:
    """One firing of a queued fault: `fault` (kind) and `delay_ms` (for ``delay``; other
    kinds also wait this long before answering)."""

    endpoint: str
    fault: str
    delay_ms: int = 0


class Faults:
    """`add(endpoint=, fault=, times=1, delay_ms=0)`, `take(endpoint)`, `pending()`,
    `clear()`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, endpoint: str, fault: str, times: int = 1, delay_ms: int = 0) -> dict:
        """Queue `fault` for the next `times` calls of `endpoint`. Returns the queued entry
        as JSON-ready dict. Raises `ConfigurationError` (a ValueError) for an unknown
        endpoint or fault, `times` outside 1-10000 or `delay_ms` outside 0-30000."""
        if endpoint not in FAULTS:
            raise ConfigurationError(
                f"unknown fault endpoint {endpoint!r}; use one of {', '.join(ENDPOINTS)}")
        if fault not in FAULTS[endpoint]:
            raise ConfigurationError(
                f"unknown fault {fault!r} for endpoint {endpoint!r}; use one of "
                f"{', '.join(FAULTS[endpoint])}")
        for name, value, high in (("times", times, MAX_TIMES), ("delay_ms", delay_ms,
                                                                MAX_DELAY_MS)):
            if isinstance(value, bool) or not isinstance(value, int) or not (
                    (1 if name == "times" else 0) <= value <= high):
                raise ConfigurationError(f"{name} must be an integer between "
                                         f"{1 if name == 'times' else 0} and {high}")
        with write(self._engine) as conn:
            new_id = conn.execute(sa.insert(faults_table).values(
                endpoint=endpoint, fault=fault, remaining=times, delay_ms=delay_ms)
                .returning(faults_table.c.id)).scalar_one()
        return {"id": new_id, "endpoint": endpoint, "fault": fault, "times": times,
                "delay_ms": delay_ms}

    def take(self, endpoint: str) -> Fault | None:
        """Consume one pending fault of `endpoint` (oldest first), or None.

        A read first, so the common "no fault" case takes no write lock; the decrement is
        a conditional UPDATE, so two processes never fire the same last firing twice."""
        t = faults_table
        for _ in range(5):
            with read(self._engine) as conn:
                row = conn.execute(
                    sa.select(t.c.id, t.c.fault, t.c.delay_ms)
                    .where(t.c.endpoint == endpoint, t.c.remaining > 0)
                    .order_by(t.c.id).limit(1)).first()
            if row is None:
                return None
            with write(self._engine) as conn:
                done = conn.execute(sa.update(t).where(t.c.id == row.id, t.c.remaining > 0)
                                    .values(remaining=t.c.remaining - 1)).rowcount
                conn.execute(sa.delete(t).where(t.c.remaining <= 0))
            if done == 1:
                return Fault(endpoint, row.fault, row.delay_ms)
        return None

    def pending(self) -> list[dict]:
        """The queue, oldest first."""
        t = faults_table
        with read(self._engine) as conn:
            rows = conn.execute(sa.select(t).where(t.c.remaining > 0).order_by(t.c.id)).all()
        return [{"id": r.id, "endpoint": r.endpoint, "fault": r.fault, "times": r.remaining,
                 "delay_ms": r.delay_ms} for r in rows]

    def clear(self) -> None:
        """Drop every queued fault."""
        with write(self._engine) as conn:
            conn.execute(sa.delete(faults_table))
