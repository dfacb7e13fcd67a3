"""The main job, proved in a real browser (issue 4): `hubspot-oauth quickstart` started as
`make run` starts it, driven by Playwright in Debian's headless Chromium.

Uses the fixed ports of the default seed's redirect URI (3000) and the local HubSpot
(8765): the test fails with a clear message when something else holds them. Every page is
screenshotted into test-artifacts/quickstart/.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support.components import CHROMIUM_ARGS, chromium_path, unavailable

pytestmark = [pytest.mark.browser, pytest.mark.slow]

QUICKSTART = "http://localhost:3000"
HUBSPOT = "http://localhost:8765"
COMMAND = Path(sys.executable).parent / "hubspot-oauth"


class Quickstart:
    """The `hubspot-oauth quickstart` process; its request log (paths only) is kept."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.log: list[str] = []
        self.output: list[str] = []
        self._drains: list[threading.Thread] = []

    def start(self) -> None:
        for port in (3000, 8765):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    pytest.fail(f"port {port} is busy: the browser test runs the quickstart on "
                                "its default ports 3000 and 8765; stop what listens there",
                                pytrace=False)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HUBSPOT_") and k not in ("CLIENT_ID", "CLIENT_SECRET")}
        env["HUBSPOT_OAUTH_DATA_DIR"] = str(self.data_dir)
        self.proc = subprocess.Popen([str(COMMAND), "quickstart"], env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._drains = [threading.Thread(target=self._drain, args=(stream, sink), daemon=True)
                        for stream, sink in ((self.proc.stdout, self.output),
                                             (self.proc.stderr, self.log))]
        for drain in self._drains:
            drain.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._join_drains()
                pytest.fail(f"quickstart exited {self.proc.returncode}: {self.log}")
            try:
                if httpx.get(QUICKSTART + "/", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        pytest.fail("the quickstart did not answer on http://localhost:3000 within 60 s")

    @staticmethod
    def _drain(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def _join_drains(self) -> None:
        # The process has exited: its pipes end, and the drains stop after its last line.
        for drain in self._drains:
            drain.join(timeout=30)
        assert not any(drain.is_alive() for drain in self._drains), "output pipes stayed open"

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self._join_drains()  # every line the process printed is read

    def callbacks(self) -> list[str]:
        return [line for line in self.log if "/oauth-callback" in line]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Quickstart]:
    app = Quickstart(tmp_path_factory.mktemp("quickstart-data"))
    app.start()
    yield app
    if app.proc and app.proc.poll() is None:
        app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        unavailable("Chromium", "no chromium binary (apt-get install chromium)")
    from playwright.sync_api import Error, expect, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        except Error as exc:
            unavailable("Chromium", str(exc).splitlines()[0][:300])
        # A page after a grant waits for a code exchange, a lookup and a contacts read:
        # expect() waits as long as the pages' own 20 s, not its default 5 s.
        expect.set_options(timeout=20_000)
        try:
            yield chromium
        finally:
            expect.set_options(timeout=None)
            chromium.close()


class Shots:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, page, name: str) -> None:
        page.screenshot(path=str(self.folder / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def shot(artifacts_dir: Path) -> Shots:
    return Shots(artifacts_dir / "quickstart")


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def _stats() -> dict:
    return httpx.get(HUBSPOT + "/_emulator/stats", timeout=10).json()


def _store(quickstart: Quickstart):
    from hubspot_oauth import TokenStore

    return TokenStore(f"sqlite:///{quickstart.data_dir / 'local-hubspot-tokens.db'}")


def _sign_in(page, shot: Shots, email: str, prefix: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("h1")).to_have_text("Log in to HubSpot")
    page.fill("#email", email)
    page.fill("#password", "password")
    shot(page, f"{prefix}-login")
    page.click("button:has-text('Log in')")


def _pick(page, shot: Shots, hub_id: int, prefix: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("h1")).to_have_text("Choose an account")
    shot(page, f"{prefix}-accounts")
    page.click(f"button[name=hub_id][value='{hub_id}']")


def _consent(page, shot: Shots, prefix: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator("h1")).to_contain_text("Connect Quickstart App")
    scopes = page.locator("ul.scopes")
    expect(scopes).to_contain_text("crm.objects.contacts.read")
    shot(page, f"{prefix}-consent")


def test_install_contacts_refresh_restart_disconnect(quickstart, page, shot) -> None:
    from playwright.sync_api import expect

    page.goto(QUICKSTART)
    expect(page.locator("a.button", has_text="Install the app")).to_be_visible()
    expect(page.locator("body")).to_contain_text("admin@example.com")
    shot(page, "01-welcome")

    page.click("a.button:has-text('Install the app')")
    _sign_in(page, shot, "admin@example.com", "02")
    _pick(page, shot, 1234567, "03")
    _consent(page, shot, "04")
    expect(page.locator("ul.scopes")).to_contain_text("crm.objects.contacts.write")
    page.click("button:has-text('Grant access')")

    page.wait_for_url(re.compile(r"http://localhost:3000/accounts/1234567"))
    expect(page.locator("#hub-id")).to_have_text("1234567")
    expect(page.locator("#account")).to_contain_text("acme.example.com")
    expect(page.locator("#account")).to_contain_text("admin@example.com")
    expect(page.locator("tr.contact")).to_have_count(10)
    expect(page.locator("#contacts")).to_contain_text("Maria Johnson")
    shot(page, "05-connected")
    assert _stats()["token"]["refresh_token"]["ok"] == 0

    # HubSpot's clock moves 30 minutes on: the access token has expired at HubSpot.
    httpx.post(HUBSPOT + "/_emulator/clock", json={"advance": 1800}).raise_for_status()
    page.reload()
    expect(page.locator("tr.contact")).to_have_count(10)
    expect(page.locator("#contacts")).to_contain_text("Maria Johnson")
    shot(page, "06-after-expiry")
    assert _stats()["token"]["refresh_token"] == {"ok": 1, "error": 0}

    # A restart keeps the connection (tokens in SQLite in the data directory).
    assert quickstart.stop() == 0
    assert any("Stopped the quickstart and the local HubSpot." in line
               for line in quickstart.output)
    quickstart.start()
    page.goto(QUICKSTART)
    expect(page.locator("#hub-id")).to_have_text("1234567")
    expect(page.locator("#contacts")).to_contain_text("Maria Johnson")
    shot(page, "07-after-restart")

    refresh_token = _store(quickstart).get("1234567").refresh_token
    page.click("button:has-text('Refresh now')")
    expect(page.locator(".notice")).to_contain_text("refreshed")
    shot(page, "08-refreshed")

    page.click("button:has-text('Disconnect')")
    page.wait_for_url(re.compile(r"http://localhost:3000/\?done=disconnected"))
    expect(page.locator("a.button", has_text="Install the app")).to_be_visible()
    expect(page.locator(".notice")).to_contain_text("Disconnected")
    shot(page, "09-disconnected")
    assert _store(quickstart).connections() == []
    from hubspot_oauth.server.seed import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    answer = httpx.post(HUBSPOT + "/oauth/v3/token", data={
        "grant_type": "refresh_token", "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "redirect_uri": "http://localhost:3000/oauth-callback",
        "refresh_token": refresh_token})
    assert answer.status_code == 400
    assert "BAD_REFRESH_TOKEN" in answer.text


def test_viewer_gets_hubspots_permission_error(quickstart, page, shot) -> None:
    from playwright.sync_api import expect

    before = len(quickstart.callbacks())
    page.goto(QUICKSTART + "/install")
    _sign_in(page, shot, "viewer@example.com", "10-viewer")
    _pick(page, shot, 1234567, "11-viewer")  # the picker shows even for one account
    expect(page.locator("[data-error-kind]")).to_have_attribute("data-error-kind",
                                                                "no_permission")
    expect(page.locator("#error-message")).to_contain_text("correct role")
    shot(page, "12-viewer-permission-error")
    assert page.url.startswith(HUBSPOT)
    assert len(quickstart.callbacks()) == before
    assert _store(quickstart).connections() == []


def test_cancel_on_consent_sends_nothing_to_the_app(quickstart, page, shot) -> None:
    from playwright.sync_api import expect

    before = len(quickstart.callbacks())
    codes = _stats()["token"]["authorization_code"]
    page.goto(QUICKSTART + "/install")
    _sign_in(page, shot, "admin@example.com", "13-cancel")
    _pick(page, shot, 1234567, "14-cancel")
    _consent(page, shot, "15-cancel")
    page.click("button:has-text('Cancel')")
    expect(page.locator("h1")).to_have_text("Access not granted")
    shot(page, "16-not-granted")
    assert page.url.startswith(HUBSPOT)
    time.sleep(0.5)  # a stray request would have been logged by now
    assert len(quickstart.callbacks()) == before
    assert _stats()["token"]["authorization_code"] == codes
    assert _store(quickstart).connections() == []


def test_forged_and_replayed_state(quickstart, page, shot) -> None:
    from playwright.sync_api import expect

    page.goto(QUICKSTART + "/oauth-callback?code=na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
              "&state=forged-state")
    expect(page.locator("#error-title")).to_have_text(
        "This callback is not from an install we started")
    expect(page.locator("body")).to_contain_text("Nothing was stored")
    shot(page, "17-forged-state")
    assert _store(quickstart).connections() == []

    callbacks: list[str] = []
    page.on("request", lambda request: callbacks.append(request.url)
            if "/oauth-callback?" in request.url else None)
    page.goto(QUICKSTART + "/install")
    _sign_in(page, shot, "admin@example.com", "18-replay")
    _pick(page, shot, 7654321, "19-replay")
    _consent(page, shot, "20-replay")
    page.click("button:has-text('Grant access')")
    expect(page.locator("#hub-id")).to_have_text("7654321")
    connected = _store(quickstart).connection("7654321").updated_at
    exchanges = _stats()["token"]["authorization_code"]
    assert len(callbacks) == 1

    page.goto(callbacks[0])  # the same callback again: the state was used
    expect(page.locator("#error-title")).to_have_text(
        "This callback is not from an install we started")
    expect(page.locator("body")).to_contain_text("already used")
    shot(page, "21-replayed-state")
    assert _stats()["token"]["authorization_code"] == exchanges  # no second exchange
    assert _store(quickstart).connection("7654321").updated_at == connected
    _disconnect_all(page)


def test_two_tabs_both_complete(quickstart, browser, shot) -> None:
    """Case C6: two installs in two tabs of one browser; the second finishes first."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1100, "height": 800})
    try:
        first, second = context.new_page(), context.new_page()
        for tab in (first, second):
            tab.set_default_timeout(20_000)
            tab.goto(QUICKSTART + "/install")
        _sign_in(second, shot, "admin@example.com", "22-tab2")
        _pick(second, shot, 7654321, "23-tab2")
        _consent(second, shot, "24-tab2")
        second.click("button:has-text('Grant access')")
        expect(second.locator("#hub-id")).to_have_text("7654321")

        _sign_in(first, shot, "admin@example.com", "25-tab1")
        _pick(first, shot, 1234567, "26-tab1")
        _consent(first, shot, "27-tab1")
        first.click("button:has-text('Grant access')")
        expect(first.locator("#hub-id")).to_have_text("1234567")
        expect(first.locator("nav.tabs a")).to_have_count(2)
        shot(first, "28-two-accounts")
        keys = sorted(c.key for c in _store(quickstart).connections())
        assert keys == ["1234567", "7654321"]
        _disconnect_all(first)
    finally:
        context.close()


def _disconnect_all(page) -> None:
    from playwright.sync_api import expect

    page.goto(QUICKSTART + "/")  # loaded: its tabs are every connected account
    accounts = page.locator("nav.tabs a")
    # Each click waits for the page with one account fewer. (wait_for_url returns at once
    # when the URL already matches, as ?done=disconnected did from the second click on.)
    for left in range(accounts.count() - 1, -1, -1):
        page.click("button:has-text('Disconnect')")
        expect(accounts).to_have_count(left)
    expect(page.locator("a.button", has_text="Install the app")).to_be_visible()
