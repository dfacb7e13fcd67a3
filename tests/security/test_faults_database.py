"""A read-only or full database file: every request that must write answers 503 in
HubSpot's shape with Retry-After (never a traceback, to the caller or in the log), reads
keep working, and the failed request changed nothing: once the database is writable again
the same code is exchanged normally."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from tests.security.harness import (
    assert_hubspot_error,
    changed_tables,
    snapshot,
    sqlite_path,
)


@pytest.fixture
def hubspot() -> Iterator[LocalHubSpotHandle]:
    with local_hubspot() as handle:
        yield handle


def _exchange(hubspot: LocalHubSpotHandle, code: str) -> dict[str, Any]:
    return {"data": {"grant_type": "authorization_code", "client_id": hubspot.client_id,
                     "client_secret": hubspot.client_secret, "code": code,
                     "redirect_uri": hubspot.redirect_uri}}


def _send_all(app: Any, calls: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8765") as c:
            return [await c.request(method, path, **kwargs) for method, path, kwargs in calls]

    return anyio.run(main)


def _assert_unavailable(response: httpx.Response) -> None:
    body = assert_hubspot_error(response, 503)
    assert body["category"] == "SERVICE_UNAVAILABLE"
    assert response.headers["retry-after"] == "1"
    assert "Traceback" not in response.text and "sqlite3" not in response.text


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert "Traceback" not in record.getMessage()


def test_read_only_database_gives_503_and_keeps_reads(
    hubspot: LocalHubSpotHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = hubspot.authorize()
    token = hubspot.connect()
    path = sqlite_path(hubspot.database_url)
    before = snapshot(hubspot.database_url)
    # The same file, opened read-only (chmod does not stop root; a read-only open does).
    read_only = create_app(ServerSettings(
        database_url=f"sqlite:///file:{path}?mode=ro&uri=true", control_api=True))
    try:
        bearer = {"headers": {"Authorization": f"Bearer {token.access_token}"}}
        writes = [
            ("POST", "/oauth/v3/token", _exchange(hubspot, code)),
            ("POST", "/oauth/v1/token", {"data": {
                "grant_type": "refresh_token", "client_id": hubspot.client_id,
                "client_secret": hubspot.client_secret, "refresh_token": token.refresh_token}}),
            ("POST", "/oauth/2026-03/token/revoke", {"data": {
                "client_id": hubspot.client_id, "client_secret": hubspot.client_secret,
                "token": token.refresh_token}}),
            ("DELETE", f"/oauth/v1/refresh-tokens/{token.refresh_token}", {}),
            ("POST", "/crm/v3/objects/contacts", {"json": {"properties": {"email": "a@b.c"}},
                                                  **bearer}),
            ("POST", "/_emulator/clock", {"json": {"advance": 60}}),
        ]
        responses = _send_all(read_only, writes)
        for response in responses:
            _assert_unavailable(response)
        reads = _send_all(read_only, [("GET", "/", {}), ("GET", "/openapi.json", {}),
                                      ("GET", "/_emulator/stats", {})])
        assert [r.status_code for r in reads] == [200, 200, 200]
    finally:
        read_only.state.hubspot.close()
    _no_tracebacks(caplog)
    assert not changed_tables(before, snapshot(hubspot.database_url))
    # Writable again (the normal app on the same file): the code was never consumed.
    with hubspot.http_client() as client:
        assert client.post("/oauth/v3/token", **_exchange(hubspot, code)).status_code == 200


def test_full_database_gives_503_and_loses_nothing(
    hubspot: LocalHubSpotHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    codes = [hubspot.authorize() for _ in range(60)]
    engine = hubspot.server.engine
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    def full(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA max_page_count = {pages}")  # "disk full" at today's size
        cursor.close()

    # Every SQLite connection, the server's pool and its own inline hot-path connection
    # (opened from the same URL on an engine of its own) alike; close() drops both.
    event.listen(sa.engine.Engine, "connect", full)
    hubspot.server.close()
    failed_code = None
    before = None
    try:
        with hubspot.http_client() as client:
            for code in codes:
                before = snapshot(hubspot.database_url)
                response = client.post("/oauth/v3/token", **_exchange(hubspot, code))
                if response.status_code != 200:
                    _assert_unavailable(response)
                    failed_code = code
                    break
            assert failed_code is not None, "the database never filled up"
            assert not changed_tables(before, snapshot(hubspot.database_url))
            # Reads still work on a full database.
            assert client.get("/openapi.json").status_code == 200
    finally:
        event.remove(sa.engine.Engine, "connect", full)
        hubspot.server.close()
    _no_tracebacks(caplog)
    with hubspot.http_client() as client:
        response = client.post("/oauth/v3/token", **_exchange(hubspot, failed_code))
        assert response.status_code == 200, response.text


@pytest.mark.postgres
def test_read_only_postgresql_gives_503_and_loses_nothing(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    import psycopg

    with local_hubspot(database_url=postgres_url) as hubspot:
        code = hubspot.authorize()
        url = sa.make_url(postgres_url)
        dsn = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{url.database}" SET default_transaction_read_only = on')
        hubspot.server.engine.dispose()  # new sessions pick the setting up
        try:
            with hubspot.http_client() as client:
                _assert_unavailable(client.post("/oauth/v3/token", **_exchange(hubspot, code)))
                assert client.get("/openapi.json").status_code == 200
        finally:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{url.database}" '
                              "SET default_transaction_read_only = off")
            hubspot.server.engine.dispose()
        _no_tracebacks(caplog)
        with hubspot.http_client() as client:
            assert client.post("/oauth/v3/token", **_exchange(hubspot, code)).status_code == 200
