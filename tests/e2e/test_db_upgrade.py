"""Schema through the real CLI on SQLite and PostgreSQL (issue 5):
`hubspot-oauth db upgrade --for all --database-url …` applies both migration sets to an
empty database, after which `hubspot-oauth server` and `TokenStore` open it; a database
whose schema is behind (an older revision, or a version row dropped) is refused by the
server and by the store with one line naming the command that fixes it (or saying why no
command can), and nothing is changed; after the named command the server starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.e2e.server_processes import ServerProcess, run_cli
from tests.support.components import free_port

from hubspot_oauth import TokenStore
from hubspot_oauth.client.crypto import KeyRing
from hubspot_oauth.client.migrations import HEAD as STORE_HEAD
from hubspot_oauth.client.migrations import VERSION_TABLE as STORE_VERSION
from hubspot_oauth.errors import SchemaOutdatedError
from hubspot_oauth.server.models import SCHEMA_REVISION as SERVER_HEAD
from hubspot_oauth.server.models import VERSION_TABLE as SERVER_VERSION
from hubspot_oauth.server.storage import MIGRATIONS as SERVER_MIGRATIONS

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = sa.create_engine(database_url)
    yield made
    made.dispose()


def versions(engine: sa.Engine) -> dict[str, list[str] | None]:
    """Each version table's rows (None when the table does not exist)."""
    found: dict[str, list[str] | None] = {}
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
        for table in (STORE_VERSION, SERVER_VERSION):
            found[table] = ([r[0] for r in conn.execute(sa.text(f"SELECT version_num FROM {table}"))]  # noqa: S608, E501
                            if table in tables else None)
    return found


def one_line_error(result) -> str:  # noqa: ANN001
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one line, never a traceback
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def server_at_0001(database_url: str) -> None:
    """The local HubSpot's schema as the previous release left it (revision 0001)."""
    from alembic import command
    from alembic.config import Config

    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(SERVER_MIGRATIONS))
            config.attributes["connection"] = conn
            command.upgrade(config, "0001_initial")
    finally:
        engine.dispose()


def test_db_upgrade_applies_both_migration_sets_to_an_empty_database(
    database_url: str, engine: sa.Engine, tmp_path: Path,
) -> None:
    assert versions(engine) == {STORE_VERSION: None, SERVER_VERSION: None}
    result = run_cli(["db", "upgrade", "--for", "all", "--database-url", database_url],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"token store schema of {database_url} is at revision {STORE_HEAD}" in result.stdout
    assert f"local HubSpot schema of {database_url} is at revision {SERVER_HEAD}" in (
        result.stdout)
    assert versions(engine) == {STORE_VERSION: [STORE_HEAD], SERVER_VERSION: [SERVER_HEAD]}
    again = run_cli(["db", "upgrade", "--for", "all", "--database-url", database_url],
                    tmp_path)
    assert again.returncode == 0, again.stderr  # idempotent
    # Both sides open the upgraded database without creating anything.
    with TokenStore(database_url, encryption_keys=[KeyRing.generate_key()],
                    create_schema=False) as store:
        assert store.connections() == []
    with ServerProcess(database_url, tmp_path / "server") as server:
        assert httpx.get(server.base_url + "/_emulator/stats", timeout=30).status_code == 200


def test_the_default_upgrades_only_the_store(
    database_url: str, engine: sa.Engine, tmp_path: Path,
) -> None:
    result = run_cli(["db", "upgrade", "--database-url", database_url], tmp_path)
    assert result.returncode == 0, result.stderr
    assert versions(engine) == {STORE_VERSION: [STORE_HEAD], SERVER_VERSION: None}


def test_the_server_refuses_a_schema_behind_and_names_the_command(
    database_url: str, engine: sa.Engine, tmp_path: Path,
) -> None:
    server_at_0001(database_url)
    refused = run_cli(["server", "--port", str(free_port()), "--database-url", database_url],
                      tmp_path)
    line = one_line_error(refused)
    assert "is at local HubSpot schema revision '0001_initial'" in line
    assert f"needs '{SERVER_HEAD}'" in line
    command = f"hubspot-oauth db upgrade --for server --database-url {database_url}"
    assert command in line
    assert versions(engine)[SERVER_VERSION] == ["0001_initial"]  # nothing changed
    # The named command is the fix.
    fixed = run_cli(command.split()[1:], tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert versions(engine)[SERVER_VERSION] == [SERVER_HEAD]
    with ServerProcess(database_url, tmp_path / "server"):
        pass


def test_the_server_refuses_tables_without_a_version_row(
    database_url: str, engine: sa.Engine, tmp_path: Path,
) -> None:
    upgraded = run_cli(["db", "upgrade", "--for", "server", "--database-url", database_url],
                       tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {SERVER_VERSION}"))  # noqa: S608
    for args in (["server", "--port", str(free_port())], ["db", "upgrade", "--for", "server"]):
        line = one_line_error(run_cli([*args, "--database-url", database_url], tmp_path))
        assert "has local HubSpot tables but no schema revision" in line, line
        assert "use a new database" in line
    assert versions(engine)[SERVER_VERSION] == []


def test_the_store_refuses_tables_without_a_version_row(
    database_url: str, engine: sa.Engine, tmp_path: Path,
) -> None:
    keys = [KeyRing.generate_key()]
    TokenStore(database_url, encryption_keys=keys).close()  # creates the store's schema
    with engine.begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {STORE_VERSION}"))  # noqa: S608
    with pytest.raises(SchemaOutdatedError) as info:
        TokenStore(database_url, encryption_keys=keys)
    message = str(info.value)
    assert "has hubspot-oauth store tables but no revision" in message
    assert f"hubspot-oauth db upgrade --database-url {database_url}" in message
    # The CLI says the same in one line, and `db upgrade` refuses rather than half-apply.
    for args in (["tokens", "list"], ["db", "upgrade"]):
        line = one_line_error(run_cli([*args, "--database-url", database_url], tmp_path,
                                      env={"HUBSPOT_OAUTH_ENCRYPTION_KEYS": keys[0]}))
        assert "has hubspot-oauth store tables but no revision" in line, line
    assert versions(engine)[STORE_VERSION] == []
    # What the message says to do works.
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO {STORE_VERSION} (version_num) VALUES ('0001')"))  # noqa: S608
    fixed = run_cli(["db", "upgrade", "--database-url", database_url], tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    with TokenStore(database_url, encryption_keys=keys, create_schema=False) as store:
        assert store.connections() == []


def test_the_store_refuses_a_schema_newer_than_it_knows(
    database_url: str, engine: sa.Engine, tmp_path: Path,
) -> None:
    keys = [KeyRing.generate_key()]
    TokenStore(database_url, encryption_keys=keys).close()
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {STORE_VERSION} SET version_num = '9999'"))  # noqa: S608
    line = one_line_error(run_cli(["tokens", "list", "--database-url", database_url],
                                  tmp_path, env={"HUBSPOT_OAUTH_ENCRYPTION_KEYS": keys[0]}))
    assert "revision '9999', newer than this version" in line, line
    assert "upgrade the package" in line
