"""Counters kept in the database with one atomic upsert each: the per-app-and-portal rate
limit window (HubSpot: 100 calls per 10 s, reference §7.6) and the control API's stats."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import rate_windows, stats
from .storage import FastTransaction, HotStatement

__all__ = ["RateWindow", "count_call", "hit"]


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


def _insert_for(name: str):  # noqa: ANN202 - dialect-specific Insert
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _hit_statement(name: str) -> Any:
    r = rate_windows
    start = sa.bindparam("start", type_=sa.BigInteger)
    return _insert_for(name)(r).values(
        app_id=sa.bindparam("app_id"), hub_id=sa.bindparam("hub_id"), window_start=start,
        count=1,
    ).on_conflict_do_update(
        index_elements=[r.c.app_id, r.c.hub_id],
        set_={"count": sa.case((r.c.window_start == start, r.c.count + 1), else_=1),
              "window_start": start},
    ).returning(r.c.count)


def _count_statement(name: str) -> Any:
    s = stats
    return _insert_for(name)(s).values(
        endpoint=sa.bindparam("endpoint"), grant_type=sa.bindparam("grant_type"),
        outcome=sa.bindparam("outcome"), count=1,
    ).on_conflict_do_update(index_elements=[s.c.endpoint, s.c.grant_type, s.c.outcome],
                            set_={"count": s.c.count + 1})


# Built once per dialect (building a statement per call cost more than running it).
HIT = HotStatement(_hit_statement)
COUNT = HotStatement(_count_statement)


def _window(count: int, now_ms: int, start: int, limit: int, interval_ms: int) -> RateWindow:
    return RateWindow(count=count, limit=limit, interval_ms=interval_ms,
                      reset_in_ms=start + interval_ms - now_ms)


def hit(conn: Connection | FastTransaction, app_id: int, hub_id: int, now: float, limit: int,
        interval_ms: int) -> RateWindow:
    """Count one call of `app_id` in `hub_id` at `now` (epoch seconds) in a fixed window of
    `interval_ms`; atomic across processes (INSERT … ON CONFLICT DO UPDATE … RETURNING)."""
    now_ms = int(now * 1000)
    start = now_ms - now_ms % interval_ms
    params = {"app_id": app_id, "hub_id": hub_id, "start": start}
    if isinstance(conn, FastTransaction):
        count = conn.first(HIT, params).count
    else:
        count = conn.execute(HIT.for_dialect(conn.dialect.name), params).scalar_one()
    return _window(count, now_ms, start, limit, interval_ms)


def count_call(conn: Connection | FastTransaction, endpoint: str, grant_type: str,
               outcome: str) -> None:
    """Add one to the stats counter (endpoint, grant_type or "", outcome "ok"/"error")."""
    params = {"endpoint": endpoint, "grant_type": grant_type, "outcome": outcome}
    if isinstance(conn, FastTransaction):
        conn.execute(COUNT, params)
    else:
        conn.execute(COUNT.for_dialect(conn.dialect.name), params)
