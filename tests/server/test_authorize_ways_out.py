"""Every dead end of the authorize pages offers a way out: Cancel's "Access not granted"
links back to the app (the registered redirect URI's origin, never its callback), and a
user without the right role can switch user and carry on with the same authorization."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app
from tests.support.pages import (
    BASE_URL,
    REDIRECT_URI,
    Browser,
    authorize_path,
    form_with,
    parse_page,
    redirect_query,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def browser(sqlite_url: str) -> AsyncIterator[Browser]:
    app = create_app(ServerSettings(database_url=sqlite_url))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield Browser(http)
    app.state.hubspot.close()


async def test_cancelled_page_links_back_to_the_apps_origin(browser: Browser) -> None:
    consent = await browser.login(await browser.get(authorize_path(account_id=1234567,
                                                                   state="s")))
    cancelled = await browser.decide(consent, "cancel")
    assert parse_page(cancelled.text).h1 == "Access not granted"
    assert '<a class="button" id="back-to-app" href="http://localhost:3000/">' \
           'Back to Quickstart App</a>' in cancelled.text
    assert REDIRECT_URI not in cancelled.text  # nothing is sent to the callback


@pytest.mark.parametrize("account_id,kind", [(1234567, "no_permission"),
                                             (7654321, "account_not_found")])
async def test_wrong_user_can_switch_and_finish_the_same_install(
    browser: Browser, account_id: int, kind: str
) -> None:
    refused = await browser.login(
        await browser.get(authorize_path(account_id=account_id, state="same")),
        email="viewer@example.com")
    page = parse_page(refused.text)
    assert page.error_kind == kind
    assert "Signed in as" in refused.text and "viewer@example.com" in refused.text
    switch = form_with(page, "/logout")
    assert switch.fields["csrf_token"] and switch.fields["authorization"]
    login_page = await browser.submit(refused, "/logout")
    assert parse_page(login_page.text).h1 == "Log in to HubSpot"
    consent = await browser.login(login_page, email="admin@example.com")
    granted = await browser.decide(consent, "grant")
    assert granted.status_code == 302
    assert granted.headers["location"].startswith(REDIRECT_URI + "?")
    assert redirect_query(granted)["state"] == ["same"]
