"""Every command: --help with an example, exit codes 0/1/2, one error line and never a
traceback; `db upgrade`; `server` and `quickstart` (taken ports, missing secret,
unreachable HubSpot, start and a clean stop on Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from hubspot_oauth.cli import cli
from tests.support.components import free_port

COMMANDS = [
    ["quickstart"], ["server"], ["login"], ["tokens", "list"], ["tokens", "show"],
    ["tokens", "refresh"], ["tokens", "revoke"], ["tokens", "introspect"], ["db", "upgrade"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_explains_with_an_example_and_offers_json(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"hubspot-oauth {' '.join(command)}" in result.stdout or \
        f"hubspot-oauth {command[0]}" in result.stdout
    assert "--json" in result.stdout


def test_top_level_help_and_version() -> None:
    assert "quickstart" in CliRunner().invoke(cli, ["--help"]).stdout
    assert CliRunner().invoke(cli, ["--version"]).exit_code == 0


@pytest.mark.parametrize("args", [
    ["nonsense"],
    ["tokens", "list", "--no-such-flag"],
    ["server", "--port", "not-a-port"],
    ["server", "--refresh-token-rotation", "sometimes"],
    ["login", "--timeout", "0"],
    ["db", "upgrade", "--for", "everything"],
])
def test_usage_errors_exit_2_without_traceback(args: list[str], data_dir) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_server_options_follow_the_settings_rules() -> None:
    """`server`'s --refresh-token-rotation choices and admin-token length are copies of
    ServerSettings' rules (cli/local.py does not import server/): they must agree."""
    import click

    from hubspot_oauth.cli import local
    from hubspot_oauth.errors import ConfigurationError
    from hubspot_oauth.server import settings

    option = next(p for p in local.server.params if p.name == "refresh_token_rotation")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == settings.ROTATION_MODES == local.ROTATION_MODES
    assert local.MIN_ADMIN_TOKEN == settings.MIN_ADMIN_TOKEN
    settings.ServerSettings(admin_token="x" * settings.MIN_ADMIN_TOKEN)
    with pytest.raises(ConfigurationError):
        settings.ServerSettings(admin_token="x" * (settings.MIN_ADMIN_TOKEN - 1))


def test_configuration_error_is_exit_2(data_dir) -> None:
    result = CliRunner().invoke(cli, ["tokens", "list", "--api-version", "v9"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("Error: unknown HUBSPOT_API_VERSION 'v9'")


def test_bad_database_url_is_one_line(data_dir) -> None:
    result = CliRunner().invoke(cli, ["tokens", "list", "--database-url", "nosuchdb://x/y"])
    assert result.exit_code in (1, 2)
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_unexpected_error_is_one_line_with_a_debug_hint(data_dir, monkeypatch) -> None:
    def broken(self):
        raise RuntimeError("disk on fire")

    from cryptography.fernet import Fernet

    monkeypatch.setenv("HUBSPOT_OAUTH_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    from hubspot_oauth import Token, TokenStore

    data_dir.mkdir(parents=True)
    with TokenStore(f"sqlite:///{data_dir / 'tokens.db'}") as store:  # a store with a row
        store.save(Token.from_response({"access_token": "a" * 20, "refresh_token": "r" * 20,
                                        "expires_in": 1800, "hub_id": 1234567}),
                   describe=False)
    monkeypatch.setattr("hubspot_oauth.client.store.TokenStore.connections", broken)
    result = CliRunner().invoke(cli, ["tokens", "list"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: unexpected RuntimeError: disk on fire (rerun with --debug for the traceback)")
    as_json = CliRunner().invoke(cli, ["tokens", "list", "--json"])
    assert json.loads(as_json.stdout) == {
        "ok": False, "exit_code": 1,
        "error": "unexpected RuntimeError: disk on fire (rerun with --debug for the "
                 "traceback)"}
    debug = CliRunner().invoke(cli, ["--debug", "tokens", "list"])
    assert isinstance(debug.exception, RuntimeError)


def test_db_upgrade_store_server_and_all(tmp_path: Path, data_dir) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url, "--json"])
    assert store.exit_code == 0, store.output
    assert list(json.loads(store.stdout)["revisions"]) == ["store"]
    both = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url, "--for", "all"])
    assert both.exit_code == 0, both.output
    assert "token store schema" in both.stdout and "local HubSpot schema" in both.stdout
    # The upgraded database works for the store (and a second upgrade is a no-op).
    from hubspot_oauth import TokenStore

    assert TokenStore(url).connections() == []
    again = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])
    assert again.exit_code == 0


def test_db_upgrade_default_is_the_data_dir_store(data_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (data_dir / "tokens.db").exists()


def test_db_upgrade_for_server_defaults_to_the_local_hubspots_database(
        data_dir: Path) -> None:
    """`--for server` with no URL upgrades local-hubspot.db, the database `server` and the
    quickstart refuse when it is behind; it used to put the local HubSpot's tables into the
    token store's tokens.db and leave local-hubspot.db as it was."""
    import sqlalchemy as sa

    from hubspot_oauth.server.storage import SCHEMA_REVISION, current_revision

    result = CliRunner().invoke(cli, ["db", "upgrade", "--for", "server", "--json"])
    assert result.exit_code == 0, result.output
    local = data_dir / "local-hubspot.db"
    assert not (data_dir / "tokens.db").exists()
    assert current_revision(sa.create_engine(f"sqlite:///{local}")) == SCHEMA_REVISION
    assert json.loads(result.stdout)["databases"] == {"server": f"sqlite:///{local}"}

    both = CliRunner().invoke(cli, ["db", "upgrade", "--for", "all"])
    assert both.exit_code == 0, both.output
    assert both.stdout.splitlines() == [
        f"token store schema of sqlite:///{data_dir / 'tokens.db'} is at revision 0001",
        f"local HubSpot schema of sqlite:///{local} is at revision {SCHEMA_REVISION}"]


# -- server and quickstart ---------------------------------------------------------------

def _listening(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


def test_server_port_taken(data_dir) -> None:
    port = free_port()
    with _listening(port):
        result = CliRunner().invoke(cli, ["server", "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: port {port} (local HubSpot) is already in use by another program; stop the "
        "other program (another `hubspot-oauth server`, or a quickstart or `make run` running "
        "the local HubSpot?), or pass --port"]


def test_server_bad_seed_file_is_one_line(data_dir, tmp_path: Path) -> None:
    bad = tmp_path / "seed.toml"
    bad.write_text("[[apps]]\nname = 'x'\n")
    for seed in (str(tmp_path / "missing.toml"), str(bad)):
        result = CliRunner().invoke(cli, ["server", "--port", str(free_port()), "--seed", seed])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"Error: seed file {seed}")


def test_quickstart_port_taken_names_the_port_and_redirect_uri(data_dir) -> None:
    port = free_port()
    with _listening(port):
        result = CliRunner().invoke(cli, ["quickstart", "--port", str(port),
                                          "--hubspot-port", str(free_port())])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {port}" in lines[0]
    assert f"http://localhost:{port}/oauth-callback" in lines[0]


def test_quickstart_local_hubspot_port_taken(data_dir) -> None:
    hub_port = free_port()
    with _listening(hub_port):
        result = CliRunner().invoke(cli, ["quickstart", "--port", str(free_port()),
                                          "--hubspot-port", str(hub_port)])
    assert result.exit_code == 1
    assert f"port {hub_port} (local HubSpot)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # What to do about it, not only what went wrong.
    assert "stop the other program (a `hubspot-oauth server`" in result.stderr


@pytest.mark.parametrize("env", [
    {"HUBSPOT_CLIENT_ID": "abc"},
    {"CLIENT_ID": "abc"},
    {"HUBSPOT_CLIENT_SECRET": "abc"},
])
def test_quickstart_missing_secret_or_id(env: dict[str, str], data_dir) -> None:
    result = CliRunner().invoke(cli, ["quickstart", "--port", str(free_port())], env=env)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "missing HUBSPOT_CLIENT_" in result.stderr


def test_quickstart_unreachable_hubspot(data_dir) -> None:
    closed = free_port()
    env = {"HUBSPOT_CLIENT_ID": "abc", "HUBSPOT_CLIENT_SECRET": "def",
           "HUBSPOT_BASE_URL": f"http://127.0.0.1:{closed}"}
    result = CliRunner().invoke(cli, ["quickstart", "--port", str(free_port())], env=env)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach HubSpot at http://127.0.0.1:{closed}" in lines[0]


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from hubspot_oauth.cli import main; main()", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env},
    )


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 60) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.communicate()}")
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_server_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(["server", "--port", str(port)],
                  {"HUBSPOT_OAUTH_DATA_DIR": str(tmp_path)})
    try:
        stats = _wait_for(f"http://127.0.0.1:{port}/_emulator/stats", proc)
        assert stats.status_code == 200
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    assert "admin@example.com / password" in out
    assert "Stopped the local HubSpot." in out
    assert (tmp_path / "local-hubspot.db").exists()
    assert "Traceback" not in err


def test_quickstart_runs_both_servers_in_one_process_and_stops_cleanly(tmp_path) -> None:
    port, hub_port = free_port(), free_port()
    proc = _start(["quickstart", "--port", str(port)],
                  {"HUBSPOT_OAUTH_DATA_DIR": str(tmp_path),
                   "HUBSPOT_OAUTH_LOCAL_HUBSPOT_PORT": str(hub_port)})
    try:
        home = _wait_for(f"http://127.0.0.1:{port}/", proc)
        assert home.status_code == 200 and "Install the app" in home.text
        assert "admin@example.com" in home.text
        stats = httpx.get(f"http://127.0.0.1:{hub_port}/_emulator/stats", timeout=5)
        assert stats.status_code == 200
        install = httpx.get(f"http://127.0.0.1:{port}/install", timeout=5)
        assert install.status_code == 302
        location = install.headers["location"]
        assert location.startswith(f"http://localhost:{hub_port}/oauth/authorize?")
        # Another port than 3000 gets its own app registration whose redirect URL matches.
        assert "oauth-callback" in location and str(port) in location
    finally:
        out, err = _stop(proc)
    assert proc.returncode == 0, err
    assert f"http://localhost:{port}" in out and "admin@example.com / password" in out
    assert "Stopped the quickstart and the local HubSpot." in out
    assert "Traceback" not in err


def test_server_extra_missing_is_one_line(data_dir, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvicorn" else real(name, *a))
    for args in (["server", "--port", str(free_port())], ["quickstart", "--port",
                                                          str(free_port())]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert result.stderr.strip() == ("Error: this command needs the server extra (uvicorn "
                                         "missing): pip install 'hubspot-oauth[server]'")


def test_quickstart_with_credentials_uses_that_hubspot_only(tmp_path: Path) -> None:
    """With HUBSPOT_CLIENT_ID/SECRET the quickstart starts no local HubSpot of its own and
    sends installs to the configured HubSpot (here a local one standing in for the real)."""
    from hubspot_oauth.server import ServerSettings, create_app
    from hubspot_oauth.server.runner import ServerThread
    from hubspot_oauth.server.seed import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    hubspot_app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'hs.db'}"))
    port = free_port()
    with ServerThread(hubspot_app, host="127.0.0.1", port=0) as hubspot:
        proc = _start(["quickstart", "--port", str(port)], {
            "HUBSPOT_OAUTH_DATA_DIR": str(tmp_path / "data"),
            "CLIENT_ID": DEFAULT_CLIENT_ID, "CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "SCOPE": "crm.objects.contacts.read,crm.objects.contacts.write",
            "HUBSPOT_BASE_URL": hubspot.base_url,
            "HUBSPOT_OAUTH_LOCAL_HUBSPOT_PORT": str(free_port()),
        })
        try:
            home = _wait_for(f"http://127.0.0.1:{port}/", proc)
            assert f"talking to the HubSpot at {hubspot.base_url}" in home.text
            assert "admin@example.com" not in home.text  # no local sign-in help
            install = httpx.get(f"http://127.0.0.1:{port}/install", timeout=5)
            location = install.headers["location"]
            assert location.startswith(hubspot.base_url + "/oauth/authorize?")
            assert "scope=crm.objects.contacts.read+crm.objects.contacts.write" in location \
                or "scope=crm.objects.contacts.read%20crm.objects.contacts.write" in location
            assert f"localhost%3A{port}%2Foauth-callback" in location
        finally:
            out, err = _stop(proc)
    assert proc.returncode == 0, err
    assert "Stopped the quickstart." in out
    # The banner names the HubSpot once (it said "…at URL: URL").
    assert f"   (talking to the HubSpot at {hubspot.base_url})\n" in out
    assert not (tmp_path / "data" / "local-hubspot.db").exists()


def test_unreachable_database_is_one_line(data_dir, monkeypatch) -> None:
    from cryptography.fernet import Fernet

    monkeypatch.setenv("HUBSPOT_OAUTH_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    for args in (["server", "--port", str(free_port()), "--database-url", url],
                 ["tokens", "list", "--database-url", url],
                 ["db", "upgrade", "--database-url", url]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (args, lines)
        assert "Traceback" not in result.output
