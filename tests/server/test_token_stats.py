"""Stats of token requests refused while their parameters are read (adversarial review): a
refresh request with a bad parameter is still a refresh request."""

from __future__ import annotations

import pytest

from .conftest import CLIENT, Harness

pytestmark = pytest.mark.anyio

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PREFIX = (f"client_id={CLIENT['client_id']}&client_secret={CLIENT['client_secret']}&"
          ).encode()


@pytest.mark.parametrize(("grant", "tail"), [
    ("refresh_token", b"refresh_token=" + b"a" * 4097),
    ("refresh_token", b"refresh_token=na1-ab%00cd"),
    ("refresh_token", b"refresh_token=na1-\xff\xfe"),
    ("refresh_token", b"refresh_token=a&refresh_token=b"),
    ("authorization_code", b"code=x%00y&redirect_uri=http://localhost:3000/oauth-callback"),
    ("authorization_code", b"code=" + b"c" * 4097),
])
async def test_parameter_errors_count_under_their_grant_type(
        hs: Harness, grant: str, tail: bytes) -> None:
    body = b"grant_type=" + grant.encode() + b"&" + PREFIX + tail
    response = await hs.client.post("/oauth/v3/token", content=body, headers=FORM)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    stats = hs.hubspot.stats()["token"]
    assert stats[grant] == {"ok": 0, "error": 1}, stats
    assert stats.get("other", {}).get("error", 0) == 0


async def test_a_v1_grant_type_in_the_query_counts_too(hs: Harness) -> None:
    response = await hs.client.post("/oauth/v1/token?grant_type=refresh_token",
                                    content=PREFIX + b"refresh_token=x%00", headers=FORM)
    assert response.status_code == 400, response.text
    assert hs.hubspot.stats()["token"]["refresh_token"] == {"ok": 0, "error": 1}


async def test_unknown_or_unreadable_grant_types_count_as_other(hs: Harness) -> None:
    for body in (b"grant_type=password&" + PREFIX, b"grant_type=\xff&" + PREFIX,
                 b"grant_type=refresh_token%00&" + PREFIX):
        response = await hs.client.post("/oauth/v3/token", content=body, headers=FORM)
        assert response.status_code == 400, response.text
    stats = hs.hubspot.stats()["token"]
    assert stats["other"]["error"] == 3
    assert stats.get("refresh_token", {}).get("error", 0) == 0
