"""What a fresh user following the README met: read-only commands that created files,
unsupported database URLs, where `login` keeps local tokens, one-line messages that name
what the user can actually do, and `--help` examples on every group."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet

from hubspot_oauth import TokenStore
from hubspot_oauth.cli import cli
from tests.support.components import free_port

from .conftest import LocalHubSpot
from .test_commands import _listening, _start, _stop, _wait_for
from .test_login import FakeBrowser

READ_ONLY = [
    ["tokens", "list"],
    ["tokens", "show", "1234567"],
    ["tokens", "show", "1234567", "--reveal"],
    ["tokens", "introspect", "1234567"],
    ["tokens", "refresh", "1234567"],
    ["tokens", "refresh", "--all"],
    ["tokens", "revoke", "1234567"],
]
CREDENTIALS = {"HUBSPOT_CLIENT_ID": "abc", "HUBSPOT_CLIENT_SECRET": "def"}


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOT_OAUTH_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("HUBSPOT_OAUTH_DATABASE_URL", raising=False)
    monkeypatch.delenv("HUBSPOT_BASE_URL", raising=False)


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_read_only_commands_on_a_new_machine_create_nothing(
    command: list[str], tmp_path: Path, data_dir: Path, no_key
) -> None:
    before = _tree(tmp_path)
    result = CliRunner().invoke(cli, command, env=CREDENTIALS)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: no token store at {data_dir / 'tokens.db'}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Warning" not in result.stderr
    assert _tree(tmp_path) == before  # no data directory, database or key file


@pytest.mark.parametrize("command", READ_ONLY, ids=" ".join)
def test_a_database_url_in_a_missing_directory_creates_nothing(
    command: list[str], tmp_path: Path, data_dir: Path, no_key
) -> None:
    target = tmp_path / "nonexistent" / "dir" / "x.db"
    result = CliRunner().invoke(cli, [*command, "--database-url", f"sqlite:///{target}"],
                                env=CREDENTIALS)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"Error: no token store at {target}")
    assert not (tmp_path / "nonexistent").exists()
    assert not data_dir.exists()


def test_read_only_commands_on_an_empty_store_make_no_key_file(
    tmp_path: Path, data_dir: Path, no_key
) -> None:
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    TokenStore(url, encryption_keys=[Fernet.generate_key().decode()]).close()
    before = _tree(tmp_path)
    listed = CliRunner().invoke(cli, ["tokens", "list", "--database-url", url])
    assert listed.exit_code == 0 and "No connections in" in listed.stdout
    assert listed.stderr == ""  # no key-file warning
    refreshed = CliRunner().invoke(cli, ["tokens", "refresh", "--all", "--database-url", url],
                                   env=CREDENTIALS)
    assert refreshed.exit_code == 0 and "No connections to refresh." in refreshed.stdout
    shown = CliRunner().invoke(cli, ["tokens", "show", "acme", "--database-url", url])
    assert shown.stderr.strip() == "Error: no HubSpot connection stored under key 'acme'"
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("command", [
    ["tokens", "list"], ["db", "upgrade"], ["server", "--port", str(free_port())], ["login"],
], ids=" ".join)
def test_unsupported_database_says_which_are_supported(
    command: list[str], data_dir: Path, no_key
) -> None:
    result = CliRunner().invoke(cli, [*command, "--database-url", "mysql://a@b/c"],
                                env=CREDENTIALS)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "ModuleNotFoundError" not in line
    assert line == ("Error: unsupported database mysql://a@b/c: hubspot-oauth supports only "
                    "sqlite:///path/tokens.db or postgresql+psycopg://user:password@host/dbname")


def test_missing_psycopg_names_the_extra(data_dir: Path, no_key, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "psycopg" else real(name, *a))
    result = CliRunner().invoke(cli, ["tokens", "list", "--database-url",
                                      "postgresql+psycopg://app@db/hubspot"])
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("pip install 'hubspot-oauth[postgres]'")


def test_the_library_names_the_supported_databases() -> None:
    from hubspot_oauth import ConfigurationError

    with pytest.raises(ConfigurationError, match="only sqlite:///"):
        TokenStore("mysql://a@b/c")


def test_login_to_a_local_hubspot_keeps_tokens_apart_from_real_ones(
    local_hubspot: LocalHubSpot, data_dir: Path, monkeypatch
) -> None:
    """HUBSPOT_BASE_URL set and no database URL: login saves into local-hubspot-tokens.db
    (where the quickstart keeps its local connections), never tokens.db, and `tokens list`
    with the same environment reads it."""
    env = {k: v for k, v in local_hubspot.env().items() if k != "HUBSPOT_OAUTH_DATABASE_URL"}
    monkeypatch.delenv("HUBSPOT_OAUTH_DATABASE_URL", raising=False)
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = CliRunner().invoke(cli, ["login", "--timeout", "30"], env=env)
    browser.join()
    assert result.exit_code == 0, result.output
    assert (data_dir / "local-hubspot-tokens.db").is_file()
    assert not (data_dir / "tokens.db").exists()
    listed = CliRunner().invoke(cli, ["tokens", "list", "--json"], env=env)
    assert [row["key"] for row in json.loads(listed.stdout)] == ["1234567"]
    # Without HUBSPOT_BASE_URL the CLI means real HubSpot's store, which does not exist.
    real = CliRunner().invoke(cli, ["tokens", "list"],
                              env={**env, "HUBSPOT_BASE_URL": ""})
    assert real.exit_code == 1 and "tokens.db" in real.stderr


def test_quickstart_and_login_agree_on_the_local_token_file() -> None:
    from hubspot_oauth.cli.common import LOCAL_TOKENS_DB
    from hubspot_oauth.cli.local import _local_tokens_db

    assert _local_tokens_db(3000, uses_seed_app=True) == LOCAL_TOKENS_DB
    assert _local_tokens_db(8080, uses_seed_app=False) == "local-hubspot-tokens-port-8080.db"


@pytest.mark.parametrize("env,missing", [
    ({"HUBSPOT_CLIENT_ID": "abc"}, "HUBSPOT_CLIENT_SECRET"),
    ({"HUBSPOT_CLIENT_SECRET": "abc"}, "HUBSPOT_CLIENT_ID"),
])
def test_quickstart_missing_credential_names_the_environment(
    env: dict[str, str], missing: str, data_dir: Path
) -> None:
    result = CliRunner().invoke(cli, ["quickstart", "--port", str(free_port())], env=env)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith(f"Error: missing {missing} in the environment")
    assert "flag" not in line  # the quickstart has no --client-secret flag


def test_second_quickstart_suggests_a_command_that_takes_a_port(
    data_dir: Path, monkeypatch
) -> None:
    """`make run` cannot pass --port: the message names the venv's command."""
    monkeypatch.setattr("sys.argv", [os.path.join(".venv", "bin", "hubspot-oauth"),
                                     "quickstart"])
    monkeypatch.setenv("PATH", "/nonexistent")
    port = free_port()
    with _listening(port):
        result = CliRunner().invoke(cli, ["quickstart", "--port", str(port),
                                          "--hubspot-port", str(free_port())])
    assert result.exit_code == 1
    assert ".venv/bin/hubspot-oauth quickstart --port 8080" in result.stderr
    assert "make run" in result.stderr and "use --port" not in result.stderr


@pytest.mark.parametrize("group", ["tokens", "db"])
def test_every_group_help_has_an_example(group: str) -> None:
    result = CliRunner().invoke(cli, [group, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and f"hubspot-oauth {group} " in result.stdout


def test_short_admin_token_is_documented_and_one_line(data_dir: Path) -> None:
    assert "at least 8 characters" in CliRunner().invoke(cli, ["server", "--help"]).stdout
    result = CliRunner().invoke(cli, ["server", "--port", str(free_port()),
                                      "--admin-token", "T0ken"])
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: --admin-token (HUBSPOT_OAUTH_ADMIN_TOKEN) must "
                                     "be at least 8 characters; got 5")


def test_quickstart_on_another_port_prints_the_app_it_uses(tmp_path: Path) -> None:
    """Port 8080-style runs use an app registered for that port: the banner names that app
    and its own token file, and the install link carries that client_id."""
    port, hub_port = free_port(), free_port()
    proc = _start(["quickstart", "--port", str(port)],
                  {"HUBSPOT_OAUTH_DATA_DIR": str(tmp_path),
                   "HUBSPOT_OAUTH_LOCAL_HUBSPOT_PORT": str(hub_port)})
    try:
        _wait_for(f"http://127.0.0.1:{port}/", proc)
        import httpx

        location = httpx.get(f"http://127.0.0.1:{port}/install", timeout=5).headers["location"]
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    saved = json.loads((tmp_path / f"quickstart-app-port-{port}.json").read_text())
    assert f"  app           Quickstart App (port {port}): client_id {saved['client_id']}" in out
    assert f"client_id={saved['client_id']}" in location
    assert "7fff1e36-2d40-4ae1-bbb1-5266d59564fb" not in out  # not the seed's app
    assert saved["client_secret"] not in out
    assert f"client secret in {tmp_path / f'quickstart-app-port-{port}.json'}" in out
    assert f"redirect URLs http://localhost:{port}/oauth-callback" in out
    assert f"Tokens are kept in {tmp_path / f'local-hubspot-tokens-port-{port}.db'}." in out
    # The optional scopes it asks for are the app's, and the banner says so.
    assert ("                scopes        crm.objects.contacts.read; optional "
            "crm.objects.contacts.write automation (the app's)") in out


@pytest.mark.parametrize("args", [["db", "upgrade"], ["login", "--no-browser"]])
def test_a_data_directory_that_cannot_be_created_is_named_with_its_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    """HUBSPOT_OAUTH_DATA_DIR under a file: one line naming the directory and the setting
    (it was `Error: [Errno 20] Not a directory: '…'`, which named neither)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(blocker / "data"))
    monkeypatch.setenv("HUBSPOT_CLIENT_ID", "id")
    monkeypatch.setenv("HUBSPOT_CLIENT_SECRET", "secret")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot create the data directory {blocker / 'data'} "
        "(HUBSPOT_OAUTH_DATA_DIR): Not a directory"]


@pytest.mark.parametrize("args", [["tokens", "list"], ["db", "upgrade"],
                                  ["server", "--port", "1"]])
def test_a_file_path_for_a_database_url_shows_the_url_to_write(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        args: list[str]) -> None:
    """`--database-url tokens.db` (a path, the commonest slip) says the URL to write; it
    was 'malformed database URL', which did not say what was wrong with it."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, [*args, "--database-url", "tokens.db"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: tokens.db is a file path, not a database URL: write "
        f"sqlite:///{tmp_path / 'tokens.db'} (or use "
        "postgresql+psycopg://user:password@host/dbname)"]
    assert not (tmp_path / "tokens.db").exists()
