"""The TokenStore's in-process cache of decrypted tokens, on SQLite and PostgreSQL.

A fresh token is served without SQL; a token within the leeway, this store's own writes,
``refresh(key, stale_access_token=…)`` and HubSpotAuth's 401 path never see a cached
token; other stores' changes are seen once `cache_ttl` has passed (a monotonic clock is
injected, so nothing here depends on timing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.client.test_store import (  # noqa: F401 - keys, make_store, stores: fixtures
    CONTACTS,
    StoppedClock,
    api_status,
    keys,
    make_store,
    stores,
)

from hubspot_oauth import TokenStore
from hubspot_oauth.client import store as store_module
from hubspot_oauth.errors import (
    ConfigurationError,
    ConnectionNotFoundError,
    ReauthorizationRequiredError,
)


class Monotonic:
    """A monotonic clock the test moves by hand (replaces time.monotonic in one store)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def counted_sql(store: TokenStore) -> Iterator[list[str]]:
    """Every SQL statement the store's engine sends while the block runs."""
    statements: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield statements
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", before)


def with_clock(store: TokenStore) -> Monotonic:
    clock = Monotonic()
    store._monotonic = clock  # the cache's age clock; expiry stays on store._clock
    return clock


# -- hits and misses ---------------------------------------------------------------------------


def test_a_cache_hit_makes_no_sql(hubspot: Any, make_store: Any) -> None:  # noqa: F811
    store = make_store()
    with_clock(store)  # entries never age: a slow run cannot turn a hit into a read
    token = hubspot.connect()
    key = store.save(token)
    with counted_sql(store) as first:
        assert store.access_token(key) == token.access_token
    assert first  # the first call reads the row
    with counted_sql(store) as hits:
        assert [store.access_token(key) for _ in range(50)] == [token.access_token] * 50
        assert store.valid_token(key).access_token == token.access_token
    assert hits == []
    assert hubspot.refresh_count() == 0


def test_a_token_within_the_leeway_is_refreshed_not_served_from_cache(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    token = hubspot.connect()
    clock = StoppedClock(token)  # the store's expiry clock: real time never counts
    store = make_store(clock=clock)
    with_clock(store)  # the entry stays young: only the store's expiry clock moves
    key = store.save(token)
    assert store.access_token(key) == token.access_token
    hubspot.advance(1800 - 301)
    clock.advance(1800 - 301)  # 301 s left, leeway 300: still served
    with counted_sql(store) as hits:
        assert store.access_token(key) == token.access_token
    assert hits == []
    hubspot.advance(2)
    clock.advance(2)  # 299 s left: due
    fresh = store.access_token(key)
    assert fresh != token.access_token
    assert hubspot.refresh_count() == 1
    assert api_status(hubspot, fresh) == 200
    with counted_sql(store) as hits:  # the refreshed token is what the cache now holds
        assert store.access_token(key) == fresh
    assert hits == []
    hubspot.advance(1800)
    clock.advance(1800)  # expired outright: never from the cache
    newest = store.access_token(key)
    assert newest not in (token.access_token, fresh)
    assert hubspot.refresh_count() == 2


def test_cache_ttl_zero_always_reads(hubspot: Any, make_store: Any) -> None:  # noqa: F811
    store, other = make_store(cache_ttl=0), make_store()
    token = hubspot.connect()
    key = store.save(token)
    for _ in range(3):
        with counted_sql(store) as statements:
            assert store.access_token(key) == token.access_token
        assert statements
    other.delete(key)
    with pytest.raises(ConnectionNotFoundError):  # another store's delete: seen at once
        store.access_token(key)


def test_a_negative_cache_ttl_is_a_configuration_error(
    make_store: Any,  # noqa: F811
) -> None:
    with pytest.raises(ConfigurationError, match="cache_ttl"):
        make_store(cache_ttl=-1)


# -- this store's writes are seen at once --------------------------------------------------------


def test_own_delete_save_and_refresh_are_seen_at_once(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    store = make_store()
    with_clock(store)  # entries never age: only invalidation can make them go
    token = hubspot.connect()
    key = store.save(token)
    assert store.access_token(key) == token.access_token

    forced = store.refresh(key)
    assert forced.access_token != token.access_token
    assert store.access_token(key) == forced.access_token

    reinstalled = hubspot.connect()
    store.save(reinstalled, key=key, describe=False)
    assert store.access_token(key) == reinstalled.access_token

    assert store.delete(key) is True
    with pytest.raises(ConnectionNotFoundError):
        store.access_token(key)
    store.save(token, key=key, describe=False)  # same key again, version starts over
    assert store.access_token(key) == token.access_token


def test_stale_access_token_refresh_reads_the_database(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    store = make_store()
    with_clock(store)
    token = hubspot.connect()
    key = store.save(token)
    assert store.access_token(key) == token.access_token  # cached
    with counted_sql(store) as statements:
        forced = store.refresh(key, stale_access_token=token.access_token)
    assert statements and forced.access_token != token.access_token
    assert hubspot.refresh_count() == 1
    # The stale token again (a second 401 answered late): the database says it was
    # replaced, so no second refresh, and the cache does not answer instead.
    with counted_sql(store) as statements:
        again = store.refresh(key, stale_access_token=token.access_token)
    assert statements and again.access_token == forced.access_token
    assert hubspot.refresh_count() == 1


def test_a_connection_marked_for_reauthorization_is_not_served_from_cache(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    store = make_store()
    with_clock(store)
    token = hubspot.connect()
    key = store.save(token)
    assert store.access_token(key) == token.access_token  # cached, far from expiry
    hubspot.uninstall()
    with pytest.raises(ReauthorizationRequiredError):
        store.refresh(key)
    with pytest.raises(ReauthorizationRequiredError) as info:  # not the cached token
        store.access_token(key)
    assert info.value.connection_key == key


def test_rotate_keys_drops_entries_and_tokens_still_read(
    hubspot: Any, make_store: Any, keys: list[str]  # noqa: F811
) -> None:
    from hubspot_oauth.client.crypto import KeyRing

    old = make_store()
    key = old.save(hubspot.connect())
    ring = make_store(encryption_keys=[KeyRing.generate_key(), *keys])
    with_clock(ring)
    token = ring.access_token(key)
    assert ring.rotate_keys() == 1
    with counted_sql(ring) as statements:
        assert ring.access_token(key) == token
    assert statements  # the entry was dropped; the re-encrypted row reads the same


def test_a_read_that_races_a_write_does_not_cache_the_old_row(
    hubspot: Any, make_store: Any, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """A reader reads the row, then (before it caches it) this store saves a new token:
    the reader's old token must not be cached over the write."""
    store = make_store()
    with_clock(store)
    token, newer = hubspot.connect(), hubspot.connect()
    key = store.save(token)
    real_read = store._read
    raced = []

    def read_then_write(k: str) -> Any:
        row = real_read(k)
        if not raced:
            raced.append(k)
            store.save(newer, key=key, describe=False)
        return row

    monkeypatch.setattr(store, "_read", read_then_write)
    assert store.access_token(key) == token.access_token  # what it read, once
    monkeypatch.setattr(store, "_read", real_read)
    assert store.access_token(key) == newer.access_token


def test_a_refresh_that_races_a_save_does_not_cache_its_own_token(
    hubspot: Any, make_store: Any, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    """The refresh's UPDATE lands, then a re-install is saved before the refresh caches
    its result: the re-installed token wins."""
    store = make_store()
    with_clock(store)
    key = store.save(hubspot.connect())
    reinstalled = hubspot.connect()
    real_save = store._save_refreshed

    def save_then_reinstall(where: Any, **values: Any) -> bool:
        saved = real_save(where, **values)
        store.save(reinstalled, key=key, describe=False)
        return saved

    monkeypatch.setattr(store, "_save_refreshed", save_then_reinstall)
    store.refresh(key)
    monkeypatch.setattr(store, "_save_refreshed", real_save)
    assert store.access_token(key) == reinstalled.access_token


# -- other stores' writes are seen within cache_ttl ------------------------------------------------


def test_another_stores_delete_and_refresh_are_seen_after_cache_ttl(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    reader, writer = make_store(cache_ttl=5.0), make_store()
    age = with_clock(reader)
    token = hubspot.connect()
    key = writer.save(token)
    assert reader.access_token(key) == token.access_token

    refreshed = writer.refresh(key)
    assert reader.access_token(key) == token.access_token  # within cache_ttl: the bound
    age.advance(5.0)
    assert reader.access_token(key) == refreshed.access_token
    assert hubspot.refresh_count() == 1

    assert writer.delete(key) is True
    age.advance(4.9)
    assert reader.access_token(key) == refreshed.access_token
    age.advance(0.1)
    with pytest.raises(ConnectionNotFoundError):
        reader.access_token(key)


def test_another_stores_reauthorization_marking_is_seen_after_cache_ttl(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    reader, writer = make_store(), make_store()
    age = with_clock(reader)
    key = writer.save(hubspot.connect())
    reader.access_token(key)
    hubspot.uninstall()
    with pytest.raises(ReauthorizationRequiredError):
        writer.refresh(key)
    age.advance(reader.cache_ttl)
    with pytest.raises(ReauthorizationRequiredError):
        reader.access_token(key)


# -- bounds, threads, secrets ----------------------------------------------------------------------


def test_the_cache_is_bounded(
    hubspot: Any, make_store: Any, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    monkeypatch.setattr(store_module, "CACHE_ENTRIES", 3)
    store = make_store()
    with_clock(store)  # only eviction may drop an entry, never its age
    tokens = {f"k{i}": hubspot.connect() for i in range(6)}
    for key, token in tokens.items():
        store.save(token, key=key, describe=False)
    for _ in range(2):
        for key, token in tokens.items():
            assert store.access_token(key) == token.access_token
            assert len(store._cache) <= 3
    with counted_sql(store) as statements:  # the most recent entry is still cached
        assert store.access_token("k5") == tokens["k5"].access_token
    assert statements == []


def test_threads_reading_while_the_store_writes_end_on_the_last_write(
    hubspot: Any, make_store: Any  # noqa: F811
) -> None:
    store = make_store()
    with_clock(store)
    saved = [hubspot.connect() for _ in range(8)]
    key = store.save(saved[0])
    seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            for _ in range(2000):  # bounded
                seen.add(store.access_token(key))
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for token in saved[1:]:
        store.save(token, key=key, describe=False)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert seen <= {t.access_token for t in saved}
    assert store.access_token(key) == saved[-1].access_token


def test_cached_tokens_never_appear_in_reprs_or_logs(
    hubspot: Any, make_store: Any, caplog: pytest.LogCaptureFixture  # noqa: F811
) -> None:
    caplog.set_level(logging.DEBUG)
    store = make_store()
    token = hubspot.connect()
    key = store.save(token)
    store.access_token(key)
    fresh = store.refresh(key)
    store.access_token(key)
    texts = [repr(store), repr(store._cache), str(store._cache), caplog.text]
    for secret in (token.access_token, token.refresh_token, fresh.access_token,
                   fresh.refresh_token):
        assert all(secret not in text for text in texts)


# -- HubSpotAuth's 401 path ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_401_with_a_cached_token_refreshes_exactly_once(
    hubspot: Any, make_store: Any, kind: str  # noqa: F811
) -> None:
    """The store's clock (the real one) thinks the cached token is fresh; HubSpot's clock
    says it expired. HubSpotAuth's refresh must read the database, refresh once, and the
    retried request succeeds; the next request uses the new cached token."""
    store = make_store(clock=None)
    with_clock(store)
    key = store.save(hubspot.connect())
    stale = store.access_token(key)  # cached
    hubspot.advance(1900)
    auth = store.auth(key)
    if kind == "sync":
        with hubspot.http_client(auth=auth) as http:
            statuses = [http.get(CONTACTS).status_code for _ in range(2)]
    else:
        import anyio

        async def go() -> list[int]:
            async with httpx.AsyncClient(base_url=hubspot.base_url,
                                         transport=hubspot.transport, auth=auth) as http:
                return [(await http.get(CONTACTS)).status_code for _ in range(2)]

        statuses = anyio.run(go)
    assert statuses == [200, 200]
    assert hubspot.refresh_count() == 1
    assert hubspot.stats()["api"]["error"] == 1  # only the first, stale attempt
    with counted_sql(store) as statements:
        assert store.access_token(key) != stale
    assert statements == []
