"""The authorize pages over a real socket (uvicorn via ServerThread): with httpx, and with
Chromium driven by Playwright through login → account picker → consent → grant, landing on
a real callback server. Screenshots of every page go to test-artifacts/."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.server.runner import ServerThread
from tests.support.components import CHROMIUM_ARGS, chromium_path, unavailable
from tests.support.pages import Browser, authorize_path, parse_page, redirect_query

STATE = "a b&c=d/é"


class _Callback(BaseHTTPRequestHandler):
    """The app's redirect URI: records what HubSpot sent and shows a small page."""

    received: list[str]

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/oauth-callback"):  # not the browser's /favicon.ico
            self.received.append(self.path)
        body = b"<!doctype html><title>App</title><h1>Callback received</h1>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def callback() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server standing in for the app; yields (redirect URI, received paths)."""
    received: list[str] = []
    handler = type("Handler", (_Callback,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/oauth-callback", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def server(sqlite_url: str) -> Iterator[ServerThread]:
    app = create_app(ServerSettings(database_url=sqlite_url))
    with ServerThread(app, host="127.0.0.1", port=0) as running:
        running.app = app  # type: ignore[attr-defined]
        yield running


def _register(server: ServerThread, redirect_uri: str) -> str:
    _, client_id, _ = server.app.state.hubspot.create_app_registration(  # type: ignore[attr-defined]
        name="Socket Test App",
        description="Reads your contacts to show them in a list.",
        redirect_urls=[redirect_uri],
        scopes=["crm.objects.contacts.read"],
        optional_scopes=["crm.objects.contacts.write", "automation"],
    )
    return client_id


@pytest.mark.anyio
async def test_flow_over_a_real_socket(server: ServerThread) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        browser = Browser(client)
        picker = await browser.login(await browser.get(authorize_path(state=STATE)))
        assert parse_page(picker.text).h1 == "Choose an account"
        consent = await browser.choose(picker, 1234567)
        granted = await browser.decide(consent, "grant")
        assert granted.status_code == 302
        assert redirect_query(granted)["state"] == [STATE]
        assert granted.headers["x-frame-options"] == "DENY"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.browser
def test_chromium_login_picker_consent_grant(
    server: ServerThread, callback: tuple[str, list[str]], artifacts_dir: Path
) -> None:
    executable = chromium_path()
    if executable is None:
        unavailable("Chromium", "no chromium binary on PATH or at /usr/bin/chromium")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:  # pragma: no cover - playwright is a dev dependency
        unavailable("Playwright", str(exc))
    redirect_uri, received = callback
    client_id = _register(server, redirect_uri)
    url = server.base_url + authorize_path(
        client_id=client_id, redirect_uri=redirect_uri, state=STATE
    )

    def shot(page: object, name: str) -> None:
        page.screenshot(path=str(artifacts_dir / f"authorize-{name}.png"), full_page=True)  # type: ignore[attr-defined]

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = chromium.new_page(viewport={"width": 1100, "height": 800})
            page.goto(url)
            # Every read after a click waits on the next page (expect): a one-shot read may
            # see the old page, or the new one before it has all been parsed.
            expect(page.locator("h1")).to_have_text("Log in to HubSpot")
            page.fill("#email", "admin@example.com")
            page.fill("#password", "wrong")
            page.click("button[type=submit]")
            expect(page.locator(".alert")).to_contain_text("incorrect")
            shot(page, "1-login-error")
            page.fill("#password", "password")
            page.click("button[type=submit]")

            expect(page.locator("h1")).to_have_text("Choose an account")
            shot(page, "2-account-picker")
            page.click("button[value='7654321']")

            expect(page.locator("h1")).to_have_text("Connect Socket Test App to Globex")
            page.wait_for_load_state()  # the whole consent page, for the check of what it lacks
            consent_text = page.locator("main").inner_text()
            assert "View properties and other details about contacts" in consent_text
            assert "workflows" not in consent_text  # Globex lacks automation: not shown
            shot(page, "3-consent")
            page.click("button[value='grant']")
            page.wait_for_url(redirect_uri + "?*")
            expect(page.locator("h1")).to_have_text("Callback received")

            # The app received exactly one request: the code and the state, byte for byte.
            assert len(received) == 1
            query = parse_qs(urlsplit(received[0]).query)
            assert query["state"] == [STATE]
            assert len(query["code"]) == 1

            # Cancel on a second install: the app receives nothing.
            page.goto(url.replace("state=", "state=second"))
            page.click("button[value='1234567']")
            page.click("button[value='cancel']")
            expect(page.locator("h1")).to_have_text("Access not granted")
            shot(page, "4-cancelled")
            assert len(received) == 1

            # An install error is a page, not a redirect.
            page.goto(url.replace("automation", "tickets"))
            expect(page.locator("h1")).to_have_text("Couldn't complete the connection")
            shot(page, "5-error-scope-mismatch")
            assert len(received) == 1
        finally:
            chromium.close()
