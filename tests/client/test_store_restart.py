"""PostgreSQL stopped and started under a token store (issue 5): calls during the outage
fail with the library's retryable error, later calls succeed, and no token is lost - not
even a rotated refresh token whose answer arrives while the database is down."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.postgres import PostgresCluster

from hubspot_oauth import TokenStore
from hubspot_oauth.client.crypto import KeyRing
from hubspot_oauth.client.store import StoreUnavailableError
from hubspot_oauth.errors import RetryableError

pytestmark = pytest.mark.postgres


@pytest.mark.hubspot(refresh_token_rotation="rotate")
def test_a_restart_fails_calls_retryably_and_loses_no_token(
    hubspot: Any, private_postgres_cluster: PostgresCluster, tmp_path: Path
) -> None:
    url = private_postgres_cluster.create_database()
    store = TokenStore(url, client=hubspot.oauth_client(), clock=hubspot.now,
                       encryption_keys=[KeyRing.generate_key()])
    watcher = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        key = store.save(hubspot.connect())
        hubspot.advance(1800)

        # 1. The database is down: the call fails with a retryable error, nothing changes.
        private_postgres_cluster.stop("fast")
        with pytest.raises(RetryableError) as info:
            store.access_token(key)
        assert isinstance(info.value, StoreUnavailableError)
        assert hubspot.refresh_count() == 0
        private_postgres_cluster.restart_start_only()
        first = store.access_token(key)
        assert hubspot.refresh_count() == 1

        # 2. The database goes down while a refresh is at HubSpot; HubSpot rotates the
        #    refresh token and answers before the database is back.
        hubspot.advance(1800)
        hubspot.fail_next("token", "delay", delay_ms=3000)
        result: dict[str, Any] = {}

        def call() -> None:
            try:
                result["token"] = store.access_token(key)
            except Exception as exc:  # noqa: BLE001 - reported below
                result["error"] = exc

        thread = threading.Thread(target=call)
        thread.start()
        deadline = time.monotonic() + 30
        leased = False
        while not leased and time.monotonic() < deadline and thread.is_alive():
            with watcher.connect() as connection:
                leased = connection.execute(sa.text(
                    "SELECT refreshing_until FROM hubspot_oauth_connections"
                )).scalar() is not None
        assert leased
        private_postgres_cluster.stop("fast")
        assert hubspot.refresh_count() == 1  # HubSpot has not answered yet
        deadline = time.monotonic() + 30
        while hubspot.refresh_count() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hubspot.refresh_count() == 2  # it answered (rotated) with the database down
        time.sleep(0.3)  # the store is now retrying its save
        assert thread.is_alive()
        private_postgres_cluster.restart_start_only()
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert "error" not in result, result.get("error")
        assert result["token"] != first
        assert hubspot.refresh_count() == 2 and hubspot.refresh_count("error") == 0

        # The rotated refresh token was saved: the next refresh works.
        stored = store.get(key)
        assert stored.access_token == result["token"]
        store.refresh(key)
        assert hubspot.refresh_count() == 3 and hubspot.refresh_count("error") == 0
        assert store.connection(key).status == "active"
    finally:
        watcher.dispose()
        store.close()
