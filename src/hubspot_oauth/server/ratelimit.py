"""Counters kept in the database with one atomic upsert each: the per-app-and-portal rate
limit window (HubSpot: 100 calls per 10 s, reference §7.6) and the control API's stats."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import rate_windows, stats

__all__ = ["RateWindow", "count_call", "hit"]


def _insert(conn: Connection):  # noqa: ANN202 - dialect-specific Insert
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


@dataclasses.dataclass(frozen=True, slots=True)
class RateWindow:
    """One call's place in its fixed window: `count` calls so far (this one included),
    `limit`, `interval_ms`, `reset_in_ms` until the window ends."""

    count: int
    limit: int
    interval_ms: int
    reset_in_ms: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)

    def headers(self) -> dict[str, str]:
        """HubSpot's rate-limit headers (reference §7.6); no daily ones for OAuth calls."""
        return {
            "X-HubSpot-RateLimit-Max": str(self.limit),
            "X-HubSpot-RateLimit-Remaining": str(self.remaining),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms),
        }


def hit(conn: Connection, app_id: int, hub_id: int, now: float, limit: int,
        interval_ms: int) -> RateWindow:
    """Count one call of `app_id` in `hub_id` at `now` (epoch seconds) in a fixed window of
    `interval_ms`; atomic across processes (INSERT … ON CONFLICT DO UPDATE … RETURNING)."""
    now_ms = int(now * 1000)
    start = now_ms - now_ms % interval_ms
    r = rate_windows
    stmt = _insert(conn)(r).values(app_id=app_id, hub_id=hub_id, window_start=start, count=1)
    stmt = stmt.on_conflict_do_update(
        index_elements=[r.c.app_id, r.c.hub_id],
        set_={
            "count": sa.case((r.c.window_start == start, r.c.count + 1), else_=1),
            "window_start": start,
        },
    ).returning(r.c.count)
    count = conn.execute(stmt).scalar_one()
    return RateWindow(count=count, limit=limit, interval_ms=interval_ms,
                      reset_in_ms=start + interval_ms - now_ms)


_COUNT_STATEMENTS: dict[str, Any] = {}


def _count_statement(conn: Connection) -> Any:
    # Built once per dialect: this runs on every call, keep it cheap.
    name = conn.dialect.name
    stmt = _COUNT_STATEMENTS.get(name)
    if stmt is None:
        s = stats
        stmt = _insert(conn)(s).values(
            endpoint=sa.bindparam("endpoint"), grant_type=sa.bindparam("grant_type"),
            outcome=sa.bindparam("outcome"), count=1,
        ).on_conflict_do_update(index_elements=[s.c.endpoint, s.c.grant_type, s.c.outcome],
                                set_={"count": s.c.count + 1})
        _COUNT_STATEMENTS[name] = stmt
    return stmt


def count_call(conn: Connection, endpoint: str, grant_type: str, outcome: str) -> None:
    """Add one to the stats counter (endpoint, grant_type or "", outcome "ok"/"error")."""
    conn.execute(_count_statement(conn),
                 {"endpoint": endpoint, "grant_type": grant_type, "outcome": outcome})
