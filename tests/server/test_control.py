"""The control API (/_emulator): clock, faults, stats, uninstall, reset, and who may use it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hubspot_oauth.server import ServerSettings

from .conftest import ACME, CLIENT, Harness, harness_for

pytestmark = pytest.mark.anyio
JSON = {"Content-Type": "application/json"}


async def test_clock_read_advance_set_reset(hs: Harness) -> None:
    now = (await hs.client.get("/_emulator/clock")).json()
    assert abs(datetime.fromisoformat(now["now"].replace("Z", "+00:00")).timestamp()
               - datetime.now(UTC).timestamp()) < 60
    moved = (await hs.client.post("/_emulator/clock", json={"advance": 3600})).json()
    assert 3599 <= moved["offset_seconds"] <= 3601
    target = "2030-01-01T00:00:00Z"
    set_ = (await hs.client.post("/_emulator/clock", json={"now": target})).json()
    assert set_["now"].startswith("2030-01-01T00:00:0")
    assert hs.hubspot.clock.now().year == 2030
    back = (await hs.client.post("/_emulator/clock", json={"reset": True})).json()
    assert back["offset_seconds"] == 0


async def test_clock_expires_access_tokens(hs: Harness) -> None:
    tokens = await hs.tokens()
    await hs.client.post("/_emulator/clock", json={"advance": 1800})
    response = await hs.api(tokens["access_token"])
    assert response.json()["category"] == "EXPIRED_AUTHENTICATION"


@pytest.mark.parametrize("body", [{}, {"advance": "soon"}, {"advance": 1, "now": "x"},
                                  {"now": "yesterday"}, {"advance": float("1e300")},
                                  {"reset": False}, {"other": 1}])
async def test_clock_bad_requests(hs: Harness, body: dict) -> None:
    response = await hs.client.post("/_emulator/clock", json=body)
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert hs.hubspot.clock.offset() == 0


async def test_control_posts_need_json(hs: Harness) -> None:
    for path in ("/_emulator/clock", "/_emulator/reset", "/_emulator/faults"):
        response = await hs.client.post(path, data={"advance": "10"})
        assert response.status_code == 415
        assert response.json()["message"] == (
            "the control API takes Content-Type: application/json (send {} for no options)")
    assert hs.hubspot.clock.offset() == 0


async def test_fault_invalid_grant_on_refresh_fires_once(hs: Harness) -> None:
    tokens = await hs.tokens()
    queued = await hs.client.post("/_emulator/faults",
                                  json={"endpoint": "token", "fault": "invalid_grant"})
    assert queued.status_code == 201
    assert queued.json()["times"] == 1
    failed = await hs.refresh(tokens["refresh_token"])
    assert failed.status_code == 400
    assert failed.json()["status"] == "BAD_REFRESH_TOKEN"
    assert failed.json()["error"] == "invalid_grant"
    assert (await hs.refresh(tokens["refresh_token"])).status_code == 200
    assert (await hs.client.get("/_emulator/faults")).json() == {"faults": []}


@pytest.mark.parametrize(("fault", "status"), [("server_error", 500), ("rate_limit", 429),
                                               ("html_502", 502)])
async def test_token_faults(hs: Harness, fault: str, status: int) -> None:
    tokens = await hs.tokens()
    hs.hubspot.faults.add(endpoint="token", fault=fault, times=2)
    for _ in range(2):
        response = await hs.refresh(tokens["refresh_token"])
        assert response.status_code == status
        if fault == "html_502":
            assert response.headers["content-type"].startswith("text/html")
            assert "<h1>502 Bad Gateway</h1>" in response.text
        else:
            assert response.json()["correlationId"]
    ok = await hs.refresh(tokens["refresh_token"])
    assert ok.status_code == 200
    # The faulted calls changed nothing: the same refresh token still works.
    assert ok.json()["refresh_token"] == tokens["refresh_token"]


async def test_delay_fault_then_normal_answer(hs: Harness) -> None:
    tokens = await hs.tokens()
    hs.hubspot.faults.add(endpoint="token", fault="delay", delay_ms=50)
    response = await hs.refresh(tokens["refresh_token"])
    assert response.status_code == 200
    assert hs.hubspot.faults.pending() == []


@pytest.mark.parametrize(("fault", "status", "category"), [
    ("expired_authentication", 401, "EXPIRED_AUTHENTICATION"),
    ("rate_limit", 429, "RATE_LIMITS"),
    ("server_error", 500, "INTERNAL_ERROR"),
])
async def test_api_faults(hs: Harness, fault: str, status: int, category: str) -> None:
    tokens = await hs.tokens()
    await hs.client.post("/_emulator/faults", json={"endpoint": "api", "fault": fault})
    response = await hs.api(tokens["access_token"])
    assert response.status_code == status
    assert response.json()["category"] == category
    assert (await hs.api(tokens["access_token"])).status_code == 200


@pytest.mark.parametrize("body", [
    {"endpoint": "nowhere", "fault": "rate_limit"},
    {"endpoint": "token", "fault": "expired_authentication"},
    {"endpoint": "api", "fault": "rate_limit", "times": 0},
    {"endpoint": "api", "fault": "delay", "delay_ms": 10**9},
    {"endpoint": "api", "fault": "rate_limit", "colour": "red"},
])
async def test_bad_faults_are_refused(hs: Harness, body: dict) -> None:
    response = await hs.client.post("/_emulator/faults", json=body)
    assert response.status_code == 400
    assert hs.hubspot.faults.pending() == []


async def test_faults_list_and_clear(hs: Harness) -> None:
    hs.hubspot.faults.add(endpoint="api", fault="rate_limit", times=3)
    listed = (await hs.client.get("/_emulator/faults")).json()["faults"]
    assert [(f["endpoint"], f["fault"], f["times"]) for f in listed] == [("api", "rate_limit",
                                                                         3)]
    cleared = await hs.client.delete("/_emulator/faults")
    assert cleared.json() == {"faults": []}


async def test_introspect_and_revoke_faults(hs: Harness) -> None:
    tokens = await hs.tokens()
    hs.hubspot.faults.add(endpoint="introspect", fault="server_error")
    hs.hubspot.faults.add(endpoint="revoke", fault="rate_limit")
    intro = await hs.client.post("/oauth/v3/token/introspect",
                                 data={**CLIENT, "token": tokens["access_token"]})
    assert intro.status_code == 500
    revoke = await hs.client.post("/oauth/v3/token/revoke",
                                  data={**CLIENT, "token": tokens["refresh_token"]})
    assert revoke.status_code == 429
    assert (await hs.refresh(tokens["refresh_token"])).status_code == 200


async def test_stats_shape(hs: Harness) -> None:
    tokens = await hs.tokens()
    await hs.client.post("/oauth/v3/token/introspect",
                         data={**CLIENT, "token": tokens["access_token"]})
    await hs.client.post("/oauth/v3/token/revoke",
                         data={**CLIENT, "token": tokens["refresh_token"]})
    await hs.api(tokens["access_token"])
    stats = (await hs.client.get("/_emulator/stats")).json()
    assert stats["token"]["authorization_code"] == {"ok": 1, "error": 0}
    assert stats["token"]["refresh_token"] == {"ok": 0, "error": 0}
    assert stats["introspect"] == {"ok": 1, "error": 0}
    assert stats["revoke"] == {"ok": 1, "error": 0}
    assert stats["api"] == {"ok": 0, "error": 1}  # the cascade revoked the access token


async def test_uninstall(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.client.post(f"/_emulator/installs/1/{ACME}/uninstall", json={})
    assert response.status_code == 200
    assert response.json() == {"uninstalled": True}
    assert (await hs.refresh(tokens["refresh_token"])).json()["status"] == "BAD_REFRESH_TOKEN"
    again = await hs.client.post(f"/_emulator/installs/1/{ACME}/uninstall", json={})
    assert again.status_code == 404
    bad = await hs.client.post("/_emulator/installs/one/two/uninstall", json={})
    assert bad.status_code == 400
    installs = (await hs.client.get("/_emulator/installs")).json()["installs"]
    assert installs[0]["installed"] is False


async def test_reset(hs: Harness) -> None:
    tokens = await hs.tokens()
    _, client_id, _ = hs.hubspot.create_app_registration(
        name="Temp", redirect_urls=["https://www.example.com/cb"], scopes=["oauth"])
    hs.hubspot.clock.advance(100)
    hs.hubspot.faults.add(endpoint="api", fault="rate_limit")
    response = await hs.client.post("/_emulator/reset", json={})
    assert response.status_code == 200
    assert response.json()["reset"] is True
    assert hs.hubspot.clock.offset() == 0
    assert hs.hubspot.faults.pending() == []
    assert hs.hubspot.app(client_id) is None
    assert (await hs.refresh(tokens["refresh_token"])).json()["status"] == "BAD_REFRESH_TOKEN"
    assert hs.hubspot.stats()["token"]["refresh_token"] == {"ok": 0, "error": 1}
    assert (await hs.tokens())["hub_id"] == ACME  # the seed is back


async def test_admin_token_guards_the_control_api(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url, host="0.0.0.0",
                                          admin_token="s3cret-admin-token"), hs_factory)
    async with hs.client:
        denied = await hs.client.get("/_emulator/stats")
        assert denied.status_code == 401
        assert denied.json()["category"] == "INVALID_AUTHENTICATION"
        wrong = await hs.client.get("/_emulator/stats",
                                    headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await hs.client.get("/_emulator/stats",
                                 headers={"Authorization": "Bearer s3cret-admin-token"})
        assert ok.status_code == 200


async def test_control_api_off_when_not_on_loopback(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url, host="0.0.0.0"), hs_factory)
    async with hs.client:
        response = await hs.client.post("/_emulator/reset", json={})
        assert response.status_code == 404
        assert (await hs.client.get("/_emulator/stats")).status_code == 404


def test_control_api_defaults() -> None:
    assert ServerSettings(host="127.0.0.1").control_api_enabled
    assert ServerSettings(host="localhost").control_api_enabled
    assert ServerSettings(host="::1").control_api_enabled
    assert not ServerSettings(host="0.0.0.0").control_api_enabled
    assert not ServerSettings(host="192.168.1.5").control_api_enabled
    assert ServerSettings(host="0.0.0.0", admin_token="long-enough").control_api_enabled
    assert not ServerSettings(host="127.0.0.1", control_api=False).control_api_enabled


async def test_control_api_refuses_a_non_loopback_client(sqlite_url: str, hs_factory) -> None:
    import httpx

    app = hs_factory(ServerSettings(database_url=sqlite_url))
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://h.test") as client:
        response = await client.get("/_emulator/stats")
    assert response.status_code == 403
    assert response.json()["message"] == ("the control API answers only loopback clients "
                                          "unless the server has an admin token")
