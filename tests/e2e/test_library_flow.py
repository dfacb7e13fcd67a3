"""The whole flow of issue 3 against the local HubSpot on a real socket, as an app does it.

URL (with state) -> approve (auto-approve) -> callback (state checked) -> exchange ->
store -> API call through `store.auth(key)` -> HubSpot's clock +1800 s -> the call still
succeeds with one refresh (counted by /_emulator/stats) -> uninstall -> the next call raises
the re-authorization error, calls the hook, and the connection shows needs_reauthorization.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from hubspot_oauth import (
    Endpoints,
    OAuthClient,
    ReauthorizationRequiredError,
    StateStore,
    TokenStore,
)
from hubspot_oauth.client.crypto import KeyRing

# The default seed's app (DESIGN §4): the example values of HubSpot's guide.
CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
CLIENT_SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
REDIRECT_URI = "http://localhost:3000/oauth-callback"
PORTAL = 1234567


@pytest.fixture
def local_hubspot(tmp_path: Path) -> Iterator[str]:
    from hubspot_oauth.server import ServerSettings, create_app
    from hubspot_oauth.server.runner import ServerThread

    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'hubspot.db'}",
        auto_approve="admin@example.com",
        control_api=True,
    )
    app = create_app(settings)
    try:
        with ServerThread(app, host="127.0.0.1", port=0) as server:
            yield server.base_url
    finally:
        app.state.hubspot.close()


class ServerClock:
    """The store's clock, kept in step with the local HubSpot's (moved by the control API)."""

    def __init__(self, control: httpx.Client) -> None:
        self.control = control
        self.offset = timedelta(0)

    def sync(self) -> None:
        now = datetime.fromisoformat(self.control.get("/_emulator/clock").json()["now"])
        self.offset = now - datetime.now(UTC)

    def advance(self, seconds: float) -> None:
        response = self.control.post("/_emulator/clock", json={"advance": seconds})
        assert response.status_code == 200
        self.sync()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def test_the_whole_flow(local_hubspot: str, tmp_path: Path) -> None:
    base_url = local_hubspot
    database_url = f"sqlite:///{tmp_path / 'app.db'}"
    control = httpx.Client(base_url=base_url, timeout=10)
    clock = ServerClock(control)
    clock.sync()
    hook_calls: list[tuple[str, Exception]] = []
    client = OAuthClient(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        scopes=["crm.objects.contacts.read"],
        optional_scopes=["crm.objects.contacts.write"],
        endpoints=Endpoints.local(base_url),
    )
    store = TokenStore(
        database_url,
        client=client,
        encryption_keys=[KeyRing.generate_key()],
        on_reauthorization_required=lambda key, error: hook_calls.append((key, error)),
        clock=clock,
    )
    states = StateStore(database_url)
    try:
        # 1. The install link carries a state bound to this user's session.
        nonce = states.issue({"user": "u-1", "return_to": "/contacts"})
        url = client.authorization_url(state=nonce)
        assert url.startswith(f"{base_url}/oauth/authorize?")

        # 2. The browser visits it; auto-approve redirects straight back with a code.
        with httpx.Client(timeout=10, follow_redirects=False) as browser:
            answer = browser.get(url)
        assert answer.status_code in (302, 303), answer.text[:200]
        location = urlsplit(answer.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
        query = parse_qs(location.query)

        # 3. The callback checks the state, then exchanges the code.
        assert states.consume(query["state"][0]) == {"user": "u-1", "return_to": "/contacts"}
        token = client.exchange_code(query["code"][0])
        assert token.hub_id == PORTAL

        # 4. Stored (keyed by hub_id), then used through httpx auth.
        key = store.save(token)
        assert key == str(PORTAL)
        with httpx.Client(base_url=base_url, auth=store.auth(key), timeout=10) as api:
            first = api.get("/crm/v3/objects/contacts", params={"limit": 2})
            assert first.status_code == 200 and first.json()["results"]

            # 5. Thirty minutes later the access token has expired: one refresh, no 401.
            clock.advance(1800)
            later = api.get("/crm/v3/objects/contacts", params={"limit": 2})
            assert later.status_code == 200
            stats = control.get("/_emulator/stats").json()
            assert stats["token"]["refresh_token"] == {"ok": 1, "error": 0}
            assert store.get(key).access_token != token.access_token

            # 6. The user uninstalls the app; the next refresh is refused for good.
            gone = control.post(f"/_emulator/installs/1/{PORTAL}/uninstall", json={})
            assert gone.status_code == 200 and gone.json()["uninstalled"] is True
            clock.advance(1800)
            with pytest.raises(ReauthorizationRequiredError) as info:
                api.get("/crm/v3/objects/contacts", params={"limit": 2})
        assert info.value.connection_key == key
        assert [k for k, _ in hook_calls] == [key]
        connection = store.connection(key)
        assert connection.status == "needs_reauthorization"
        assert [c.status for c in store.connections()] == ["needs_reauthorization"]
    finally:
        states.close()
        store.close()
        client.close()
        control.close()


def test_the_store_follows_a_401_expired_when_its_clock_is_behind(
    local_hubspot: str, tmp_path: Path
) -> None:
    """HubSpot's clock moved but the store's did not: HubSpotAuth's 401 path refreshes."""
    base_url = local_hubspot
    control = httpx.Client(base_url=base_url, timeout=10)
    client = OAuthClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                         redirect_uri=REDIRECT_URI, endpoints=Endpoints.local(base_url))
    store = TokenStore(f"sqlite:///{tmp_path / 'app.db'}", client=client,
                       encryption_keys=[KeyRing.generate_key()])
    try:
        url = client.authorization_url(state="s")
        with httpx.Client(timeout=10) as browser:
            location = browser.get(url).headers["location"]
        key = store.save(client.exchange_code(parse_qs(urlsplit(location).query)["code"][0]))
        control.post("/_emulator/clock", json={"advance": 1900})
        auth = store.auth(key)
        with httpx.Client(base_url=base_url, auth=auth, timeout=10) as api:
            statuses = [api.get("/crm/v3/objects/contacts").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        stats: dict[str, Any] = control.get("/_emulator/stats").json()
        assert stats["token"]["refresh_token"] == {"ok": 1, "error": 0}
        assert auth.refreshes == 1
    finally:
        store.close()
        client.close()
        control.close()
