"""Bad input anywhere on the core endpoints: a 4xx in HubSpot's shape, nothing changes,
never a 5xx (Hypothesis drives methods, paths, headers, queries and bodies)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.testing.transport import InProcessTransport

from .conftest import ACME, ADMIN, CLIENT, REDIRECT

PATHS = [
    "/oauth/v1/token", "/oauth/v3/token", "/oauth/2026-03/token",
    "/oauth/v3/token/introspect", "/oauth/2026-03/token/revoke",
    "/oauth/v1/access-tokens/Cabc", "/oauth/v1/refresh-tokens/na1-x",
    "/crm/v3/objects/contacts", "/crm/v3/objects/contacts/1", "/crm/v3/objects/contacts/%00",
    "/contacts/v1/lists/all/contacts/all", "/account-info/v3/details",
    "/_emulator/clock", "/_emulator/faults", "/_emulator/installs/1/2/uninstall",
    "/_emulator/stats", "/nowhere",
]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
CONTENT_TYPES = ["application/x-www-form-urlencoded", "application/json", "text/plain",
                 "multipart/form-data; boundary=x", "application/x-www-form-urlencoded; "
                 "charset=latin-1", ""]
FIELDS = ["grant_type", "client_id", "client_secret", "code", "redirect_uri", "refresh_token",
          "code_verifier", "token", "token_type_hint", "limit", "after", "advance"]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    app = create_app(ServerSettings(database_url=f"sqlite:///{path}"))
    hubspot = app.state.hubspot
    code = hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                              user_email=ADMIN, hub_id=ACME,
                              scopes=["crm.objects.contacts.read"])
    tokens = hubspot.exchange_code(**CLIENT, code=code, redirect_uri=REDIRECT)
    transport = InProcessTransport(app)
    with httpx.Client(transport=transport, base_url="http://local-hubspot.test") as client:
        yield {"client": client, "hubspot": hubspot, "tokens": tokens}
    transport.shutdown()
    hubspot.close()


def _values(tokens: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=60),
        st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
        st.sampled_from([b"", b"%ff", b"%00", b"authorization_code", b"refresh_token",
                         CLIENT["client_id"].encode(), tokens["refresh_token"].encode(),
                         tokens["access_token"].encode(), b"x" * 5000]),
    )


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_5xx_and_hubspots_shape(fuzz_target: dict[str, Any], data: st.DataObject) -> None:
    client: httpx.Client = fuzz_target["client"]
    tokens = fuzz_target["tokens"]
    method = data.draw(st.sampled_from(METHODS))
    path = data.draw(st.sampled_from(PATHS))
    pairs = data.draw(st.lists(st.tuples(st.sampled_from(FIELDS), _values(tokens)),
                               max_size=6))
    body = b"&".join(k.encode() + b"=" + v for k, v in pairs)
    if data.draw(st.booleans()):
        body = data.draw(st.binary(max_size=200))
    headers: dict[str, Any] = {"Content-Type": data.draw(st.sampled_from(CONTENT_TYPES))}
    if data.draw(st.booleans()):
        headers["Authorization"] = b"Bearer " + data.draw(st.sampled_from(
            [tokens["access_token"], "C" + "x" * 60, "", "na1-x", "\u00e9"])).encode()
    query = data.draw(st.sampled_from(["", "?limit=5", "?limit=abc", "?after=-1",
                                       "?client_secret=x", "?properties=" + "a," * 200,
                                       "?count=0", "?vidOffset=99999999999999999999"]))
    response = client.request(method, path + query, content=body, headers=headers)
    assert response.status_code < 500, (method, path, response.text[:300])
    assert response.headers["x-hubspot-correlation-id"]
    if response.status_code >= 400:
        payload = response.json()
        assert payload["message"]
        assert payload["correlationId"] == response.headers["x-hubspot-correlation-id"]
        uuid.UUID(payload["correlationId"])


def test_fuzzing_changed_nothing(fuzz_target: dict[str, Any]) -> None:
    client: httpx.Client = fuzz_target["client"]
    tokens = fuzz_target["tokens"]
    api = client.get("/crm/v3/objects/contacts",
                     headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert api.status_code in (200, 429)
    refreshed = client.post("/oauth/v3/token", data={
        "grant_type": "refresh_token", **CLIENT, "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert refreshed.json()["refresh_token"] == tokens["refresh_token"]


def test_a_bug_becomes_a_500_in_hubspots_shape(sqlite_url: str) -> None:
    app = create_app(ServerSettings(database_url=sqlite_url))
    hubspot = app.state.hubspot

    def broken(**_: Any) -> None:
        raise RuntimeError("secret-looking detail na1-1234")

    hubspot.refresh = broken
    transport = InProcessTransport(app)
    try:
        with httpx.Client(transport=transport, base_url="http://local-hubspot.test") as client:
            response = client.post("/oauth/v3/token", data={
                "grant_type": "refresh_token", **CLIENT, "refresh_token": "na1-x"})
    finally:
        transport.shutdown()
        hubspot.close()
    assert response.status_code == 500
    body = response.json()
    assert body["category"] == "INTERNAL_ERROR"
    assert "na1-1234" not in response.text
    assert body["correlationId"] in body["message"]


def test_no_token_or_secret_reaches_the_logs(sqlite_url: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    app = create_app(ServerSettings(database_url=sqlite_url))
    hubspot = app.state.hubspot
    transport = InProcessTransport(app)
    try:
        with httpx.Client(transport=transport, base_url="http://local-hubspot.test") as client:
            code = hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                                      user_email=ADMIN, hub_id=ACME,
                                      scopes=["crm.objects.contacts.read"])
            tokens = client.post("/oauth/v3/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": code}).json()
            client.post("/oauth/v3/token", data={"grant_type": "authorization_code", **CLIENT,
                                                 "redirect_uri": REDIRECT, "code": code})
            client.get(f"/oauth/v1/access-tokens/{tokens['access_token']}")
            client.post("/oauth/v3/token/introspect",
                        data={**CLIENT, "token": tokens["refresh_token"]})

            def broken(**_: Any) -> None:
                raise RuntimeError("boom")

            hubspot.refresh = broken
            client.post("/oauth/v3/token", data={"grant_type": "refresh_token", **CLIENT,
                                                 "refresh_token": tokens["refresh_token"]})
    finally:
        transport.shutdown()
        hubspot.close()
    # The test's own HTTP client (httpx) logs URLs; everything else is the server's.
    server_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    text = "\n".join(r.getMessage() + str(r.exc_info or "") for r in server_records)
    assert "internal error" in text  # the 500 was logged ...
    for secret in (code, tokens["access_token"], tokens["refresh_token"],
                   CLIENT["client_secret"]):
        assert secret not in text  # ... without a token or secret


@pytest.mark.parametrize(
    "path", ["/oauth/v3/token/", "/oauth/v1/token/", "/crm/v3/objects/contacts/"]
)
def test_a_trailing_slash_is_not_redirected(sqlite_url: str, path: str) -> None:
    """A 307 to the slash-less path would make clients re-post their credentials to it;
    HubSpot answers an unknown path with 404, and so do we (HubSpot's JSON shape)."""
    app = create_app(ServerSettings(database_url=sqlite_url))
    transport = InProcessTransport(app)
    try:
        with httpx.Client(transport=transport, base_url="http://local-hubspot.test") as client:
            response = client.post(path, data={"grant_type": "refresh_token", **CLIENT,
                                               "refresh_token": "na1-x"})
    finally:
        transport.shutdown()
        app.state.hubspot.close()
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["correlationId"]
