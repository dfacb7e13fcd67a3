"""The control API against DNS rebinding and cross-site pages (adversarial review): without
an admin token it answers only requests addressed to a loopback name (and, when the browser
says where it comes from, sent by a loopback page); and every JSON body it parses is bounded
in depth and must be text."""

from __future__ import annotations

import httpx
import pytest

from hubspot_oauth.server import ServerSettings

from .conftest import Harness, harness_for

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


async def _post(client: httpx.AsyncClient, path: str, **headers: str) -> httpx.Response:
    return await client.post(path, content=b"{}", headers={**JSON, **headers})


@pytest.mark.parametrize("headers", [
    {"Host": "evil.example"},
    {"Host": "evil.example:8000"},
    {"Host": "127.0.0.1.evil.example"},
    {"Host": "localhost.evil.example"},
    {"Host": "evil.example", "Origin": "http://evil.example"},
    {"Host": "127.0.0.1:8000", "Origin": "http://evil.example"},
    {"Host": "localhost:8000", "Origin": "null"},
    {"Host": "[::1]:8000", "Origin": "https://attacker.example:443"},
])
async def test_foreign_host_or_origin_is_refused(hs: Harness, headers: dict[str, str]) -> None:
    hs.hubspot.clock.advance(100)
    for method, path in (("POST", "/_emulator/reset"), ("POST", "/_emulator/clock"),
                         ("GET", "/_emulator/stats"), ("GET", "/_emulator/installs")):
        if method == "POST":
            response = await _post(hs.client, path, **headers)
        else:
            response = await hs.client.get(path, headers=headers)
        assert response.status_code == 403, (path, response.text)
        body = response.json()
        assert body["category"] == "INVALID_AUTHENTICATION"
        assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
    assert hs.hubspot.clock.offset() == 100  # the reset was not done


@pytest.mark.parametrize("headers", [
    {"Host": "localhost"},
    {"Host": "localhost:8765"},
    {"Host": "LOCALHOST:8765"},
    {"Host": "127.0.0.1:8000"},
    {"Host": "127.9.8.7"},
    {"Host": "[::1]:8000"},
    {"Host": "127.0.0.1:8000", "Origin": "http://127.0.0.1:8000"},
    {"Host": "localhost:8000", "Origin": "http://localhost:3000"},
    {"Host": "[::1]:8000", "Origin": "http://[::1]:8000"},
])
async def test_loopback_host_and_origin_are_served(hs: Harness, headers: dict[str, str]) -> None:
    response = await _post(hs.client, "/_emulator/reset", **headers)
    assert response.status_code == 200, response.text
    assert (await hs.client.get("/_emulator/stats", headers=headers)).status_code == 200


async def test_an_admin_token_suffices_whatever_the_host(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url,
                                          admin_token="s3cret-admin-token"), hs_factory)
    async with hs.client:
        response = await _post(hs.client, "/_emulator/reset", Host="hub.internal.example",
                               Origin="http://dashboard.internal.example",
                               Authorization="Bearer s3cret-admin-token")
        assert response.status_code == 200, response.text
        denied = await _post(hs.client, "/_emulator/reset", Host="hub.internal.example")
        assert denied.status_code == 401


@pytest.mark.parametrize("path", ["/_emulator/clock", "/_emulator/faults", "/_emulator/reset",
                                  "/_emulator/installs/1/2/uninstall"])
@pytest.mark.parametrize("body", [
    b"[" * 10_000,
    b'{"a":' * 2_000 + b"1" + b"}" * 2_000,
    b'{"now":"\\ud800"}',
    b'{"endpoint":"\\udc00","fault":"server_error"}',
])
async def test_control_json_bodies_are_bounded_and_text(hs: Harness, path: str,
                                                        body: bytes) -> None:
    response = await hs.client.post(path, content=body, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert hs.hubspot.faults.pending() == []
