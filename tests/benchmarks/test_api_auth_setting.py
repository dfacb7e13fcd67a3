"""`ServerSettings(api_auth=False)`, the no-auth baseline of the bearer API benchmark: the
sample API answers without a token, as the seed's first app in its first portal; with the
default (True) the same request is refused with 401."""

from __future__ import annotations

import httpx
import pytest

from hubspot_oauth.server import ServerSettings, create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _contacts(settings: ServerSettings) -> httpx.Response:
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/crm/v3/objects/contacts", params={"limit": "10"})
    finally:
        app.state.hubspot.close()


@pytest.mark.anyio
async def test_api_auth_off_answers_without_a_token(sqlite_url: str) -> None:
    response = await _contacts(ServerSettings(database_url=sqlite_url, api_auth=False))
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 10  # portal 1234567 of the default seed has 25 contacts
    assert "X-HubSpot-RateLimit-Max" in response.headers


@pytest.mark.anyio
async def test_api_auth_is_on_by_default(sqlite_url: str) -> None:
    assert ServerSettings().api_auth is True
    response = await _contacts(ServerSettings(database_url=sqlite_url))
    assert response.status_code == 401
    assert response.json()["category"] == "INVALID_AUTHENTICATION"
