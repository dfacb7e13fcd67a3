"""`hubspot-oauth login`: a real loopback flow against the local HubSpot (auto-approve),
the registered redirect URI's port and nothing else (case C2), state checks, timeouts."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from hubspot_oauth import TokenStore
from hubspot_oauth.cli import cli

from .conftest import LocalHubSpot


class FakeBrowser:
    """Stands in for `webbrowser.open` (the edge we do not own): fetches the URL in a
    thread, following redirects, the way a browser with an approving user would."""

    def __init__(self, rewrite=None) -> None:
        self.rewrite = rewrite
        self.responses: list[httpx.Response] = []
        self.threads: list[threading.Thread] = []
        self.urls: list[str] = []

    def open(self, url: str, *args, **kwargs) -> bool:
        self.urls.append(url)
        target = self.rewrite(url) if self.rewrite else url

        def fetch() -> None:
            self.responses.append(httpx.get(target, follow_redirects=True, timeout=30))

        thread = threading.Thread(target=fetch, daemon=True)
        thread.start()
        self.threads.append(thread)
        return True

    def join(self) -> None:
        for thread in self.threads:
            thread.join(30)


def _invoke(args: list[str], env: dict[str, str]):
    return CliRunner().invoke(cli, args, env=env, catch_exceptions=False)


def test_login_connects_and_prints_the_account(local_hubspot: LocalHubSpot, monkeypatch) -> None:
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = _invoke(["login", "--timeout", "30"], local_hubspot.env())
    browser.join()
    assert result.exit_code == 0, result.output
    assert "Connected HubSpot account 1234567 (acme.example.com)" in result.output
    assert "admin@example.com" in result.output
    assert "crm.objects.contacts.read" in result.output
    # The browser was sent to the local HubSpot's authorize page, came back to the redirect
    # URI and was told to return to the terminal.
    assert browser.urls[0].startswith(local_hubspot.base_url + "/oauth/authorize?")
    assert browser.responses[0].status_code == 200
    assert "close this tab" in browser.responses[0].text
    assert str(browser.responses[0].url).startswith(local_hubspot.redirect_uri)
    store = TokenStore(local_hubspot.tokens_url)
    assert [c.key for c in store.connections()] == ["1234567"]
    # tokens list shows it.
    listed = _invoke(["tokens", "list", "--json"], local_hubspot.env())
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert rows[0]["key"] == "1234567" and rows[0]["hub_domain"] == "acme.example.com"
    assert rows[0]["user"] == "admin@example.com" and rows[0]["status"] == "active"


def test_login_json_account_id_and_key(local_hubspot: LocalHubSpot, monkeypatch) -> None:
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = _invoke(["login", "--account-id", "7654321", "--key", "globex", "--json",
                      "--timeout", "30"], local_hubspot.env())
    browser.join()
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["key"] == "globex" and data["hub_id"] == 7654321
    assert data["hub_domain"] == "globex.example.com"
    assert "/oauth/7654321/authorize" in browser.urls[0]
    # At once again, on the same port (its previous connections are in TIME_WAIT).
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    again = _invoke(["login", "--json", "--timeout", "30"], local_hubspot.env())
    browser.join()
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["key"] == "1234567"


def test_login_no_browser_prints_the_url(local_hubspot: LocalHubSpot) -> None:
    """The command as a user runs it: a subprocess that prints the URL and waits."""
    env = {**os.environ, **local_hubspot.env()}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hubspot_oauth.cli import main; main()", "login",
         "--no-browser", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = None
        for line in proc.stdout:
            if line.strip().startswith("http"):
                url = line.strip()
                break
        assert url and url.startswith(local_hubspot.base_url + "/oauth/authorize?")
        response = httpx.get(url, follow_redirects=True, timeout=30)
        assert response.status_code == 200
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Connected HubSpot account 1234567" in out
    assert "Traceback" not in err


def test_port_taken_is_one_line_naming_port_and_redirect_uri(
    local_hubspot: LocalHubSpot, monkeypatch
) -> None:
    """Case C2: never a random port; the error names the port and the registered URI."""
    port = urlsplit(local_hubspot.redirect_uri).port
    opened: list[str] = []
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", opened.append)
    with socket.socket() as other:
        other.bind(("127.0.0.1", port))
        other.listen()
        result = CliRunner().invoke(cli, ["login", "--timeout", "5"], env=local_hubspot.env())
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and local_hubspot.redirect_uri in lines[0]
    assert "Traceback" not in result.output
    assert opened == []  # nothing was started


def test_default_redirect_uri_is_port_3000(local_hubspot: LocalHubSpot) -> None:
    """Without HUBSPOT_REDIRECT_URI, login listens on 3000, the registered default."""
    env = {**local_hubspot.env()}
    del env["HUBSPOT_REDIRECT_URI"]
    with socket.socket() as other:
        # SO_REUSEADDR, as a server sets it: only a listener (not connections of one that
        # just stopped, in TIME_WAIT) makes this bind fail.
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            other.bind(("127.0.0.1", 3000))
        except OSError:
            pass  # someone else already holds 3000: the command must fail all the same
        else:
            other.listen()
        result = CliRunner().invoke(cli, ["login", "--no-browser", "--timeout", "2"], env=env)
    assert result.exit_code == 1
    assert "port 3000" in result.stderr
    assert "http://localhost:3000/oauth-callback" in result.stderr


def test_redirect_uri_that_cannot_be_served_is_a_usage_error(local_hubspot) -> None:
    env = {**local_hubspot.env(), "HUBSPOT_REDIRECT_URI": "https://www.example.com/cb"}
    result = CliRunner().invoke(cli, ["login", "--no-browser"], env=env)
    assert result.exit_code == 2
    assert "must be http on localhost" in result.stderr


def test_timeout_is_a_clear_message_and_forged_state_is_ignored(
    local_hubspot: LocalHubSpot, monkeypatch
) -> None:
    def forge(url: str) -> str:
        return local_hubspot.redirect_uri + "?code=na1-0000&state=forged"

    browser = FakeBrowser(rewrite=forge)
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = CliRunner().invoke(cli, ["login", "--timeout", "3"], env=local_hubspot.env())
    browser.join()
    assert result.exit_code == 1
    assert "timed out after 3 s" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert browser.responses[0].status_code == 400
    assert "Nothing was stored" in browser.responses[0].text
    assert TokenStore(local_hubspot.tokens_url).connections() == []
    assert local_hubspot.hubspot.stats()["token"]["authorization_code"]["ok"] == 0


def test_denied_install_stores_nothing(local_hubspot: LocalHubSpot, monkeypatch) -> None:
    def deny(url: str) -> str:
        state = parse_qs(urlsplit(url).query)["state"][0]
        return (local_hubspot.redirect_uri + "?error=access_denied&error_description="
                "The+user+said+no&state=" + state)

    browser = FakeBrowser(rewrite=deny)
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = CliRunner().invoke(cli, ["login", "--timeout", "20"], env=local_hubspot.env())
    browser.join()
    assert result.exit_code == 1
    assert re.search(r"access_denied: The user said no", result.stderr)
    assert TokenStore(local_hubspot.tokens_url).connections() == []


def test_login_without_credentials_is_a_usage_error(data_dir) -> None:
    result = CliRunner().invoke(cli, ["login", "--no-browser"])
    assert result.exit_code == 2
    assert "HUBSPOT_CLIENT_ID" in result.stderr and "HUBSPOT_CLIENT_SECRET" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flag", ["--client-id", "--client-secret"])
def test_flags_win_over_environment(local_hubspot: LocalHubSpot, monkeypatch, flag) -> None:
    """A wrong value in a flag overrides the right one in the environment."""
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = CliRunner().invoke(cli, ["login", flag, "wrong-value", "--timeout", "3"],
                                env=local_hubspot.env())
    browser.join()
    assert result.exit_code == 1
    assert TokenStore(local_hubspot.tokens_url).connections() == []


def test_port_with_connections_in_time_wait_is_reusable(local_hubspot, monkeypatch) -> None:
    """A login right after another: the first one's closed connections linger in TIME_WAIT
    on the redirect URI's port; only a listening program may block it."""
    port = urlsplit(local_hubspot.redirect_uri).port
    with socket.socket() as listener:  # stands in for the previous login's listener
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = listener.accept()
        accepted.close()  # the server side closes first: its end goes to TIME_WAIT
        client.recv(1)
        client.close()
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = _invoke(["login", "--timeout", "30"], local_hubspot.env())
    browser.join()
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("how", ["environment", "flags"])
def test_a_scope_both_required_and_optional_is_a_usage_error(local_hubspot, how) -> None:
    """Case C8's own kind (adversarial review): login once built
    ``scope=crm.objects.contacts.read%20automation`` with no optional_scope, which HubSpot
    answers with its scope-mismatch page. One line, exit 2, no URL, nothing listening."""
    env = dict(local_hubspot.env())
    args = ["login", "--no-browser", "--timeout", "5"]
    if how == "environment":
        env["HUBSPOT_SCOPES"] = "crm.objects.contacts.read automation"
        env["HUBSPOT_OPTIONAL_SCOPES"] = "automation"
    else:
        args += ["--scopes", "crm.objects.contacts.read,automation",
                 "--optional-scopes", "automation"]
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "automation" in lines[0] and "must not be in `scope`" in lines[0]
    assert "authorize" not in result.stdout and "Traceback" not in result.output
    assert TokenStore(local_hubspot.tokens_url).connections() == []


def _start_login(local_hubspot: LocalHubSpot, timeout: int) -> tuple[subprocess.Popen, str]:
    """`login --no-browser` in a subprocess (so a hang cannot hang the test run) and the
    install URL it printed."""
    env = {**os.environ, **local_hubspot.env()}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from hubspot_oauth.cli import main; main()", "login",
         "--no-browser", "--timeout", str(timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip().startswith("http"):
            return proc, line.strip()
    proc.kill()
    raise AssertionError("login printed no URL: " + proc.communicate()[1])


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"login kept running past its --timeout: {out} {err}") from None


def test_an_idle_connection_to_the_port_does_not_block_the_callback(local_hubspot) -> None:
    """A browser's speculative preconnect (or any client) holding an idle connection to
    the redirect URI's port once blocked the one-request-at-a-time listener: the real
    callback was never served and the install was lost (adversarial review)."""
    port = urlsplit(local_hubspot.redirect_uri).port
    proc, url = _start_login(local_hubspot, timeout=60)
    try:
        with socket.create_connection(("127.0.0.1", port)), \
                socket.create_connection(("127.0.0.1", port)) as half:
            half.sendall(b"GET /oauth-callback?state=x HTTP/1.1\r\n")  # never finished
            try:
                response = httpx.get(url, follow_redirects=True, timeout=20)
            except httpx.TimeoutException:
                response = None
            out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert response is not None, "the callback was not served"
    assert response.status_code == 200 and "close this tab" in response.text
    assert proc.returncode == 0, err
    assert "Connected HubSpot account 1234567" in out
    assert [c.key for c in TokenStore(local_hubspot.tokens_url).connections()] == ["1234567"]


def test_timeout_is_honoured_with_an_idle_connection_open(local_hubspot) -> None:
    port = urlsplit(local_hubspot.redirect_uri).port
    proc, _url = _start_login(local_hubspot, timeout=2)
    try:
        with socket.create_connection(("127.0.0.1", port)):
            out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert "timed out after 2 s" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
    assert TokenStore(local_hubspot.tokens_url).connections() == []


# -- the account lookup after the code exchange (one introspection per login) -----------


def test_login_looks_the_account_up_once(local_hubspot: LocalHubSpot, monkeypatch) -> None:
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = _invoke(["login", "--json", "--timeout", "30"], local_hubspot.env())
    browser.join()
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["hub_domain"] == "acme.example.com" and data["user"] == "admin@example.com"
    stats = local_hubspot.hubspot.stats()
    assert stats["token"]["authorization_code"] == {"ok": 1, "error": 0}
    # The CLI's lookup filled in the details; saving them did not ask HubSpot again.
    assert stats["introspect"] == {"ok": 1, "error": 0}
    assert stats["metadata"] == {"ok": 0, "error": 0}
    connection = TokenStore(local_hubspot.tokens_url).connection("1234567")
    assert connection.user == "admin@example.com"


@pytest.mark.parametrize(("fault", "times", "says"), [
    ("invalid_grant", 1, "not active"),  # HubSpot disowns the new access token
    ("server_error", 3, "HTTP 500"),     # every try of the lookup fails (RetryPolicy: 3)
])
def test_login_whose_account_lookup_fails_stores_nothing(
    local_hubspot: LocalHubSpot, monkeypatch, fault: str, times: int, says: str
) -> None:
    local_hubspot.hubspot.faults.add(endpoint="introspect", fault=fault, times=times)
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = CliRunner().invoke(cli, ["login", "--timeout", "30"], env=local_hubspot.env())
    browser.join()
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "looking up the account" in lines[0] and says in lines[0]
    assert "Nothing was stored" in lines[0]
    assert browser.responses[0].status_code == 502
    assert "Nothing was stored" in browser.responses[0].text
    assert TokenStore(local_hubspot.tokens_url).connections() == []
    stats = local_hubspot.hubspot.stats()
    assert stats["token"]["authorization_code"] == {"ok": 1, "error": 0}
    # One lookup (its tries; a fault counts as an error), and save never asked again.
    assert stats["introspect"] == {"ok": 0, "error": times}


def test_with_account_details_of_earlier_versions_still_works(local_hubspot) -> None:
    """`hubspot_oauth.cli.login.with_account_details(client, token)`: the library's lookup,
    with the token unchanged when it fails (as before)."""
    from hubspot_oauth import Endpoints, OAuthClient
    from hubspot_oauth.cli.login import with_account_details

    client = OAuthClient(client_id=local_hubspot.client_id,
                         client_secret=local_hubspot.client_secret,
                         redirect_uri=local_hubspot.redirect_uri,
                         endpoints=Endpoints.local(local_hubspot.base_url))
    code = local_hubspot.hubspot.issue_code(
        client_id=local_hubspot.client_id, redirect_uri=local_hubspot.redirect_uri,
        user_email="admin@example.com", hub_id=1234567,
        scopes=["crm.objects.contacts.read"], optional_scopes=[])
    token = client.exchange_code(code)
    local_hubspot.hubspot.faults.add(endpoint="introspect", fault="invalid_grant", times=1)
    assert with_account_details(client, token) is token
    assert with_account_details(client, token).user == "admin@example.com"
    assert local_hubspot.hubspot.stats()["introspect"] == {"ok": 1, "error": 1}


def test_login_with_a_wrong_secret_says_which_settings_to_check(
        local_hubspot: LocalHubSpot, monkeypatch) -> None:
    """The install works (authorize needs no secret); the exchange is refused: one line in
    the terminal and the page, naming HubSpot's error and where the secret came from."""
    browser = FakeBrowser()
    monkeypatch.setattr("hubspot_oauth.cli.login.webbrowser.open", browser.open)
    result = CliRunner().invoke(cli, ["login", "--timeout", "30"],
                                env={**local_hubspot.env(), "HUBSPOT_CLIENT_SECRET": "wrong"})
    browser.join()
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: the code exchange failed: HTTP 400 BAD_CLIENT_SECRET")
    assert "(--client-id/--client-secret or HUBSPOT_CLIENT_ID/HUBSPOT_CLIENT_SECRET)" \
        in lines[0]
    assert lines[0].endswith("Nothing was stored")
    assert "HUBSPOT_CLIENT_SECRET" in browser.responses[0].text
    assert TokenStore(local_hubspot.tokens_url).connections() == []
