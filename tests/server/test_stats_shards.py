"""Stats counters sharded by writing thread (issue 7), on SQLite and PostgreSQL: the
migration from 0003 keeps the counts (and its downgrade folds the shards back), counts
stay exact with many threads, two engines and two processes on one database, a count is
visible from another engine as soon as its call has returned, and on PostgreSQL a count
never waits for another transaction's count. Also the PostgreSQL pool: connections of a
burst are kept, and a restarted database is reconnected to without a failed request."""

from __future__ import annotations

import functools
import multiprocessing
import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from hubspot_oauth.server import ServerSettings
from hubspot_oauth.server.hubspot import LocalHubSpot
from hubspot_oauth.server.ratelimit import STATS_SHARDS, count_call, stats_shard
from hubspot_oauth.server.storage import (
    FastTransaction,
    HotStatement,
    _alembic_config,
    current_revision,
    make_engine,
    upgrade,
    write,
)

from .conftest import ACME, ADMIN, CLIENT, REDIRECT, race

BEFORE = "0003_seed_fingerprint"


def _tokens(hubspot: LocalHubSpot) -> dict[str, Any]:
    code = hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                              user_email=ADMIN, hub_id=ACME,
                              scopes=["crm.objects.contacts.read"])
    return hubspot.exchange_code(**CLIENT, code=code, redirect_uri=REDIRECT)


def _migrate(database_url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            config = _alembic_config(conn)
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def _stats_rows(database_url: str) -> list[tuple]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            columns = [c["name"] for c in sa.inspect(conn).get_columns("stats")]
            wanted = [c for c in ("endpoint", "grant_type", "outcome", "shard", "count")
                      if c in columns]
            return sorted(tuple(r) for r in conn.execute(
                sa.text(f"SELECT {', '.join(wanted)} FROM stats")))  # noqa: S608
    finally:
        engine.dispose()


def _primary_key(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        return sa.inspect(engine).get_pk_constraint("stats")["constrained_columns"]
    finally:
        engine.dispose()


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run work(i) for i < count in threads released together (`race`); re-raise the
    first error."""
    errors = [r for r in race([functools.partial(work, i) for i in range(count)])
              if isinstance(r, BaseException)]
    if errors:
        raise errors[0]


# -- the migration -----------------------------------------------------------------------


def test_upgrade_from_0003_keeps_the_counts(database_url: str) -> None:
    _migrate(database_url, BEFORE)
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO stats (endpoint, grant_type, outcome, count) VALUES "
                "('token', 'refresh_token', 'ok', 5), ('token', 'refresh_token', 'error', 2),"
                " ('introspect', '', 'ok', 3), ('api', '', 'error', 7)"))
    finally:
        engine.dispose()
    assert _primary_key(database_url) == ["endpoint", "grant_type", "outcome"]

    upgrade(database_url)

    assert sorted(_primary_key(database_url)) == sorted(
        ["endpoint", "grant_type", "outcome", "shard"])
    assert _stats_rows(database_url) == sorted([
        ("token", "refresh_token", "ok", 0, 5), ("token", "refresh_token", "error", 0, 2),
        ("introspect", "", "ok", 0, 3), ("api", "", "error", 0, 7)])
    hubspot = LocalHubSpot(ServerSettings(database_url=database_url))
    try:
        stats = hubspot.stats()
        assert stats["token"]["refresh_token"] == {"ok": 5, "error": 2}
        assert stats["introspect"] == {"ok": 3, "error": 0}
        assert stats["api"] == {"ok": 0, "error": 7}
        hubspot.count("introspect", "", "ok")  # counting goes on from the kept figures
        assert hubspot.stats()["introspect"] == {"ok": 4, "error": 0}
    finally:
        hubspot.close()


def test_downgrade_to_0003_folds_the_shards(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with write(engine) as conn:
            for shard in (0, 1, STATS_SHARDS - 1):
                count_call(conn, "token", "refresh_token", "ok", shard=shard)
                count_call(conn, "token", "refresh_token", "ok", shard=shard)
            count_call(conn, "revoke", "", "error", shard=5)
    finally:
        engine.dispose()

    _migrate(database_url, BEFORE, down=True)

    assert _primary_key(database_url) == ["endpoint", "grant_type", "outcome"]
    assert _stats_rows(database_url) == sorted([("token", "refresh_token", "ok", 6),
                                                ("revoke", "", "error", 1)])
    engine = make_engine(database_url)
    try:
        assert current_revision(engine) == BEFORE
    finally:
        engine.dispose()
    _migrate(database_url, "head")  # and up again, the folded counts kept
    assert _stats_rows(database_url) == sorted([("token", "refresh_token", "ok", 0, 6),
                                                ("revoke", "", "error", 0, 1)])


# -- exact counts -------------------------------------------------------------------------


def test_counts_are_exact_with_many_threads(servers) -> None:
    hubspot = servers()
    tokens = _tokens(hubspot)
    before = hubspot.stats()
    threads, calls = 8, 6

    def work(i: int) -> None:
        for _ in range(calls):
            hubspot.refresh(**CLIENT, refresh_token=tokens["refresh_token"])
            assert hubspot.introspect(**CLIENT, token=tokens["access_token"])["active"]
            hubspot.count("revoke", "", "error")

    _in_threads(threads, work)
    stats = hubspot.stats()
    total = threads * calls
    assert stats["token"]["refresh_token"]["ok"] == before["token"]["refresh_token"]["ok"] + total
    assert stats["introspect"]["ok"] == before["introspect"]["ok"] + total
    assert stats["revoke"]["error"] == before["revoke"]["error"] + total


def test_a_count_is_visible_to_another_engine_once_the_call_returned(servers) -> None:
    first, second = servers(), servers()
    tokens = _tokens(first)
    start = second.stats()
    for i in range(1, 4):
        first.refresh(**CLIENT, refresh_token=tokens["refresh_token"])
        assert second.stats()["token"]["refresh_token"]["ok"] == (
            start["token"]["refresh_token"]["ok"] + i)
        second.introspect(**CLIENT, token=tokens["access_token"])
        assert first.stats()["introspect"]["ok"] == start["introspect"]["ok"] + i


def test_counts_are_exact_with_two_engines_in_threads(servers) -> None:
    first, second = servers(), servers()
    tokens = _tokens(first)
    before = first.stats()["token"]["refresh_token"]["ok"]

    def work(i: int) -> None:
        hubspot = (first, second)[i % 2]
        for _ in range(5):
            hubspot.refresh(**CLIENT, refresh_token=tokens["refresh_token"])

    _in_threads(8, work)
    assert first.stats()["token"]["refresh_token"]["ok"] == before + 40
    assert second.stats() == first.stats()


def _count_in_process(database_url: str, refresh_token: str, access_token: str,
                      threads: int, calls: int) -> None:
    """A second server process: `threads` × `calls` refreshes and introspections."""
    hubspot = LocalHubSpot(ServerSettings(database_url=database_url))
    try:
        def work(_i: int) -> None:
            for _ in range(calls):
                hubspot.refresh(**CLIENT, refresh_token=refresh_token)
                hubspot.introspect(**CLIENT, token=access_token)

        _in_threads(threads, work)
    finally:
        hubspot.close()


def test_counts_are_exact_with_two_processes(database_url: str, servers) -> None:
    hubspot = servers()
    tokens = _tokens(hubspot)
    before = hubspot.stats()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_count_in_process, args=(
        database_url, tokens["refresh_token"], tokens["access_token"], 4, 5))
        for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    stats = hubspot.stats()
    assert stats["token"]["refresh_token"]["ok"] == before["token"]["refresh_token"]["ok"] + 40
    assert stats["introspect"]["ok"] == before["introspect"]["ok"] + 40


def test_each_thread_has_a_shard_of_its_own_and_keeps_it() -> None:
    shards: list[int] = []
    thread = threading.Thread(target=lambda: shards.extend([stats_shard(), stats_shard()]))
    thread.start()
    thread.join()
    assert 0 <= shards[0] < STATS_SHARDS
    assert shards[0] == shards[1]
    assert stats_shard() == threading.get_native_id() % STATS_SHARDS


# -- PostgreSQL: no waiting, the pool -----------------------------------------------------


def test_a_count_never_waits_for_another_transactions_count(postgres_url: str) -> None:
    """The row lock of one open transaction's count does not hold up a count in another
    thread (before sharding, every call of every process queued on that one row)."""
    hubspot = LocalHubSpot(ServerSettings(database_url=postgres_url))
    counted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold() -> None:
        try:
            with write(hubspot.engine) as conn:
                count_call(conn, "introspect", "", "ok")
                counted.set()
                release.wait(timeout=60)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
            counted.set()

    holder = threading.Thread(target=hold)
    try:
        holder.start()
        assert counted.wait(timeout=60)
        assert not errors
        # A lock wait would fail this statement (lock_timeout) instead of waiting.
        shard = stats_shard()
        if shard == hubspot_shard_of(holder):
            shard = (shard + 1) % STATS_SHARDS
        with write(hubspot.engine) as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            count_call(conn, "introspect", "", "ok", shard=shard)
        release.set()
        holder.join(timeout=60)
        assert not errors
        assert hubspot.stats()["introspect"]["ok"] == 2
    finally:
        release.set()
        holder.join(timeout=60)
        hubspot.close()


def hubspot_shard_of(thread: threading.Thread) -> int:
    assert thread.native_id is not None
    return thread.native_id % STATS_SHARDS


def test_postgres_keeps_the_connections_of_a_burst(postgres_url: str) -> None:
    """A burst of `db_threads` concurrent transactions opens its connections once: the
    next burst reuses them (the pool used to close its overflow connections at once)."""
    hubspot = LocalHubSpot(ServerSettings(database_url=postgres_url))
    opened: list[int] = []
    sa.event.listen(hubspot.engine, "connect", lambda *_: opened.append(1))
    try:
        barrier = threading.Barrier(hubspot.db_threads)

        def transaction(_i: int) -> None:
            with write(hubspot.engine) as conn:
                barrier.wait(timeout=60)  # all of them hold a connection at once
                count_call(conn, "api", "", "ok")

        _in_threads(hubspot.db_threads, transaction)
        first_burst = len(opened)
        _in_threads(hubspot.db_threads, transaction)
        assert first_burst > 0
        assert len(opened) == first_burst  # none opened for the second burst
        assert hubspot.stats()["api"]["ok"] == 2 * hubspot.db_threads
    finally:
        hubspot.close()


def test_postgres_restart_costs_no_request(private_postgres_cluster) -> None:
    """After the database restarts, the next requests (hot path and general path) get a
    new connection instead of failing on a dead pooled one."""
    url = private_postgres_cluster.create_database()
    hubspot = LocalHubSpot(ServerSettings(database_url=url))
    try:
        tokens = _tokens(hubspot)
        _in_threads(4, lambda _i: hubspot.refresh(**CLIENT,
                                                  refresh_token=tokens["refresh_token"]))
        private_postgres_cluster.stop()
        private_postgres_cluster.restart_start_only()
        assert hubspot.refresh(**CLIENT, refresh_token=tokens["refresh_token"])
        assert hubspot.introspect(**CLIENT, token=tokens["access_token"])["active"]
        assert hubspot.installs()
        _in_threads(4, lambda _i: hubspot.refresh(**CLIENT,
                                                  refresh_token=tokens["refresh_token"]))
        assert hubspot.stats()["token"]["refresh_token"]["ok"] == 9
    finally:
        hubspot.close()


def test_a_connection_dropped_mid_transaction_is_a_database_error(postgres_url: str) -> None:
    """A hot-path transaction whose connection the database ends raises SQLAlchemy's
    error (the app answers 503), not an AttributeError from rolling back a connection
    that is gone (a 500)."""
    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    try:
        with pytest.raises(sa.exc.OperationalError) as info, FastTransaction(engine) as tx:
            pid = tx.first(_BACKEND_PID).pid
            with engine.connect() as other:
                other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            tx.first(_BACKEND_PID)
        assert info.value.connection_invalidated
        with engine.connect() as conn:  # the pool goes on with a new connection
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


_BACKEND_PID = HotStatement(sa.select(sa.func.pg_backend_pid().label("pid")))


# -- the hot paths' one-statement state + token read, on both dialects ------------------


def test_hot_paths_read_state_and_token_in_one_statement_with_every_rule(servers) -> None:
    """Refresh and introspection read the shared state and their token in one statement
    (on PostgreSQL introspection counts itself in it too): a queued fault, an unknown
    token, another client's token and apps changed by another process are each still
    answered, and counted once, as the general code does."""
    from hubspot_oauth.server.hubspot import FaultPending
    from hubspot_oauth.server.wire import OAuthError

    first, second = servers(), servers()
    tokens = _tokens(first)
    for endpoint in ("token", "introspect"):
        first.faults.add(endpoint=endpoint, fault="server_error")
    with pytest.raises(FaultPending):
        first.refresh(**CLIENT, refresh_token=tokens["refresh_token"], fault_endpoint="token")
    with pytest.raises(FaultPending):
        first.introspect(**CLIENT, token=tokens["access_token"], fault_endpoint="introspect")
    first.faults.clear()
    # No fault queued for the endpoint asked about: answered.
    assert first.refresh(**CLIENT, refresh_token=tokens["refresh_token"],
                         fault_endpoint="token")["refresh_token"] == tokens["refresh_token"]
    info = first.introspect(**CLIENT, token=tokens["access_token"], fault_endpoint="introspect")
    assert info["active"] is True and info["hub_id"] == ACME and info["user"] == ADMIN

    with pytest.raises(OAuthError) as unknown:
        first.refresh(**CLIENT, refresh_token="na1-0000-unknown")
    assert unknown.value.status == "BAD_REFRESH_TOKEN"
    before = first.stats()["introspect"]["ok"]
    assert first.introspect(**CLIENT, token="CNb-unknown-token") == {"active": False}
    # Counted once: by the general code (the hot path's count, if any, rolled back).
    assert first.stats()["introspect"]["ok"] == before + 1

    # Apps changed by another process: the fast path misses, the general code reloads.
    _, client_id, secret = second.create_app_registration(
        name="Other", redirect_urls=[REDIRECT], scopes=["crm.objects.contacts.read"])
    other = {"client_id": client_id, "client_secret": secret}
    assert first.introspect(**other, token=tokens["access_token"]) == {"active": False}
    with pytest.raises(OAuthError) as foreign:
        first.refresh(**other, refresh_token=tokens["refresh_token"])
    assert foreign.value.status == "BAD_REFRESH_TOKEN"
    assert first.introspect(**CLIENT, token=tokens["access_token"])["active"] is True
    assert first.stats() == second.stats()
