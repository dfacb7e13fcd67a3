"""The quickstart app in-process (Starlette's TestClient) against a local HubSpot on a
loopback port that approves every install as admin@example.com."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.fernet import Fernet
from starlette.testclient import TestClient

from hubspot_oauth import ClientConfig, StateStore

REDIRECT_URI = "http://localhost:3000/oauth-callback"


@dataclasses.dataclass
class Setup:
    base_url: str
    hubspot: Any
    config: ClientConfig
    make_app: Callable[..., Any]

    def stats(self) -> dict:
        return httpx.get(self.base_url + "/_emulator/stats").json()

    def advance(self, seconds: int) -> None:
        httpx.post(self.base_url + "/_emulator/clock", json={"advance": seconds}
                   ).raise_for_status()


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    from hubspot_oauth.quickstart import create_app
    from hubspot_oauth.server import ServerSettings
    from hubspot_oauth.server import create_app as create_hubspot_app
    from hubspot_oauth.server.runner import ServerThread

    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(tmp_path / "data"))
    hubspot_app = create_hubspot_app(ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'hubspot.db'}", auto_approve="admin@example.com"))
    hubspot = hubspot_app.state.hubspot
    _app_id, client_id, client_secret = hubspot.create_app_registration(
        name="Quickstart test app", redirect_urls=[REDIRECT_URI],
        scopes=["crm.objects.contacts.read"],
        optional_scopes=["crm.objects.contacts.write", "automation"])
    with ServerThread(hubspot_app, host="127.0.0.1", port=0) as server:
        config = ClientConfig(
            client_id=client_id, client_secret=client_secret, redirect_uri=REDIRECT_URI,
            optional_scopes=("crm.objects.contacts.write", "automation"),
            base_url=server.base_url, database_url=f"sqlite:///{tmp_path / 'tokens.db'}",
            encryption_keys=(Fernet.generate_key().decode(),),
        )

        def make_app(**kwargs: Any) -> Any:
            return create_app(config, **kwargs)

        yield Setup(server.base_url, hubspot, config, make_app)
    hubspot.close()


@pytest.fixture
def qs(setup: Setup) -> Iterator[TestClient]:
    with TestClient(setup.make_app(), follow_redirects=False) as client:
        yield client


def start_install(qs: TestClient, return_to: str | None = None) -> str:
    """GET /install, then the local HubSpot's authorize URL: the callback path + query."""
    params = {"return_to": return_to} if return_to is not None else {}
    response = qs.get("/install", params=params)
    assert response.status_code == 302, response.text
    approved = httpx.get(response.headers["location"], follow_redirects=False)
    assert approved.status_code == 302, approved.text
    callback = urlsplit(approved.headers["location"])
    assert f"{callback.scheme}://{callback.netloc}{callback.path}" == REDIRECT_URI
    return f"{callback.path}?{callback.query}"


def install(qs: TestClient, return_to: str | None = None) -> Any:
    return qs.get(start_install(qs, return_to))


def memory_states(now: Callable[[], Any]) -> StateStore:
    return StateStore("memory://", now=now)
