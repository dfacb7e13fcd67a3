"""Size limits on bodies, headers and parameters, each with a clear 4xx (RFC 6749 §10.14,
DESIGN §6 "bounded request sizes"): HubSpot's JSON error shape on the API and token
endpoints, an HTML page on the authorize pages; nothing changes. In-process for the
application's limits, over a real socket for what the HTTP server itself must bound."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import httpx
import pytest

from hubspot_oauth.server.app import MAX_HEADER_BYTES, MAX_HEADERS
from hubspot_oauth.server.settings import ServerSettings
from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from tests.security.harness import assert_hubspot_error, changed_tables, is_html, snapshot
from tests.support.pages import authorize_path

BODY_LIMIT = ServerSettings().max_body_bytes  # 64 KiB


@pytest.fixture(scope="module")
def hubspot() -> Iterator[LocalHubSpotHandle]:
    with local_hubspot(serve=True) as handle:
        yield handle


@pytest.fixture(scope="module")
def bearer(hubspot: LocalHubSpotHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {hubspot.connect().access_token}"}


@pytest.fixture
def client(hubspot: LocalHubSpotHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hubspot.base_url, timeout=30) as http:
        yield http


FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@pytest.mark.parametrize(("path", "content_type", "limit"), [
    ("/oauth/v1/token", FORM, BODY_LIMIT),
    ("/oauth/v3/token", FORM, BODY_LIMIT),
    ("/oauth/2026-03/token", FORM, BODY_LIMIT),
    ("/oauth/v3/token/introspect", FORM, BODY_LIMIT),
    ("/oauth/2026-03/token/revoke", FORM, BODY_LIMIT),
    ("/crm/v3/objects/contacts", JSON, BODY_LIMIT),
    ("/_emulator/clock", JSON, 16 * 1024),
    ("/_emulator/faults", JSON, 16 * 1024),
])
def test_bodies_over_the_limit_get_413_and_change_nothing(
    hubspot: LocalHubSpotHandle, client: httpx.Client, bearer: dict[str, str],
    path: str, content_type: str, limit: int,
) -> None:
    before = snapshot(hubspot.database_url)
    body = b"a=" + b"b" * limit
    response = client.post(path, content=body, headers={"content-type": content_type, **bearer})
    error = assert_hubspot_error(response, 413)
    assert str(limit) in error["message"]
    assert not changed_tables(before, snapshot(hubspot.database_url))


def test_a_declared_length_over_the_limit_is_refused_before_the_body(
    hubspot: LocalHubSpotHandle,
) -> None:
    # Claims 1 GB and sends nothing more: the answer comes at once, from the headers.
    status, head, body = _raw(hubspot, (
        b"POST /oauth/v3/token HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\n"
    ))
    assert status == 413, head
    assert b'"correlationId"' in body


def test_a_chunked_body_without_length_is_cut_at_the_limit(hubspot: LocalHubSpotHandle) -> None:
    chunk = b"a" * 65536
    request = (b"POST /oauth/v3/token HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/x-www-form-urlencoded\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + (b"10000\r\n" + chunk + b"\r\n") * 4 + b"0\r\n\r\n")
    status, _, body = _raw(hubspot, request)
    assert status == 413 and b"larger than" in body


def test_the_login_form_refuses_a_huge_post_with_a_page(
    hubspot: LocalHubSpotHandle, client: httpx.Client
) -> None:
    response = client.post("/oauth/authorize/login", content=b"email=" + b"a" * 70_000,
                           headers={"content-type": FORM})
    assert 400 <= response.status_code < 500 and is_html(response)


@pytest.mark.parametrize("params", [
    {"grant_type": "refresh_token", "client_id": "x" * 5000},  # one value > 4096 characters
    {f"p{i}": "1" for i in range(150)},  # more than 100 parameters
])
def test_token_parameters_are_bounded(client: httpx.Client, params: dict[str, str]) -> None:
    error = assert_hubspot_error(client.post("/oauth/v3/token", data=params), 400)
    assert error["error"] == "invalid_request"
    assert "longer than 4096" in error["message"] or "at most 100" in error["message"]


def test_tokens_in_paths_and_headers_are_bounded(
    client: httpx.Client, bearer: dict[str, str]
) -> None:
    assert_hubspot_error(client.get("/oauth/v1/access-tokens/" + "C" * 5000), 404)
    assert_hubspot_error(client.delete("/oauth/v1/refresh-tokens/" + "n" * 5000), 404)
    response = client.get("/crm/v3/objects/contacts",
                          headers={"Authorization": "Bearer " + "C" * 5000})
    assert assert_hubspot_error(response, 401)["category"] == "INVALID_AUTHENTICATION"
    many = ",".join(f"p{i}" for i in range(5000))
    response = client.get(f"/crm/v3/objects/contacts?properties={many}", headers=bearer)
    assert "at most 100 properties" in assert_hubspot_error(response, 400)["message"]
    response = client.post("/crm/v3/objects/contacts", headers=bearer,
                           json={"properties": {f"p{i}": "v" * 100 for i in range(500)}})
    assert_hubspot_error(response, 400)


@pytest.mark.parametrize("query", [
    authorize_path(state="s" * 50_000).split("?", 1)[1],
    authorize_path(scope="crm.objects.contacts.read " * 1000).split("?", 1)[1],
    "&".join(f"p{i}=1" for i in range(5000)),
])
def test_authorize_parameters_are_bounded_with_a_page(client: httpx.Client, query: str) -> None:
    response = client.get(f"/oauth/authorize?{query}")
    assert response.status_code == 400 and is_html(response)
    assert "location" not in response.headers


def test_headers_over_the_limit_get_431(hubspot: LocalHubSpotHandle) -> None:
    # httptools (uvicorn's parser) would take any size: the app refuses them itself.
    big = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n"
    status, _, body = _raw(hubspot, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + big + b"\r\n")
    assert status == 431 and b'"correlationId"' in body
    many = b"".join(b"X-H%d: y\r\n" % i for i in range(MAX_HEADERS + 1))
    status, _, body = _raw(hubspot, b"GET / HTTP/1.1\r\nHost: localhost\r\n" + many + b"\r\n")
    assert status == 431 and b"at most" in body
    # and just under the limits, a normal answer
    status, _, _ = _raw(hubspot, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Ok: "
                        + b"a" * 8000 + b"\r\n\r\n")
    assert status == 200


def test_a_huge_request_line_gets_a_4xx_from_the_http_server(
    hubspot: LocalHubSpotHandle,
) -> None:
    # Beyond what the HTTP parser takes (~64 KB), uvicorn answers 400 itself (plain text:
    # the request never reaches the app, so it cannot be HubSpot's shape).
    status, _, _ = _raw(hubspot, b"GET /?" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert 400 <= status < 500


def _raw(hubspot: LocalHubSpotHandle, request: bytes) -> tuple[int, bytes, bytes]:
    """Send raw bytes over a socket; (status, head, body) of the answer."""
    host, port = hubspot.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        # The server may answer and close before taking it all.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    status = int(head.split(b" ", 2)[1])
    return status, head, body
