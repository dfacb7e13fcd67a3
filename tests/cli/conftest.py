"""A local HubSpot on a loopback port, approving every install as admin@example.com, with
an app registered for a redirect URI on a free port (so `login` never needs port 3000)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.components import free_port


@dataclasses.dataclass
class LocalHubSpot:
    base_url: str
    hubspot: Any  # hubspot_oauth.server.hubspot.LocalHubSpot
    client_id: str
    client_secret: str
    redirect_uri: str
    tokens_url: str

    def env(self) -> dict[str, str]:
        """The environment a user would set to point the CLI at this local HubSpot."""
        return {
            "HUBSPOT_CLIENT_ID": self.client_id,
            "HUBSPOT_CLIENT_SECRET": self.client_secret,
            "HUBSPOT_REDIRECT_URI": self.redirect_uri,
            "HUBSPOT_BASE_URL": self.base_url,
            "HUBSPOT_OAUTH_DATABASE_URL": self.tokens_url,
        }


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def local_hubspot(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LocalHubSpot]:
    from cryptography.fernet import Fernet

    from hubspot_oauth.server import ServerSettings, create_app

    # A configured key, as in production: no key file is generated (and no warning).
    monkeypatch.setenv("HUBSPOT_OAUTH_ENCRYPTION_KEYS", Fernet.generate_key().decode())
    from hubspot_oauth.server.runner import ServerThread

    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'hubspot.db'}",
        auto_approve="admin@example.com",
    )
    app = create_app(settings)
    hubspot = app.state.hubspot
    redirect_uri = f"http://localhost:{free_port()}/oauth-callback"
    _app_id, client_id, client_secret = hubspot.create_app_registration(
        name="CLI test app", redirect_urls=[redirect_uri],
        scopes=["crm.objects.contacts.read"], optional_scopes=["crm.objects.contacts.write"],
    )
    with ServerThread(app, host="127.0.0.1", port=0) as server:
        yield LocalHubSpot(
            base_url=server.base_url, hubspot=hubspot, client_id=client_id,
            client_secret=client_secret, redirect_uri=redirect_uri,
            tokens_url=f"sqlite:///{tmp_path / 'tokens.db'}",
        )
    hubspot.close()
