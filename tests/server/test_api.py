"""The bearer-protected sample API: shapes, paging, 401/403/429 bodies, HubSpot's headers."""

from __future__ import annotations

import pytest

from hubspot_oauth.server import ServerSettings
from tests.support.frozen_time import freeze_emulator_time
from tests.support.rate_window import start_of_next_rate_window

from .conftest import ACME, GLOBEX, Harness, harness_for

pytestmark = pytest.mark.anyio


async def test_list_contacts_with_paging(hs: Harness) -> None:
    tokens = await hs.tokens()
    first = await hs.api(tokens["access_token"])
    assert first.status_code == 200
    body = first.json()
    assert len(body["results"]) == 10
    contact = body["results"][0]
    assert set(contact) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert contact["properties"]["firstname"] == "Maria"
    assert contact["properties"]["hs_object_id"] == contact["id"]
    assert contact["archived"] is False
    seen = [c["id"] for c in body["results"]]
    after = body["paging"]["next"]["after"]
    while True:
        page = (await hs.api(tokens["access_token"],
                             f"/crm/v3/objects/contacts?limit=10&after={after}")).json()
        seen.extend(c["id"] for c in page["results"])
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
    assert len(seen) == len(set(seen)) == 25


async def test_list_limit_and_properties(hs: Harness) -> None:
    tokens = await hs.tokens()
    page = (await hs.api(tokens["access_token"],
                         "/crm/v3/objects/contacts?limit=100&properties=email,firstname")
            ).json()
    assert len(page["results"]) == 25 and "paging" not in page
    assert set(page["results"][0]["properties"]) == {
        "email", "firstname", "createdate", "lastmodifieddate", "hs_object_id"}
    for bad in ("0", "101", "ten", "-1"):
        response = await hs.api(tokens["access_token"], f"/crm/v3/objects/contacts?limit={bad}")
        assert response.status_code == 400
        assert response.json()["message"] == (
            f"'limit' must be an integer between 1 and 100, got '{bad}'")
        assert response.json()["category"] == "VALIDATION_ERROR"


async def test_contacts_belong_to_the_tokens_portal(hs: Harness) -> None:
    globex = await hs.tokens(hub_id=GLOBEX)
    page = (await hs.api(globex["access_token"], "/crm/v3/objects/contacts?limit=100")).json()
    assert len(page["results"]) == 3
    acme = await hs.tokens()
    acme_first = (await hs.api(acme["access_token"])).json()["results"][0]["id"]
    response = await hs.api(globex["access_token"], f"/crm/v3/objects/contacts/{acme_first}")
    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"
    own = await hs.api(acme["access_token"], f"/crm/v3/objects/contacts/{acme_first}")
    assert own.status_code == 200 and own.json()["id"] == acme_first


async def test_create_contact(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.api(tokens["access_token"], method="POST", json={
        "properties": {"email": "new@acme.example.com", "firstname": "New"}})
    assert response.status_code == 201
    created = response.json()
    assert created["properties"]["email"] == "new@acme.example.com"
    got = await hs.api(tokens["access_token"], f"/crm/v3/objects/contacts/{created['id']}")
    assert got.json()["properties"]["firstname"] == "New"
    duplicate = await hs.api(tokens["access_token"], method="POST", json={
        "properties": {"email": "NEW@acme.example.com"}})
    assert duplicate.status_code == 409
    assert duplicate.json()["message"] == f"Contact already exists. Existing ID: {created['id']}"


async def test_create_contact_bad_bodies(hs: Harness) -> None:
    tokens = await hs.tokens()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    cases = [
        ({"content": b"{not json", "headers": {**headers, "Content-Type": "application/json"}},
         400),
        ({"json": {"properties": "x"}, "headers": headers}, 400),
        ({"json": [1, 2], "headers": headers}, 400),
        ({"data": {"properties": "x"}, "headers": headers}, 415),
        ({"content": b"\xff\xfe", "headers": {**headers, "Content-Type": "application/json"}},
         400),
    ]
    before = (await hs.api(tokens["access_token"], "/crm/v3/objects/contacts?limit=100")).json()
    for kwargs, status in cases:
        response = await hs.client.post("/crm/v3/objects/contacts", **kwargs)
        assert response.status_code == status, response.text
        assert response.json()["correlationId"] == response.headers["x-hubspot-correlation-id"]
    after = (await hs.api(tokens["access_token"], "/crm/v3/objects/contacts?limit=100")).json()
    assert after == before


async def test_c12_missing_scopes_names_the_write_scope(hs: Harness) -> None:
    tokens = await hs.tokens(optional_scopes=[])
    assert "crm.objects.contacts.write" not in tokens["scopes"]
    response = await hs.api(tokens["access_token"], method="POST",
                            json={"properties": {"email": "x@acme.example.com"}})
    assert response.status_code == 403
    body = response.json()
    assert body["category"] == "MISSING_SCOPES"
    assert body["status"] == "error"
    assert body["message"] == (
        "This app hasn't been granted all required scopes to make this call. Read more about "
        "required scopes here: https://developers.hubspot.com/scopes.")
    assert body["errors"] == [{"message": "One or more of the following scopes are required.",
                               "context": {"requiredScopes": ["crm.objects.contacts.write"]}}]
    assert body["links"] == {"scopes": "https://developers.hubspot.com/scopes"}
    assert response.headers["x-hubspot-ratelimit-max"] == "100"


async def test_expired_authentication(hs: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_emulator_time(monkeypatch)  # "5 second(s)", however slow the run
    tokens = await hs.tokens()
    hs.hubspot.clock.advance(1805)
    response = await hs.api(tokens["access_token"])
    assert response.status_code == 401
    body = response.json()
    assert body["category"] == "EXPIRED_AUTHENTICATION"
    assert body["status"] == "error"
    assert body["message"] == "The OAuth token used to make this call expired 5 second(s) ago."
    assert body["context"]["expire time"][0].endswith("Z")
    assert response.headers["x-hubspot-auth-failure"] == "401 Unauthorized"
    hs.hubspot.clock.advance(7200)
    later = (await hs.api(tokens["access_token"])).json()
    assert later["message"] == "The OAuth token used to make this call expired 2 hour(s) ago."


async def test_invalid_authentication(hs: Harness) -> None:
    no_header = await hs.client.get("/crm/v3/objects/contacts")
    assert no_header.status_code == 401
    body = no_header.json()
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found.")
    unknown = await hs.api("Cunknown" + "x" * 50)
    assert unknown.status_code == 401
    assert unknown.json()["message"] == (
        "The OAuth token used to make this call is not valid (unknown or revoked).")
    basic = await hs.client.get("/crm/v3/objects/contacts",
                                headers={"Authorization": "Basic abc"})
    assert basic.json()["category"] == "INVALID_AUTHENTICATION"


async def test_rate_limit(sqlite_url: str, hs_factory) -> None:
    hs = await harness_for(ServerSettings(database_url=sqlite_url, rate_limit_max=3,
                                          rate_limit_interval_ms=10_000), hs_factory)
    async with hs.client:
        tokens = await hs.tokens()
        start_of_next_rate_window(hs.hubspot.clock)  # the four calls in one 10 s window
        remaining = []
        for _ in range(3):
            response = await hs.api(tokens["access_token"])
            assert response.status_code == 200
            assert response.headers["x-hubspot-ratelimit-max"] == "3"
            assert response.headers["x-hubspot-ratelimit-interval-milliseconds"] == "10000"
            remaining.append(response.headers["x-hubspot-ratelimit-remaining"])
        assert remaining == ["2", "1", "0"]
        limited = await hs.api(tokens["access_token"])
        assert limited.status_code == 429
        body = limited.json()
        assert body["category"] == "RATE_LIMITS"
        assert body["errorType"] == "RATE_LIMIT"
        assert body["message"] == "You have reached your ten secondly limit."
        assert limited.headers["x-hubspot-ratelimit-remaining"] == "0"
        assert int(limited.headers["retry-after"]) >= 1
        # Another portal of the same app has its own window.
        other = await hs.tokens(hub_id=GLOBEX)
        assert (await hs.api(other["access_token"])).status_code == 200
        # The next window (emulator clock) allows calls again.
        hs.hubspot.clock.advance(10)
        assert (await hs.api(tokens["access_token"])).status_code == 200


async def test_legacy_contacts_list_for_the_node_quickstart(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.api(tokens["access_token"],
                            "/contacts/v1/lists/all/contacts/all?count=1")
    assert response.status_code == 200
    body = response.json()
    assert body["has-more"] is True
    assert len(body["contacts"]) == 1
    first = body["contacts"][0]
    assert first["properties"]["firstname"]["value"] == "Maria"
    assert first["properties"]["lastname"]["value"]
    assert body["vid-offset"] == first["vid"]
    rest = (await hs.api(tokens["access_token"],
                         f"/contacts/v1/lists/all/contacts/all?count=100&vidOffset="
                         f"{body['vid-offset']}")).json()
    assert len(rest["contacts"]) == 24 and rest["has-more"] is False


async def test_account_info(hs: Harness) -> None:
    tokens = await hs.tokens()
    response = await hs.api(tokens["access_token"], "/account-info/v3/details")
    assert response.status_code == 200
    body = response.json()
    assert body["portalId"] == ACME
    assert body["dataHostingLocation"] == "na1"
    assert body["uiDomain"] == "app.hubspot.com"


async def test_every_response_has_a_correlation_id(hs: Harness) -> None:
    tokens = await hs.tokens()
    for path in ("/crm/v3/objects/contacts", "/account-info/v3/details", "/nope",
                 "/oauth/v1/access-tokens/x"):
        response = await hs.api(tokens["access_token"], path)
        assert response.headers["x-hubspot-correlation-id"]
    ids = {(await hs.api(tokens["access_token"])).headers["x-hubspot-correlation-id"]
           for _ in range(3)}
    assert len(ids) == 3


async def test_api_stats(hs: Harness) -> None:
    tokens = await hs.tokens()
    await hs.api(tokens["access_token"])
    await hs.api("Cbad" + "y" * 40)
    assert hs.hubspot.stats()["api"] == {"ok": 1, "error": 1}
