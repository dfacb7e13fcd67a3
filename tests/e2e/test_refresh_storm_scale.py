"""Issue 5's storm: 8 worker processes x 10 threads on one token store holding 50
connections whose access tokens have all expired, through the local HubSpot.

Exactly 50 refresh grants, 0 errors, every caller a valid token; with the server's
`rotate` switch no BAD_REFRESH_TOKEN and no lost refresh token. The same storm runs on
SQLite and PostgreSQL in one run and the wall times are printed side by side (never
asserted). The harness is in test_refresh_storm.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.test_refresh_storm import (
    check_storm,
    expired_connections,
    report,
    run_storm,
)

from hubspot_oauth import TokenStore
from hubspot_oauth.client.crypto import KeyRing

PROCESSES, THREADS, CONNECTIONS = 8, 10, 50

_walls: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def _wall_time_summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if _walls:
        rows = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in _walls.items())
        report(request, f"refresh storm {PROCESSES}x{THREADS} on {CONNECTIONS} connections, "
                        f"wall time: {rows}")


# The matrix: SQLite for the wall-time comparison, PostgreSQL with and without
# rotation (a SQLite rotation storm runs in test_refresh_storm.py).
CASES = [
    pytest.param(("sqlite", "off"), id="sqlite-off"),
    pytest.param(("postgresql", "off"), id="postgresql-off", marks=pytest.mark.postgres),
    pytest.param(("postgresql", "rotate"), id="postgresql-rotate",
                 marks=pytest.mark.postgres),
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture
def rotation(case: tuple[str, str]) -> str:
    return case[1]


@pytest.fixture
def database_url(case: tuple[str, str], request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("sqlite_url" if case[0] == "sqlite" else "postgres_url")


@pytest.fixture
def served(rotation: str, tmp_path: Path) -> Iterator[Any]:
    from hubspot_oauth.testing import local_hubspot

    with local_hubspot(serve=True, directory=tmp_path / "hubspot",
                       refresh_token_rotation=rotation, rate_limit_max=10_000) as hubspot:
        yield hubspot


def test_storm_on_one_store(
    served: Any, database_url: str, rotation: str, tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    hubspot = served
    encryption_key = KeyRing.generate_key()
    store = TokenStore(database_url, client=hubspot.oauth_client(),
                       encryption_keys=[encryption_key])
    try:
        keys = expired_connections(hubspot, store, CONNECTIONS)
        before = {key: store.get(key).refresh_token for key in keys}
        storm = run_storm(hubspot, database_url, encryption_key, keys,
                          processes=PROCESSES, threads=THREADS, workdir=tmp_path / "storm")
        check_storm(hubspot, storm, store)
        if rotation == "rotate":
            # Every rotated refresh token was saved with its access token and still works.
            assert all(store.get(key).refresh_token != before[key] for key in keys)
        for key in keys[:5]:
            store.refresh(key)
        assert hubspot.refresh_count("error") == 0
        backend = database_url.split(":", 1)[0].split("+", 1)[0]
        _walls[f"{backend}/{rotation}"] = storm.wall_seconds
        report(request, f"refresh storm {backend} {PROCESSES}x{THREADS} on {CONNECTIONS} "
                        f"connections (rotation {rotation}): {storm.wall_seconds:.2f} s wall, "
                        f"{len(storm.results)} calls")
    finally:
        store.close()
