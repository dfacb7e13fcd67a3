"""Fixtures shared by the whole suite: database URLs on SQLite and PostgreSQL, free ports,
and the components that may be missing (skipped with a reason, failing under CI=true)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.components import IN_CI, free_port
from tests.support.postgres import PostgresCluster, running_cluster

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see the developer's own HubSpot settings."""
    for name in list(os.environ):
        if name.startswith("HUBSPOT_") or name in {"CLIENT_ID", "CLIENT_SECRET", "SCOPE"}:
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL server for the whole run."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def private_postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of this test's own, which it may stop and start (stopping the
    session's `postgres_cluster` would break other tests)."""
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return postgres_cluster.create_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for one test."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every storage test runs on both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    return cluster.create_database()


@pytest.fixture
def unused_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests write screenshots and other things a person should look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_report_header() -> str:
    policy = "fail" if IN_CI else "skip"
    return f"hubspot-oauth tests; CI={str(IN_CI).lower()} (missing components {policy})"
