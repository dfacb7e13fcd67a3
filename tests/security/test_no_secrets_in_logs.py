"""Nothing secret in the logs: a full flow (quickstart + local HubSpot + library) with every
log record captured at DEBUG (root, uvicorn's own non-propagating loggers, httpx, httpcore,
SQLAlchemy's SQL echo, our loggers) and everything written to stdout/stderr, then a search
for every access token, refresh token, authorization code, client secret and password the
flow used. The browser is a tiny http.client driver, so the test's own requests log
nothing (httpx would log the callback URL with its code: that is the test, not us)."""

from __future__ import annotations

import html
import http.client
import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from hubspot_oauth import ClientConfig, Endpoints, OAuthClient, TokenStore
from hubspot_oauth.quickstart import QuickstartOptions
from hubspot_oauth.quickstart import create_app as create_quickstart
from hubspot_oauth.server import ServerSettings
from hubspot_oauth.server import create_app as create_hubspot
from hubspot_oauth.server.hubspot import hash_password
from hubspot_oauth.server.models import users
from hubspot_oauth.server.runner import ServerThread
from tests.support.components import free_port

LOGGERS = ["", "httpx", "httpcore", "sqlalchemy.engine", "hubspot_oauth", "alembic",
           "starlette"]
# uvicorn configures its own loggers (handlers replaced, no propagation) when a server
# starts: caplog's handler is added to them after the servers are up, and what they wrote
# before goes to stderr, which capfd captures. A handler on "uvicorn.access" also turns
# uvicorn's access log on (it logs only when the logger has handlers): the harshest case,
# as its lines carry request paths and queries.
UVICORN_LOGGERS = ["uvicorn", "uvicorn.access"]


@dataclass
class Browser:
    """GET/POST with cookies, no redirect following, no logging."""

    cookies: dict[str, dict[str, str]] = field(default_factory=dict)

    def request(self, method: str, url: str, form: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        jar = self.cookies.setdefault(parts.hostname or "", {})
        headers = {"Host": parts.netloc}
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Origin"] = f"{parts.scheme}://{parts.netloc}"
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                cookie = value.split(";", 1)[0]
                key, _, val = cookie.partition("=")
                jar[key.strip()] = val.strip()
        result = {k.lower(): v for k, v in response.getheaders()}
        conn.close()
        return response.status, result, text

    def follow(self, url: str, status: int, headers: dict[str, str], text: str
               ) -> tuple[str, int, dict[str, str], str]:
        while status in (302, 303) and not headers["location"].startswith(
                "http://localhost:"):  # stop at the app's callback: the test takes it
            url = urljoin(url, headers["location"])
            status, headers, text = self.request("GET", url)
        return url, status, headers, text


def _form(page: str, action: str) -> dict[str, str]:
    match = re.search(rf'<form[^>]*action="[^"]*{re.escape(action)}"(.*?)</form>', page, re.S)
    assert match, f"no form posting to {action}"
    return {html.unescape(n): html.unescape(v) for n, v in re.findall(
        r'<input type="hidden" name="([^"]+)" value="([^"]*)"', match.group(1))}


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger that matters at DEBUG, into caplog (root's handler)."""
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for logger, level in saved:
        logger.setLevel(level)
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).removeHandler(caplog.handler)


def _attach_uvicorn(caplog: pytest.LogCaptureFixture) -> None:
    for name in UVICORN_LOGGERS:
        logging.getLogger(name).addHandler(caplog.handler)


def test_a_full_flow_logs_no_token_code_secret_or_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capture: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HUBSPOT_OAUTH_DATA_DIR", str(tmp_path / "data"))
    password = "pw-" + secrets.token_urlsafe(12)
    qs_port = free_port()
    redirect_uri = f"http://localhost:{qs_port}/oauth-callback"
    hubspot_app = create_hubspot(ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'hubspot.db'}", refresh_token_rotation="rotate"))
    hub = hubspot_app.state.hubspot
    _, client_id, client_secret = hub.create_app_registration(
        name="Log test app", redirect_urls=[redirect_uri], scopes=["crm.objects.contacts.read"],
        optional_scopes=["crm.objects.contacts.write"])
    with hub.engine.begin() as conn:  # a password no log line could contain by chance
        conn.execute(sa.update(users).where(users.c.email == "admin@example.com")
                     .values(password_hash=hash_password(password)))
    key = Fernet.generate_key().decode()
    seen: set[str] = {client_secret, password}
    browser = Browser()

    with ServerThread(hubspot_app, port=0, log_level="debug") as hubspot_server:
        config = ClientConfig(
            client_id=client_id, client_secret=client_secret, redirect_uri=redirect_uri,
            optional_scopes=("crm.objects.contacts.write",), base_url=hubspot_server.base_url,
            database_url=f"sqlite:///{tmp_path / 'tokens.db'}", encryption_keys=(key,))
        qs_app = create_quickstart(config, options=QuickstartOptions(access_log=True))
        with ServerThread(qs_app, host="127.0.0.1", port=qs_port, log_level="debug"):
            _attach_uvicorn(capture)
            qs = f"http://localhost:{qs_port}"
            status, headers, _ = browser.request("GET", qs + "/install")
            assert status == 302
            url, status, headers, page = browser.follow(qs, status, headers, "")
            url = headers.get("location") and urljoin(url, headers["location"]) or url
            # login → account picker → consent → grant
            status, headers, page = browser.request("GET", url)
            login = _form(page, "/login")
            status, headers, page = browser.request(
                "POST", urljoin(url, "/oauth/authorize/login"),
                {**login, "email": "admin@example.com", "password": password})
            url, status, headers, page = browser.follow(url, status, headers, page)
            account = _form(page, "/account")
            status, headers, page = browser.request(
                "POST", urljoin(url, "/oauth/authorize/account"), {**account, "hub_id": "1234567"})
            url, status, headers, page = browser.follow(url, status, headers, page)
            decision = _form(page, "/decision")
            status, headers, _ = browser.request(
                "POST", urljoin(url, "/oauth/authorize/decision"),
                {**decision, "decision": "grant"})
            assert status == 302
            callback = headers["location"]
            assert callback.startswith(redirect_uri)
            seen.update(parse_qs(urlsplit(callback).query)["code"])
            # the quickstart's callback: exchange, store, contacts page
            status, headers, page = browser.request("GET", callback)
            assert status in (302, 303), page[:500]
            status, headers, page = browser.request("GET", urljoin(qs, headers["location"]))
            assert status == 200 and "Contacts" in page
            seen.update(re.findall(r"<code>(C[^<]+)</code>", page))
            # expiry → refresh through store.auth; then "Refresh now"; then disconnect
            hub.clock.advance(1800)
            status, _, page = browser.request("GET", qs + "/")
            assert status == 200
            seen.update(re.findall(r"<code>(C[^<]+)</code>", page))
            status, headers, _ = browser.request("POST", qs + "/refresh", _form(page, "/refresh"))
            assert status in (302, 303)
            status, _, page = browser.request("GET", qs + "/")
            seen.update(re.findall(r"<code>(C[^<]+)</code>", page))
            with TokenStore(config.database_url, encryption_keys=[key]) as store:
                stored = [store.get(c.key) for c in store.connections()]
            assert stored
            for token in stored:
                seen.update({token.access_token, token.refresh_token or ""})
            # the library on its own: v1 metadata (token in the URL path), v3 introspection
            with OAuthClient(client_id=client_id, client_secret=client_secret,
                             redirect_uri=redirect_uri,
                             endpoints=Endpoints.local(hubspot_server.base_url, "v1")) as v1:
                for access in [t for t in seen if t.startswith("C")]:
                    v1.introspect(access)
                v1.introspect(stored[0].refresh_token or "", "refresh_token")
            status, headers, _ = browser.request("POST", qs + "/disconnect",
                                                 _form(page, "/disconnect"))
            assert status in (302, 303)
    hub.close()

    seen.discard("")
    assert len([s for s in seen if s.startswith("C")]) >= 3  # tokens of three generations
    assert any(s.startswith("na1-") for s in seen)  # codes and refresh tokens
    out, err = capfd.readouterr()
    records = capture.records
    texts = [out, err, capture.text]
    for record in records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    # The capture really captured: SQL, HTTP client and server records, the access log.
    names = {r.name for r in records}
    assert {"sqlalchemy.engine.Engine", "httpx"} <= names, names
    assert "Started server process" in err and any(n.startswith("uvicorn") for n in names)
    assert "GET /oauth-callback" in out + err + capture.text  # the quickstart's access log
    assert "uvicorn.access" in names  # uvicorn's access log was on, and masked
    blob = "\n".join(texts)
    leaks = sorted({secret[:12] + "…" for secret in seen if secret in blob})
    assert not leaks, f"secrets in logs/output: {leaks}"
