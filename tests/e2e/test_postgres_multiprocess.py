"""Two `hubspot-oauth server` processes on different ports share one PostgreSQL database
and behave as one local HubSpot (issue 5): a code issued by one is redeemed at the other,
20 concurrent redemptions of one code spread over both give exactly one success, refresh
works at either, an uninstall or a clock move at one is seen by the other, and a user's
browser may be sent to either process between the authorize pages (as behind a load
balancer) because both sign their pages with the database's shared secret.

Real processes (the venv's console script), real PostgreSQL (tests/conftest.py), real
sockets on loopback; every wait is bounded.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from tests.e2e.server_processes import (
    ACME,
    ADMIN,
    CLIENT_ID,
    CLIENT_SECRET,
    REDIRECT_URI,
    ServerProcess,
    api_status,
    issue_code,
    race,
    servers,
)
from tests.support.pages import form_with, parse_page

from hubspot_oauth import Endpoints, OAuthClient
from hubspot_oauth.errors import ReauthorizationRequiredError

pytestmark = [pytest.mark.postgres, pytest.mark.slow]



@pytest.fixture(scope="module")
def pair(postgres_cluster, tmp_path_factory: pytest.TempPathFactory  # noqa: ANN001
         ) -> Iterator[list[ServerProcess]]:
    """Two servers, both auto-approving as the admin, on one fresh PostgreSQL database."""
    url = postgres_cluster.create_database()
    with servers(url, tmp_path_factory.mktemp("pair"), 2, "--auto-approve", ADMIN) as both:
        yield both


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "pair" in request.fixturenames:  # back to the seed: tokens, installs, clock, stats
        first = request.getfixturevalue("pair")[0]
        httpx.post(first.base_url + "/_emulator/reset", json={}, timeout=30).raise_for_status()


def redeem(server: ServerProcess, code: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/oauth/v1/token", timeout=60, data={
        "grant_type": "authorization_code", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "redirect_uri": REDIRECT_URI, "code": code})


def client_for(server: ServerProcess) -> OAuthClient:
    return OAuthClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                       redirect_uri=REDIRECT_URI, scopes=["crm.objects.contacts.read"],
                       endpoints=Endpoints.local(server.base_url))


def test_a_code_issued_by_one_is_redeemed_at_the_other(pair: list[ServerProcess]) -> None:
    first, second = pair
    code = issue_code(first)
    response = redeem(second, code)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["hub_id"] == ACME
    # The tokens work at both, and the code is spent at both.
    assert api_status(first, tokens["access_token"]) == (200, None)
    assert api_status(second, tokens["access_token"]) == (200, None)
    for server in pair:
        replay = redeem(server, code)
        assert replay.status_code == 400
        assert replay.json()["status"] == "BAD_AUTH_CODE"


def test_twenty_concurrent_redemptions_over_both_one_success(
    pair: list[ServerProcess],
) -> None:
    first, second = pair
    code = issue_code(first)
    targets = [first, second] * 10
    answers = race([lambda s=s: redeem(s, code) for s in targets])
    assert all(isinstance(a, httpx.Response) for a in answers), answers
    wins = [a for a in answers if a.status_code == 200]
    losses = [a for a in answers if a.status_code != 200]
    assert len(wins) == 1, [a.text for a in answers]
    assert len(losses) == 19
    assert {a.status_code for a in losses} == {400}
    assert {a.json()["status"] for a in losses} == {"BAD_AUTH_CODE"}
    # Both processes count into the one stats table.
    for server in pair:
        stats = httpx.get(server.base_url + "/_emulator/stats", timeout=30).json()
        assert stats["token"]["authorization_code"] == {"ok": 1, "error": 19}


def test_refresh_works_at_either(pair: list[ServerProcess]) -> None:
    first, second = pair
    with client_for(first) as at_first, client_for(second) as at_second:
        token = at_second.exchange_code(issue_code(first))
        seen = {token.access_token}
        for client in (at_first, at_second, at_first, at_second):
            fresh = client.refresh(token.refresh_token)
            assert fresh.refresh_token == token.refresh_token  # rotation off (HubSpot)
            seen.add(fresh.access_token)
            for server in pair:
                assert api_status(server, fresh.access_token) == (200, None)
        assert len(seen) == 5


def test_an_uninstall_at_one_is_seen_by_the_other(pair: list[ServerProcess]) -> None:
    first, second = pair
    with client_for(first) as at_first:
        token = at_first.exchange_code(issue_code(first))
        installs = httpx.get(second.base_url + "/_emulator/installs", timeout=30).json()
        assert any(i["hub_id"] == ACME for i in installs["installs"]), installs
        answer = httpx.post(f"{second.base_url}/_emulator/installs/1/{ACME}/uninstall",
                            json={}, timeout=30)
        assert answer.status_code == 200, answer.text
        with pytest.raises(ReauthorizationRequiredError) as info:
            at_first.refresh(token.refresh_token)
        assert info.value.code == "BAD_REFRESH_TOKEN"
        assert api_status(first, token.access_token)[0] == 401


def test_the_clock_moved_at_one_is_seen_by_the_other(pair: list[ServerProcess]) -> None:
    first, second = pair
    with client_for(first) as at_first:
        token = at_first.exchange_code(issue_code(first))
    assert api_status(second, token.access_token) == (200, None)
    moved = httpx.post(first.base_url + "/_emulator/clock", json={"advance": 1801}, timeout=30)
    assert moved.status_code == 200, moved.text
    seen = httpx.get(second.base_url + "/_emulator/clock", timeout=30).json()
    assert seen["offset_seconds"] == pytest.approx(1801, abs=1)
    status, category = api_status(second, token.access_token)
    assert (status, category) == (401, "EXPIRED_AUTHENTICATION")
    httpx.post(second.base_url + "/_emulator/clock", json={"reset": True},
               timeout=30).raise_for_status()
    assert api_status(first, token.access_token) == (200, None)


# -- the authorize pages behind a load balancer --------------------------------------------


class RoundRobinBrowser:
    """A browser whose every request goes to the next server (one cookie jar: cookies do
    not depend on the port). Follows 303s as a browser would, also round robin."""

    def __init__(self, pair: list[ServerProcess]) -> None:
        self._next = itertools.cycle(pair)
        self.client = httpx.Client(timeout=30)
        self.hits: list[int] = []

    def _url(self, path: str) -> str:
        server = next(self._next)
        self.hits.append(server.port)
        return server.base_url + path

    def _follow(self, response: httpx.Response) -> httpx.Response:
        while response.status_code == 303:
            location = urlsplit(response.headers["location"])
            path = location.path + (f"?{location.query}" if location.query else "")
            response = self.client.get(self._url(path))
        return response

    def get(self, path: str) -> httpx.Response:
        return self._follow(self.client.get(self._url(path)))

    def submit(self, page: httpx.Response, action_suffix: str, **fields: str) -> httpx.Response:
        form = form_with(parse_page(page.text), action_suffix)
        return self._follow(self.client.post(self._url(form.action),
                                             data={**form.fields, **fields}))

    def close(self) -> None:
        self.client.close()


def test_a_browser_sent_to_either_process_between_pages_completes_the_install(
    postgres_cluster, tmp_path: Path,  # noqa: ANN001
) -> None:
    url = postgres_cluster.create_database()
    with servers(url, tmp_path, 2) as pair:
        browser = RoundRobinBrowser(pair)
        try:
            query = urlencode({"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
                               "scope": "crm.objects.contacts.read", "state": "lb"})
            login = browser.get(f"/oauth/authorize?{query}")
            assert parse_page(login.text).h1 == "Log in to HubSpot", login.text
            picker = browser.submit(login, "/login", email=ADMIN, password="password")
            assert parse_page(picker.text).h1 == "Choose an account", picker.text
            consent = browser.submit(picker, "/account", hub_id=str(ACME))
            assert consent.status_code == 200, consent.text
            granted = browser.submit(consent, "/decision", decision="grant")
            assert granted.status_code == 302, granted.text
            found = parse_qs(urlsplit(granted.headers["location"]).query)
            assert found["state"] == ["lb"]
            assert len(set(browser.hits)) == 2  # the flow did cross both processes
        finally:
            browser.close()
        response = redeem(pair[0], found["code"][0])
        assert response.status_code == 200, response.text
        assert response.json()["hub_id"] == ACME
