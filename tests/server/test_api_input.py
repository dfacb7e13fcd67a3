"""The sample API's input checks (adversarial review): text that has no UTF-8 form, deeply
nested JSON, and the order of the checks (HubSpot authenticates and checks scopes before it
looks at the input)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from hubspot_oauth.server.models import contacts

from .conftest import ACME, Harness

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}


def _assert_validation_error(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["category"] == "VALIDATION_ERROR"
    assert body["status"] == "error"
    assert body["correlationId"] == response.headers["x-hubspot-correlation-id"]
    return body


async def _writer(hs: Harness) -> dict[str, str]:
    tokens = await hs.tokens()
    assert "crm.objects.contacts.write" in tokens["scopes"]
    return {"Authorization": f"Bearer {tokens['access_token']}", **JSON}


@pytest.mark.parametrize("body", [
    b'{"properties":{"firstname":"\\ud800"}}',
    b'{"properties":{"\\udc00":"x"}}',
    b'{"properties":{"firstname":"ok \\udfff tail"}}',
])
async def test_lone_surrogates_are_refused_before_anything_is_stored(
        hs: Harness, body: bytes) -> None:
    headers = await _writer(hs)
    listing = "/crm/v3/objects/contacts?limit=100"
    before = (await hs.client.get(listing, headers=headers)).json()
    stats = hs.hubspot.stats()["api"]
    response = await hs.client.post("/crm/v3/objects/contacts", content=body, headers=headers)
    _assert_validation_error(response)
    assert "\\ud" not in response.text and "\ufffd" not in response.text
    assert hs.hubspot.stats()["api"] == {**stats, "error": stats.get("error", 0) + 1}
    after = await hs.client.get(listing, headers=headers)
    assert after.status_code == 200 and after.json() == before


async def test_a_stored_lone_surrogate_never_breaks_a_listing(hs: Harness) -> None:
    # Defence in depth: a value that got into the database some other way (an older
    # version, a hand-edited seed) is sent as U+FFFD, never as a 500.
    headers = await _writer(hs)
    with hs.hubspot.engine.begin() as conn:
        conn.execute(sa.insert(contacts).values(
            hub_id=ACME, properties={"firstname": "bad \ud800", "email": "s@acme.example.com"},
            created_at=1.0, updated_at=1.0))
    for path in ("/crm/v3/objects/contacts?limit=100&properties=firstname",
                 "/contacts/v1/lists/all/contacts/all?count=100"):
        response = await hs.client.get(path, headers=headers)
        assert response.status_code == 200, response.text
        assert "bad \ufffd" in response.content.decode("utf-8")


@pytest.mark.parametrize("body", [
    b'{"properties":' + b"[" * 50_000 + b"}",
    b"[" * 60_000,
    b"[" * 33 + b"]" * 33,
    b'{"properties":{"a":' + b'{"b":' * 40 + b'"x"' + b"}" * 40 + b"}}",
])
async def test_deeply_nested_json_is_a_400(hs: Harness, body: bytes) -> None:
    headers = await _writer(hs)
    response = await hs.client.post("/crm/v3/objects/contacts", content=body, headers=headers)
    body_json = _assert_validation_error(response)
    assert body_json["message"].startswith("Invalid input JSON")
    assert hs.hubspot.stats()["api"].get("ok", 0) == 0


async def test_authentication_comes_before_input_checks(hs: Harness) -> None:
    unknown = {"Authorization": "Bearer Cgarbage-not-a-token"}
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/crm/v3/objects/contacts?limit=abc", {}),
        ("GET", "/crm/v3/objects/contacts?after=x", {}),
        ("GET", "/contacts/v1/lists/all/contacts/all?count=abc", {}),
        ("POST", "/crm/v3/objects/contacts",
         {"content": b"x", "headers": {"Content-Type": "text/plain"}}),
        ("POST", "/crm/v3/objects/contacts", {"content": b"{", "headers": JSON}),
    ]
    for method, path, kwargs in cases:
        headers = {**unknown, **kwargs.pop("headers", {})}
        response = await hs.client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["category"] == "INVALID_AUTHENTICATION"
    tokens = await hs.tokens()
    hs.hubspot.clock.advance(1900)
    expired = await hs.api(tokens["access_token"], "/crm/v3/objects/contacts?limit=abc")
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"


async def test_scopes_come_before_input_checks(hs: Harness) -> None:
    tokens = await hs.tokens(optional_scopes=[])
    read_only = {"Authorization": f"Bearer {tokens['access_token']}"}
    for kwargs in ({"content": b"x", "headers": {"Content-Type": "text/plain"}},
                   {"content": b"{", "headers": JSON},
                   {"content": b"[" * 50_000, "headers": JSON},
                   {"json": {"properties": {"email": "x@acme.example.com"}}}):
        headers = {**read_only, **kwargs.pop("headers", {})}
        response = await hs.client.post("/crm/v3/objects/contacts", headers=headers, **kwargs)
        assert response.status_code == 403, response.text
        assert response.json()["category"] == "MISSING_SCOPES"


async def test_input_errors_of_an_authorized_call_still_answer_400_and_415(
        hs: Harness) -> None:
    headers = await _writer(hs)
    bad_limit = await hs.client.get("/crm/v3/objects/contacts?limit=abc", headers=headers)
    _assert_validation_error(bad_limit)
    # An authenticated call: the rate-limit headers come with its error too.
    assert bad_limit.headers["x-hubspot-ratelimit-max"] == "100"
    plain = await hs.client.post("/crm/v3/objects/contacts", content=b"x",
                                 headers={**headers, "Content-Type": "text/plain"})
    _assert_validation_error(plain, 415)
    assert hs.hubspot.stats()["api"].get("ok", 0) == 0
    assert hs.hubspot.stats()["api"]["error"] == 2
