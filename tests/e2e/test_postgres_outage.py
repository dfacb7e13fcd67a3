"""PostgreSQL stopped and started under a running `hubspot-oauth server` and a TokenStore on
the same PostgreSQL server (issue 5).

* Refreshes in flight when PostgreSQL stops (held at the token endpoint by a queued
  ``delay`` fault) fail with the library's retryable error: the server answers 503
  ``SERVICE_UNAVAILABLE`` in HubSpot's shape, the client's retries run out, the store
  re-raises that `RetryableError` and keeps its stored token.
* While PostgreSQL is down, the token store raises `StoreUnavailableError` (a
  `TokenStoreError` and a `RetryableError`) and the state store
  `StateStoreUnavailableError` (a `StateError` and a `RetryableError`), never a raw
  SQLAlchemy error, and the server keeps running.
* Once PostgreSQL is back, every stored refresh token still works (rotation on, so a lost
  rotation would show as BAD_REFRESH_TOKEN) and the rotated ones are saved.
* After a restart while both were idle, the first calls succeed: both pools ping a
  connection before use, so no request fails on a connection to the old server.

The test runs its own PostgreSQL cluster so the session's cluster is never stopped.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.server_processes import (
    ADMIN,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    ServerProcess,
    api_status,
    issue_code,
)
from tests.support.postgres import PostgresCluster

from hubspot_oauth import Endpoints, OAuthClient, RetryPolicy, TokenStore
from hubspot_oauth.client.crypto import KeyRing
from hubspot_oauth.client.state import StateStore, StateStoreUnavailableError
from hubspot_oauth.client.store import StoreUnavailableError
from hubspot_oauth.errors import RetryableError, ServerError, TokenStoreError

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

CONNECTIONS = 4
DELAY_MS = 6000  # holds each refresh at the token endpoint while PostgreSQL stops (~1 s)


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def test_postgresql_stopped_and_started_during_refreshes(
    private_postgres_cluster: PostgresCluster, tmp_path: Path,
) -> None:
    server_url = private_postgres_cluster.create_database("hubspot")
    store_url = private_postgres_cluster.create_database("tokens")
    server = ServerProcess(server_url, tmp_path / "server", "--auto-approve", ADMIN,
                           "--refresh-token-rotation", "rotate").start()
    client = OAuthClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                         redirect_uri=REDIRECT_URI, endpoints=Endpoints.local(server.base_url),
                         retry=RetryPolicy(attempts=3, backoff=0.2, max_delay=1,
                                           max_total_wait=5))
    # A short lease: a refresh that fails while the database is down cannot release its
    # lease, and the next caller waits for it to expire.
    store = TokenStore(store_url, client=client, encryption_keys=[KeyRing.generate_key()],
                       refresh_lease=2.0, refresh_wait=30.0)
    states = StateStore(store.engine)
    try:
        nonce = states.issue({"user": 42}, ttl=3600)
        keys = [store.save(client.exchange_code(issue_code(server)), key=f"c{i}")
                for i in range(CONNECTIONS)]
        before = {key: store.get(key) for key in keys}

        # -- refreshes in flight when PostgreSQL stops ----------------------------------
        queued = httpx.post(server.base_url + "/_emulator/faults", timeout=30, json={
            "endpoint": "token", "fault": "delay", "times": CONNECTIONS,
            "delay_ms": DELAY_MS})
        assert queued.status_code == 201, queued.text
        outcomes: dict[str, Any] = {}

        def refresh(key: str) -> None:
            try:
                outcomes[key] = store.refresh(key)
            except Exception as exc:  # noqa: BLE001 - the test inspects it
                outcomes[key] = exc

        threads = [threading.Thread(target=refresh, args=(key,), daemon=True) for key in keys]
        for thread in threads:
            thread.start()
        # Every refresh has taken its delay fault: all of them are now inside the server.
        wait_until(lambda: httpx.get(server.base_url + "/_emulator/faults",
                                     timeout=10).json()["faults"] == [],
                   20, "the refreshes to reach the token endpoint")
        private_postgres_cluster.stop("fast")
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        for key in keys:
            error = outcomes[key]
            assert isinstance(error, ServerError), (key, error)
            assert isinstance(error, RetryableError)
            assert error.status_code == 503
            assert error.category == "SERVICE_UNAVAILABLE"

        # -- while PostgreSQL is down ---------------------------------------------------
        answer = httpx.post(server.base_url + "/oauth/v3/token", timeout=30, data={
            "grant_type": "refresh_token", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "refresh_token": before["c0"].refresh_token})
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["status"] == "error"
        assert body["category"] == "SERVICE_UNAVAILABLE"
        assert body["correlationId"] == answer.headers["x-hubspot-correlation-id"]
        assert "database is unavailable" in body["message"]
        assert answer.headers["retry-after"] == "1"
        page = httpx.get(server.base_url + "/oauth/authorize", timeout=30, params={
            "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
            "scope": "crm.objects.contacts.read"})
        assert page.status_code == 503, page.text
        for call in (lambda: store.access_token("c0"), lambda: store.get("c1"),
                     lambda: store.refresh("c2"), store.connections,
                     lambda: store.save(before["c3"], key="c3")):
            with pytest.raises(StoreUnavailableError) as info:
                call()
            assert isinstance(info.value, TokenStoreError)
            assert isinstance(info.value, RetryableError)
            assert "unavailable" in str(info.value)
        for call in (lambda: states.issue({"user": 43}), lambda: states.consume(nonce)):
            with pytest.raises(StateStoreUnavailableError) as state_info:
                call()
            assert isinstance(state_info.value, RetryableError)
        with pytest.raises(StateStoreUnavailableError):
            StateStore(store_url)
        assert server.process is not None and server.process.poll() is None

        # -- PostgreSQL back ----------------------------------------------------------
        private_postgres_cluster.restart_start_only()
        assert states.consume(nonce) == {"user": 42}  # the state survived the outage
        for key in keys:
            fresh = store.refresh(key)  # the stored refresh token still works
            assert fresh.refresh_token != before[key].refresh_token  # rotated ...
            assert store.get(key).refresh_token == fresh.refresh_token  # ... and saved
            assert api_status(server, fresh.access_token) == (200, None)
        for key in keys:
            assert store.refresh(key).access_token != before[key].access_token
        assert [c.status for c in store.connections()] == ["active"] * CONNECTIONS

        # -- a restart nobody saw: the pools hold connections to the old PostgreSQL -----
        private_postgres_cluster.stop("fast")
        private_postgres_cluster.restart_start_only()
        assert store.get("c0").refresh_token  # the store's first query after the restart
        first = httpx.get(server.base_url + "/_emulator/stats", timeout=30)
        assert first.status_code == 200, first.text  # the server's first request
        for key in keys:
            fresh = store.refresh(key)
            assert api_status(server, fresh.access_token) == (200, None)
    finally:
        store.close()
        client.close()
        server.stop()
