"""Rows of docs/security.md that no other test already proves: constant-time secret
checks, token entropy, no-store on every token answer, only the code and refresh grants,
TLS verification in the library, the consent page against phishing, no open redirect, no
token in a URL, no 307 after a form post, Secure cookies behind https, no server metadata.
Each test names its RFC 6749 §10 / RFC 9700 item."""

from __future__ import annotations

import datetime as dt
import hmac
import http.server
import math
import re
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hubspot_oauth import Endpoints, OAuthClient
from hubspot_oauth.errors import NetworkError
from hubspot_oauth.server.settings import ServerSettings
from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from hubspot_oauth.tokens import new_access_token, new_authorization_code, new_refresh_token
from tests.security.harness import assert_hubspot_error, changed_tables, is_html, snapshot
from tests.support.pages import Browser, authorize_path, parse_page, text_of


@pytest.fixture
def hubspot() -> Iterator[LocalHubSpotHandle]:
    with local_hubspot() as handle:
        yield handle


@pytest.fixture
async def client(hubspot: LocalHubSpotHandle) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hubspot.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8765") as c:
        yield c


def _grant(hubspot: LocalHubSpotHandle, **fields: str) -> dict[str, str]:
    return {"client_id": hubspot.client_id, "client_secret": hubspot.client_secret, **fields}


# --- RFC 6749 §10.1: client authentication ----------------------------------------------


@pytest.mark.anyio
async def test_client_secret_is_checked_in_constant_time_against_a_digest(
    hubspot: LocalHubSpotHandle, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def spy(a: object, b: object) -> bool:
        compared.append((a, b))
        return real(a, b)  # type: ignore[arg-type]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    response = await client.post("/oauth/v3/token", data=_grant(
        hubspot, client_secret="wrong-secret", grant_type="refresh_token",
        refresh_token="na1-0000-0000-0000-0000-000000000000"))
    assert assert_hubspot_error(response, 400)["error"] == "invalid_client"
    # The stored value is a 64-hex-digit digest, compared with hmac.compare_digest.
    digests = [pair for pair in compared
               if all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) for v in pair)]
    assert digests, compared
    assert all("wrong-secret" not in str(pair) for pair in compared)


# --- RFC 6749 §10.10: credential guessing (entropy) --------------------------------------


def _bits(alphabet: int, length: int) -> float:
    return length * math.log2(alphabet)


def test_token_entropy() -> None:
    access = {new_access_token() for _ in range(2000)}
    assert len(access) == 2000
    sample = next(iter(access))
    # "C" + 64 characters of base64url: 384 bits, above §10.10's 2^-160 SHOULD.
    assert _bits(64, len(sample) - 1) >= 160
    for make in (new_refresh_token, new_authorization_code):
        values = {make() for _ in range(2000)}
        assert len(values) == 2000
        hex_digits = re.sub(r"[^0-9a-f]", "", next(iter(values)).split("-", 1)[1])
        # HubSpot's format na1-xxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx: 28 random hex digits =
        # 112 bits, short of §10.10's 128 (docs/security.md says why we keep it).
        assert len(hex_digits) == 28 and _bits(16, len(hex_digits)) == 112


# --- RFC 6749 §5.1, §10.3: no caching of token answers -------------------------------------


@pytest.mark.anyio
async def test_every_token_answer_says_no_store(
    hubspot: LocalHubSpotHandle, client: httpx.AsyncClient
) -> None:
    token = hubspot.connect()
    calls = [
        ("POST", "/oauth/v3/token", _grant(hubspot, grant_type="authorization_code",
                                          code=hubspot.authorize(),
                                          redirect_uri=hubspot.redirect_uri)),
        ("POST", "/oauth/v1/token", _grant(hubspot, grant_type="refresh_token",
                                          refresh_token=token.refresh_token or "")),
        ("POST", "/oauth/2026-03/token", _grant(hubspot, grant_type="refresh_token",
                                               refresh_token="na1-bad")),
        ("POST", "/oauth/v3/token/introspect", _grant(hubspot, token=token.access_token)),
        ("POST", "/oauth/v3/token/introspect", _grant(hubspot, token="Cunknown")),
        ("GET", f"/oauth/v1/access-tokens/{token.access_token}", None),
        ("GET", f"/oauth/v1/refresh-tokens/{token.refresh_token}", None),
        ("GET", "/oauth/v1/access-tokens/Cunknown", None),
        ("POST", "/oauth/2026-03/token/revoke", _grant(hubspot, token="na1-unknown")),
    ]
    for method, path, data in calls:
        response = await client.request(method, path, data=data)
        assert response.headers.get("cache-control") == "no-store", (path, response.headers)
        assert response.headers.get("pragma") == "no-cache", path


def test_code_lifetime_default_is_short() -> None:
    # RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is RECOMMENDED".
    assert ServerSettings().code_ttl <= 600


# --- RFC 6749 §10.7, RFC 9700 §2.4, §4.15, §2.1.2: only the code and refresh grants --------


@pytest.mark.anyio
@pytest.mark.parametrize("grant_type", [
    "password", "client_credentials", "implicit", "token",
    "urn:ietf:params:oauth:grant-type:device_code",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:token-exchange",
])
async def test_no_grant_but_code_and_refresh(
    hubspot: LocalHubSpotHandle, client: httpx.AsyncClient, grant_type: str
) -> None:
    before = snapshot(hubspot.database_url)
    response = await client.post("/oauth/v3/token", data=_grant(
        hubspot, grant_type=grant_type, username="admin@example.com", password="password",
        scope="crm.objects.contacts.read"))
    assert assert_hubspot_error(response, 400)["error"] == "unsupported_grant_type"
    assert not changed_tables(before, snapshot(hubspot.database_url))


@pytest.mark.anyio
@pytest.mark.parametrize("extra", [
    {"response_type": "token"}, {"response_type": "id_token token"},
    {"response_type": "code", "response_mode": "fragment"},
    {"response_mode": "web_message"}, {"response_mode": "form_post"},
])
async def test_authorization_answers_only_a_code_in_the_query(extra: dict[str, str]) -> None:
    # RFC 9700 §2.1.2/§4.3/§4.6 (no implicit grant, no token in a URL), §4.4 (one server:
    # no `iss`), §4.17 (no in-browser message flows).
    with local_hubspot(auto_approve="admin@example.com") as hubspot:
        transport = httpx.ASGITransport(app=hubspot.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            response = await c.get("/oauth/authorize", params={
                "client_id": hubspot.client_id, "redirect_uri": hubspot.redirect_uri,
                "scope": "crm.objects.contacts.read", "state": "s-1", **extra})
    assert response.status_code == 302
    location = response.headers["location"]
    assert "#" not in location and location.startswith(hubspot.redirect_uri + "?")
    query = parse_qs(urlsplit(location).query)
    assert set(query) == {"code", "state"} and query["state"] == ["s-1"]


# --- RFC 6749 §10.8-10.9, RFC 9700 §2.6: TLS ----------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.hubapi.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_library_refuses_a_server_whose_certificate_it_cannot_verify(tmp_path: Path) -> None:
    # An impostor "HubSpot" with a self-signed certificate never sees the client secret.
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    cert, key = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        url = f"https://localhost:{server.server_address[1]}"
        client = OAuthClient(client_id="id", client_secret="s3cret-value",
                             endpoints=Endpoints(app_url=url, api_url=url), timeout=5)
        with client, pytest.raises(NetworkError) as caught:
            client.exchange_code("na1-1111-2222-3333-4444-555555555555")
        assert "s3cret-value" not in str(caught.value)
        assert received == []
    finally:
        server.shutdown()
        server.server_close()
    assert Endpoints().token_url.startswith("https://")
    assert Endpoints().authorize_url().startswith("https://")
    assert Endpoints.eu().authorize_url().startswith("https://")


@pytest.mark.anyio
async def test_session_cookie_is_secure_behind_https(hubspot: LocalHubSpotHandle) -> None:
    transport = httpx.ASGITransport(app=hubspot.app)
    async with httpx.AsyncClient(transport=transport, base_url="https://app.example") as c:
        response = await c.get(authorize_path())
    assert response.status_code == 200
    assert "secure" in response.headers["set-cookie"].lower()


# --- RFC 6749 §10.11: phishing; §10.15 / RFC 9700 §4.11: open redirectors -----------------


@pytest.fixture
async def browser(hubspot: LocalHubSpotHandle) -> AsyncIterator[Browser]:
    transport = httpx.ASGITransport(app=hubspot.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8765") as c:
        yield Browser(c)


@pytest.mark.anyio
async def test_consent_page_shows_the_app_where_it_sends_you_and_what_it_gets(
    browser: Browser,
) -> None:
    consent = await browser.choose(await browser.login(await browser.get(authorize_path())),
                                   1234567)
    text = text_of(consent.text)
    assert "Quickstart App" in text  # the app's registered name, not something from the URL
    assert "localhost:3000" in text  # where the code will go
    assert "contacts" in text.lower()  # the scopes, in words
    assert any(f.action.endswith("/decision") for f in parse_page(consent.text).forms)


EVIL = "https://evil.example/steal"


@pytest.mark.anyio
@pytest.mark.parametrize("params", [
    {"client_id": "no-such-client", "redirect_uri": EVIL},
    {"redirect_uri": EVIL},  # a real client, an unregistered redirect URI
    {"redirect_uri": EVIL, "scope": "no.such.scope"},
    {"redirect_uri": "http://localhost:3000/oauth-callback/../../evil"},
    {"redirect_uri": "//evil.example/cb"},
])
async def test_errors_before_the_redirect_uri_is_trusted_are_pages(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(authorize_path(**params))
    assert 400 <= response.status_code < 500 and is_html(response)
    assert "location" not in response.headers
    assert "evil.example" not in response.headers.get("refresh", "")


@pytest.mark.anyio
async def test_form_posts_never_answer_307(browser: Browser) -> None:
    # RFC 9700 §4.12: after a form with credentials, never 307 (it would re-post them).
    client = browser.client
    start = await browser.get(authorize_path())
    form = parse_page(start.text).forms[0]
    login = await client.post(form.action, data={**form.fields, "email": "admin@example.com",
                                                 "password": "password"})
    assert login.status_code == 303
    picker = await client.get(login.headers["location"])
    form = parse_page(picker.text).forms[0]
    chosen = await client.post(form.action, data={**form.fields, "hub_id": "1234567"})
    assert chosen.status_code == 303
    consent = await client.get(chosen.headers["location"])
    form = next(f for f in parse_page(consent.text).forms if f.action.endswith("/decision"))
    granted = await client.post(form.action, data={**form.fields, "decision": "grant"})
    assert granted.status_code == 302


# --- RFC 9700 §4.9, RFC 6750 §2.3: no access token in a URL --------------------------------


@pytest.mark.anyio
async def test_the_api_takes_bearer_tokens_only_in_the_header(
    hubspot: LocalHubSpotHandle, client: httpx.AsyncClient
) -> None:
    token = hubspot.connect().access_token
    for name in ("access_token", "hapikey", "token"):
        response = await client.get(f"/crm/v3/objects/contacts?{name}={token}")
        assert assert_hubspot_error(response, 401)["category"] == "INVALID_AUTHENTICATION"
    ok = await client.get("/crm/v3/objects/contacts",
                          headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


# --- RFC 9700 §2.6 / RFC 8414: not offered -------------------------------------------------


@pytest.mark.anyio
async def test_no_authorization_server_metadata_but_an_openapi_document(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        assert_hubspot_error(await client.get(path), 404)
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.")
