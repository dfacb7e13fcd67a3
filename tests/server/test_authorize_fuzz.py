"""Property tests of the authorize endpoint: any state comes back byte for byte; any query
string, any posted form, gets a page (never a 5xx, never a redirect to an unverified URI)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.testing.transport import InProcessTransport
from tests.support.pages import BASE_URL, CLIENT_ID, REDIRECT_URI, authorize_path

REGISTERED = ("http://localhost:3000/oauth-callback", "https://www.example.com/auth-callback")
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture
def clients(sqlite_url: str) -> Iterator[dict[str, httpx.Client]]:
    """A sync client on a plain server and one on an auto-approving server."""
    transports = []
    made = {}
    for name, auto in (("pages", None), ("auto", "admin@example.com")):
        url = sqlite_url.replace("test.db", f"{name}.db")
        transport = InProcessTransport(create_app(ServerSettings(database_url=url,
                                                                 auto_approve=auto)))
        transports.append(transport)
        made[name] = httpx.Client(transport=transport, base_url=BASE_URL)
    try:
        yield made
    finally:
        for client in made.values():
            client.close()
        for transport in transports:
            transport.shutdown()


def test_any_state_is_echoed_exactly(clients: dict[str, httpx.Client]) -> None:
    client = clients["auto"]

    @FUZZ
    @given(st.text(st.characters(exclude_categories=("Cs",)), max_size=300))
    def check(state: str) -> None:
        response = client.get(authorize_path(state=state))
        assert response.status_code == 302, response.text[:300]
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI + "?code=")
        query = parse_qs(urlsplit(location).query, keep_blank_values=True)
        assert query["state"] == [state]
        assert location.endswith("&state=" + quote(state, safe=""))

    check()


_param_names = st.sampled_from(
    ["client_id", "redirect_uri", "scope", "optional_scope", "state", "code_challenge",
     "code_challenge_method", "response_type", "x"]
)
_raw_value = st.binary(max_size=60).map(lambda b: "".join(f"%{c:02X}" for c in b))
_text_value = st.text(max_size=60).map(lambda t: quote(t, safe=""))
_known_value = st.sampled_from(
    [CLIENT_ID, quote(REDIRECT_URI, safe=""), "crm.objects.contacts.read", "automation",
     "S256", "plain", "a" * 43, "", "%20", "+"]
)


def test_any_query_gets_a_page_never_a_server_error(clients: dict[str, httpx.Client]) -> None:
    client = clients["auto"]

    @FUZZ
    @given(
        st.lists(st.tuples(_param_names, st.one_of(_raw_value, _text_value, _known_value)),
                 max_size=8),
        st.sampled_from(["/oauth/authorize", "/oauth/1234567/authorize", "/oauth/x/authorize"]),
    )
    def check(pairs: list[tuple[str, str]], path: str) -> None:
        query = "&".join(f"{name}={value}" for name, value in pairs)
        response = client.get(f"{path}?{query}")
        assert response.status_code in (200, 302, 400, 403), response.text[:300]
        if response.status_code == 302:
            # Only after client and redirect URI were verified.
            assert response.headers["location"].startswith(REGISTERED)
        else:
            assert "location" not in response.headers
            assert response.headers["content-type"].startswith("text/html")

    check()


def test_any_posted_form_gets_a_page(clients: dict[str, httpx.Client]) -> None:
    client = clients["pages"]
    client.get(authorize_path())  # a session cookie, so CSRF is not the only refusal

    @FUZZ
    @given(
        st.sampled_from(["/oauth/authorize/login", "/oauth/authorize/account",
                         "/oauth/authorize/decision", "/oauth/authorize/logout"]),
        st.binary(max_size=300),
        st.sampled_from(["application/x-www-form-urlencoded", "multipart/form-data",
                         "text/plain", ""]),
    )
    def check(path: str, body: bytes, content_type: str) -> None:
        headers = {"content-type": content_type} if content_type else {}
        response = client.post(path, content=body, headers=headers)
        assert response.status_code in (400, 403), response.text[:300]
        assert "location" not in response.headers

    check()
