"""Fixtures of the local HubSpot's core tests (token endpoints, metadata, API, control).

Names start with ``hs_`` so they never clash with the authorize tests' own fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.server.hubspot import LocalHubSpot
from hubspot_oauth.server.seed import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.support.race import race  # noqa: F401 - the server tests import it from here

CLIENT = {"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET}
REDIRECT = "http://localhost:3000/oauth-callback"
ADMIN = "admin@example.com"
ACME = 1234567
GLOBEX = 7654321


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Harness:
    """One local HubSpot reached in-process through `httpx.ASGITransport`."""

    def __init__(self, app: Any, client: httpx.AsyncClient) -> None:
        self.app = app
        self.hubspot = app.state.hubspot
        self.client = client

    def code(self, **overrides: Any) -> str:
        options: dict[str, Any] = {
            "client_id": DEFAULT_CLIENT_ID, "redirect_uri": REDIRECT, "user_email": ADMIN,
            "hub_id": ACME, "scopes": ["crm.objects.contacts.read"],
            "optional_scopes": ["crm.objects.contacts.write", "automation"],
        }
        options.update(overrides)
        return self.hubspot.issue_code(**options)

    async def token(self, path: str = "/oauth/v3/token", **form: str) -> httpx.Response:
        return await self.client.post(path, data=form)

    async def exchange(self, code: str | None = None, version: str = "v3",
                       **extra: str) -> httpx.Response:
        form = {"grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": code or self.code()}
        form.update(extra)
        return await self.client.post(f"/oauth/{version}/token", data=form)

    async def tokens(self, **code_options: Any) -> dict[str, Any]:
        response = await self.exchange(self.code(**code_options))
        assert response.status_code == 200, response.text
        return response.json()

    async def refresh(self, refresh_token: str, version: str = "v3",
                      **extra: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", **CLIENT, "refresh_token": refresh_token}
        form.update(extra)
        return await self.client.post(f"/oauth/{version}/token", data=form)

    async def api(self, access_token: str, path: str = "/crm/v3/objects/contacts",
                  method: str = "GET", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {access_token}"}
        return await self.client.request(method, path, headers=headers, **kwargs)


@pytest.fixture
def hs_settings(sqlite_url: str) -> ServerSettings:
    return ServerSettings(database_url=sqlite_url)


@pytest.fixture
def hs_factory() -> Iterator[Any]:
    """Build more apps (e.g. with other settings) and dispose of them afterwards."""
    apps: list[Any] = []

    def build(settings: ServerSettings) -> Any:
        app = create_app(settings)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.hubspot.close()


@pytest.fixture
async def hs(hs_settings: ServerSettings, hs_factory: Any) -> AsyncIterator[Harness]:
    app = hs_factory(hs_settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://local-hubspot.test"
                                 ) as client:
        yield Harness(app, client)


async def harness_for(settings: ServerSettings, factory: Any) -> Harness:
    """A second harness with other settings (closed by `hs_factory`)."""
    app = factory(settings)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                               base_url="http://local-hubspot.test")
    return Harness(app, client)


def assert_oauth_error(response: httpx.Response, http: int, error: str, status: str,
                       message: str | None = None) -> dict[str, Any]:
    """Check a token-endpoint error: both RFC and HubSpot fields, correlation id, no-store."""
    assert response.status_code == http, response.text
    body = response.json()
    assert body["error"] == error
    assert body["status"] == status
    assert body["message"] == body["error_description"]
    if message is not None:
        assert body["message"] == message
    assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
    uuid.UUID(body["correlationId"])
    assert body["category"]
    assert response.headers["cache-control"] == "no-store"
    return body


@pytest.fixture
def servers(database_url: str) -> Iterator[Callable[..., LocalHubSpot]]:
    """LocalHubSpot instances on `database_url`, each with an engine and caches of its own
    (as separate processes would have); closed afterwards."""
    made: list[LocalHubSpot] = []

    def make(**settings: Any) -> LocalHubSpot:
        hubspot = LocalHubSpot(ServerSettings(database_url=database_url, **settings))
        made.append(hubspot)
        return hubspot

    yield make
    for hubspot in made:
        hubspot.close()
