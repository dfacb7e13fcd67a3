"""The local HubSpot over a real socket (uvicorn): ServerThread, serve() and its banner,
Ctrl-C, a taken port, concurrency over HTTP, and HubSpot's official SDKs unchanged."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubspot_oauth.server import PortInUseError, ServerSettings, ServerThread, create_app
from hubspot_oauth.server.runner import bind_socket
from tests.support.components import unavailable

from .conftest import ACME, ADMIN, CLIENT, REDIRECT

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_CACHE = NODE_DIR / ".cache"


@pytest.fixture
def served(sqlite_url: str) -> Iterator[tuple[Any, ServerThread]]:
    app = create_app(ServerSettings(database_url=sqlite_url))
    with ServerThread(app, host="127.0.0.1", port=0) as server:
        yield app.state.hubspot, server
    app.state.hubspot.close()


def _code(hubspot: Any, **extra: Any) -> str:
    return hubspot.issue_code(client_id=CLIENT["client_id"], redirect_uri=REDIRECT,
                              user_email=ADMIN, hub_id=ACME,
                              scopes=["crm.objects.contacts.read"], **extra)


def test_token_flow_over_a_socket(served) -> None:
    hubspot, server = served
    assert server.base_url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=server.base_url) as client:
        response = client.post("/oauth/v3/token", data={
            "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
            "code": _code(hubspot)})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        tokens = response.json()
        api = client.get("/crm/v3/objects/contacts",
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert api.status_code == 200
        assert api.headers["x-hubspot-ratelimit-max"] == "100"
        assert api.headers["x-hubspot-correlation-id"]
        wrong = client.put("/oauth/v3/token")
        assert wrong.status_code == 405 and wrong.json()["correlationId"]


def test_twenty_concurrent_http_redemptions(served) -> None:
    hubspot, server = served
    code = _code(hubspot)
    barrier = threading.Barrier(20)
    statuses: list[int] = []
    lock = threading.Lock()

    def redeem() -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            barrier.wait(timeout=30)
            response = client.post("/oauth/v1/token", data={
                "grant_type": "authorization_code", **CLIENT, "redirect_uri": REDIRECT,
                "code": code})
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=redeem) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(statuses) == [200] + [400] * 19


def test_taken_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as info:
            bind_socket("127.0.0.1", port)
        assert str(info.value) == (f"port {port} on 127.0.0.1 is already in use by another "
                                   "program; stop it or choose another port with --port")
        with pytest.raises(PortInUseError):
            ServerThread(object(), port=port).start()


def _serve_process(database_url: str, port: int) -> subprocess.Popen:
    code = (
        "import sys\n"
        "from hubspot_oauth.server import ServerSettings, serve, PortInUseError\n"
        "try:\n"
        f"    serve(ServerSettings(database_url={database_url!r}), host='127.0.0.1', "
        f"port={port})\n"
        "except PortInUseError as exc:\n"
        "    print(exc, file=sys.stderr); sys.exit(1)\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_serve_prints_the_banner_and_stops_on_ctrl_c(sqlite_url: str, unused_port: int) -> None:
    process = _serve_process(sqlite_url, unused_port)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with httpx.Client() as client:
                    if client.get(f"http://127.0.0.1:{unused_port}/").status_code == 200:
                        break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = _serve_process(sqlite_url, unused_port)
        out2, err2 = second.communicate(timeout=60)
        assert second.returncode == 1
        assert err2.strip() == (f"port {unused_port} on 127.0.0.1 is already in use by another "
                                "program; stop it or choose another port with --port")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert f"Local HubSpot running at http://127.0.0.1:{unused_port}" in out
    assert "client_id      7fff1e36-2d40-4ae1-bbb1-5266d59564fb" in out
    assert "client_secret  7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d" in out
    assert 'user admin@example.com (password "password"' in out
    assert "user viewer@example.com" in out
    assert "Traceback" not in err


def test_python_sdk_unchanged(served) -> None:
    from hubspot import HubSpot
    from hubspot.oauth import ApiException

    hubspot, server = served
    client = HubSpot(host=server.base_url)
    tokens = client.oauth.tokens_api.create(
        grant_type="authorization_code", code=_code(hubspot), redirect_uri=REDIRECT, **CLIENT)
    assert tokens.token_type == "bearer" and tokens.expires_in == 1800
    refreshed = client.oauth.tokens_api.create(
        grant_type="refresh_token", refresh_token=tokens.refresh_token, **CLIENT)
    assert refreshed.refresh_token == tokens.refresh_token
    info = client.oauth.access_tokens_api.get(refreshed.access_token)
    assert (info.hub_id, info.user, info.app_id) == (ACME, ADMIN, 1)
    assert info.scopes == ["oauth", "crm.objects.contacts.read"]
    refresh_info = client.oauth.refresh_tokens_api.get(tokens.refresh_token)
    assert refresh_info.client_id == CLIENT["client_id"]
    assert client.oauth.refresh_tokens_api.archive(tokens.refresh_token) is None
    with pytest.raises(ApiException) as info_error:
        client.oauth.tokens_api.create(grant_type="refresh_token",
                                       refresh_token=tokens.refresh_token, **CLIENT)
    assert info_error.value.status == 400
    assert json.loads(info_error.value.body)["status"] == "BAD_REFRESH_TOKEN"
    # The access token minted before the delete keeps working.
    api = HubSpot(host=server.base_url, access_token=refreshed.access_token)
    page = api.crm.contacts.basic_api.get_page(limit=2)
    assert len(page.results) == 2 and page.paging.next.after


def _node_sdk() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        unavailable("node/npm", "not on PATH")
    package = NODE_CACHE / "node_modules" / "@hubspot" / "api-client"
    if not (package / "package.json").exists():
        NODE_CACHE.mkdir(parents=True, exist_ok=True)
        try:
            result = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefix",
                 str(NODE_CACHE), "@hubspot/api-client@13"],
                capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            unavailable("@hubspot/api-client", "npm install timed out")
        if result.returncode != 0 or not (package / "package.json").exists():
            unavailable("@hubspot/api-client", f"npm install failed: {result.stderr[-300:]}")
    return package


def test_node_sdk_unchanged(served) -> None:
    package = _node_sdk()
    hubspot, server = served
    env = {**os.environ, "HUBSPOT_SDK": str(package), "BASE_URL": server.base_url,
           "CODE": _code(hubspot), "CLIENT_ID": CLIENT["client_id"],
           "CLIENT_SECRET": CLIENT["client_secret"], "REDIRECT_URI": REDIRECT}
    result = subprocess.run(["node", str(NODE_DIR / "oauth_calls.js")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["exchange"]["tokenType"] == "bearer"
    assert out["exchange"]["expiresIn"] == 1800
    assert out["refresh"]["refreshToken"] == out["exchange"]["refreshToken"]
    assert out["accessInfo"]["hubId"] == ACME
    assert out["accessInfo"]["user"] == ADMIN
    assert out["refreshInfo"]["clientId"] == CLIENT["client_id"]
    assert out["afterArchive"]["code"] == 400
    body = out["afterArchive"]["body"]
    body = json.loads(body) if isinstance(body, str) else body
    assert body["status"] == "BAD_REFRESH_TOKEN"
