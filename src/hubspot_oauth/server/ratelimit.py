"""Counters kept in the database with one atomic upsert each: the per-app-and-portal rate
limit window (HubSpot: 100 calls per 10 s, reference §7.6) and the control API's stats."""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .models import rate_windows, stats
from .storage import FastTransaction, HotStatement, execute_hot, first_hot

__all__ = ["STATS_SHARDS", "RateWindow", "count_call", "counted", "counts_in_statement", "hit",
           "stats_shard"]


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


_COUNT_KEY = ("endpoint", "grant_type", "outcome", "shard")


def _count_statement(name: str, **values: Any) -> Any:
    """The stats upsert (one more for a key), its key columns bound as `values` says
    (default: parameters named after the columns)."""
    s = stats
    return _insert_for(name)(s).values(
        **{c: values.get(c, sa.bindparam(c)) for c in _COUNT_KEY}, count=1,
    ).on_conflict_do_update(index_elements=[s.c[c] for c in _COUNT_KEY],
                            set_={"count": s.c.count + 1})


# Built once per dialect (building a statement per call cost more than running it).
HIT = HotStatement(_hit_statement)
COUNT = HotStatement(_count_statement)


def counted(stmt: Any, endpoint: str, grant_type: str, outcome: str) -> HotStatement:
    """`stmt` as a `HotStatement` that on PostgreSQL also counts the call: `count_call`'s
    upsert for (endpoint, grant_type, outcome) as a CTE of the same statement, one round
    trip fewer. Run it with ``stats_shard=stats_shard()``. Elsewhere (SQLite has no DML
    in a CTE) it is `stmt` alone and the caller runs `count_call` as well;
    `counts_in_statement(tx)` says which. The count is in the transaction like any
    other: a hot path that then misses rolls it back with the rest."""
    def build(name: str) -> Any:
        if name != "postgresql":
            return stmt
        upsert = _count_statement(
            name, endpoint=sa.bindparam("stats_endpoint", endpoint),
            grant_type=sa.bindparam("stats_grant_type", grant_type),
            outcome=sa.bindparam("stats_outcome", outcome),
            shard=sa.bindparam("stats_shard"))
        return stmt.add_cte(upsert.cte("counted"))

    return HotStatement(build)


def counts_in_statement(conn: Connection | FastTransaction) -> bool:
    """True when a `counted` statement run on `conn` has counted the call itself."""
    return conn.dialect.name == "postgresql"


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
    count = first_hot(conn, HIT, params).count
    return _window(count, now_ms, start, limit, interval_ms)


# Shards of each stats counter. A shard is the writing thread's kernel id modulo this:
# threads alive at once (in any process on this host) have distinct ids, so on
# PostgreSQL concurrent calls add to different rows instead of queueing on one row's lock
# until commit (45 % of the 2-process refresh's time did). At most this many rows a key.
STATS_SHARDS = 1024
_thread = threading.local()


def _forget_shard() -> None:
    global _thread
    _thread = threading.local()  # a forked child's thread has an id of its own


os.register_at_fork(after_in_child=_forget_shard)


def stats_shard() -> int:
    """The calling thread's stats shard, 0 ≤ shard < `STATS_SHARDS`."""
    try:
        return _thread.shard
    except AttributeError:
        _thread.shard = threading.get_native_id() % STATS_SHARDS
        return _thread.shard


def count_call(conn: Connection | FastTransaction, endpoint: str, grant_type: str,
               outcome: str, *, shard: int | None = None) -> None:
    """Add one to the stats counter (endpoint, grant_type or "", outcome "ok"/"error") in
    the same transaction as the call, so the count is visible to every process once the
    call has been answered. `shard`: the row to add to (default: this thread's,
    `stats_shard()`); `LocalHubSpot.stats` sums the shards."""
    params = {"endpoint": endpoint, "grant_type": grant_type, "outcome": outcome,
              "shard": stats_shard() if shard is None else shard}
    execute_hot(conn, COUNT, params)
