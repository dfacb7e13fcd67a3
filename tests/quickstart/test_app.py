"""The quickstart's routes: install, callback (every way it can go wrong stores nothing),
home with contacts through `store.auth(key)`, refresh and disconnect behind CSRF."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.testclient import TestClient

from hubspot_oauth import ClientConfig, OAuthClient, ReauthorizationRequiredError, StateStore
from hubspot_oauth.quickstart import safe_return_path

from .conftest import Setup, install, start_install


def _csrf(qs: TestClient, path: str = "/") -> str:
    page = qs.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def _connections(setup: Setup) -> list:
    from hubspot_oauth import TokenStore

    return TokenStore(setup.config.database_url,
                      encryption_keys=list(setup.config.encryption_keys)).connections()


def test_welcome_page_before_any_connection(qs: TestClient) -> None:
    page = qs.get("/")
    assert page.status_code == 200
    assert 'href="/install"' in page.text and "Install the app" in page.text
    assert "crm.objects.contacts.read" in page.text


def test_install_redirects_to_hubspot_with_state_and_scopes(qs: TestClient, setup) -> None:
    response = qs.get("/install")
    assert response.status_code == 302
    url = urlsplit(response.headers["location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == setup.base_url + "/oauth/authorize"
    query = parse_qs(url.query)
    assert query["client_id"] == [setup.config.client_id]
    assert query["redirect_uri"] == ["http://localhost:3000/oauth-callback"]
    assert query["scope"] == ["crm.objects.contacts.read"]
    assert query["optional_scope"] == ["crm.objects.contacts.write automation"]
    assert len(query["state"][0]) >= 32


def test_full_install_shows_account_and_contacts(qs: TestClient, setup: Setup) -> None:
    done = install(qs)
    assert done.status_code == 303
    assert done.headers["location"] == "/accounts/1234567?done=connected"
    page = qs.get(done.headers["location"])
    assert page.status_code == 200
    text = page.text
    for expected in ("1234567", "acme.example.com", "admin@example.com",
                     "crm.objects.contacts.read", "Refresh now", "Disconnect", "Connected."):
        assert expected in text
    assert len(re.findall(r'<tr class="contact">', text)) == 10
    assert "Maria Johnson" in text
    # The access token is masked, never shown whole.
    from hubspot_oauth import TokenStore

    token = TokenStore(setup.config.database_url,
                       encryption_keys=list(setup.config.encryption_keys)).get("1234567")
    assert token.access_token not in text and token.refresh_token not in text
    assert token.access_token[:6] in text
    assert re.search(r'id="expires-in">(29|30) min', text)


def test_return_to_is_honoured(qs: TestClient) -> None:
    done = install(qs, return_to="/accounts/1234567")
    assert done.status_code == 303
    assert done.headers["location"] == "/accounts/1234567"


@pytest.mark.parametrize("target", [
    "https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
    "evil", "/ok\r\nSet-Cookie: x=1",
])
def test_no_open_redirect(qs: TestClient, target: str) -> None:
    response = qs.get("/install", params={"return_to": target})
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "return_to must be a path on this site" in response.text
    assert safe_return_path(target) is None


def test_safe_return_path_accepts_local_paths() -> None:
    assert safe_return_path("/accounts/acme?tab=1") == "/accounts/acme?tab=1"
    assert safe_return_path("/") == "/"


def test_forged_state_shows_error_and_stores_nothing(qs: TestClient, setup: Setup) -> None:
    page = qs.get("/oauth-callback", params={"code": "na1-1111-2222", "state": "forged"})
    assert page.status_code == 400
    assert "not from an install we started" in page.text
    assert "Nothing was stored" in page.text
    assert _connections(setup) == []
    assert setup.stats()["token"]["authorization_code"] == {"ok": 0, "error": 0}


def test_replayed_callback_is_refused(qs: TestClient, setup: Setup) -> None:
    callback = start_install(qs)
    assert qs.get(callback).status_code == 303
    replay = qs.get(callback)
    assert replay.status_code == 400
    assert "already used" in replay.text
    assert setup.stats()["token"]["authorization_code"] == {"ok": 1, "error": 0}
    assert len(_connections(setup)) == 1


def test_missing_state_and_missing_code_answer_at_once(qs: TestClient, setup) -> None:
    assert qs.get("/oauth-callback").status_code == 400
    assert qs.get("/oauth-callback", params={"code": "x"}).status_code == 400
    # A valid state without code or error: the Node quickstart hangs here; we answer.
    nonce = parse_qs(urlsplit(qs.get("/install").headers["location"]).query)["state"][0]
    page = qs.get("/oauth-callback", params={"state": nonce})
    assert page.status_code == 400
    assert "sent no authorization code" in page.text
    assert _connections(setup) == []


def test_hubspot_error_is_shown_and_nothing_stored(qs: TestClient, setup: Setup) -> None:
    nonce = parse_qs(urlsplit(qs.get("/install").headers["location"]).query)["state"][0]
    page = qs.get("/oauth-callback", params={
        "state": nonce, "error": "access_denied", "error_description": "The user said no"})
    assert page.status_code == 400
    assert "access_denied" in page.text and "The user said no" in page.text
    assert _connections(setup) == []


def test_install_looks_the_account_up_once(qs: TestClient, setup: Setup) -> None:
    assert install(qs).status_code == 303
    stats = setup.stats()
    assert stats["token"]["authorization_code"] == {"ok": 1, "error": 0}
    # The callback's lookup filled in domain and user; saving did not ask HubSpot again.
    assert stats["introspect"] == {"ok": 1, "error": 0}
    assert stats["metadata"] == {"ok": 0, "error": 0}
    [connection] = _connections(setup)
    assert connection.hub_domain == "acme.example.com" and connection.user == "admin@example.com"


@pytest.mark.parametrize(("fault", "times"), [
    ("invalid_grant", 1),  # HubSpot disowns the new access token: not active
    ("server_error", 3),   # every try of the lookup fails (RetryPolicy: 3)
])
def test_install_whose_account_lookup_fails_stores_nothing(
    qs: TestClient, setup: Setup, fault: str, times: int
) -> None:
    setup.hubspot.faults.add(endpoint="introspect", fault=fault, times=times)
    page = install(qs)
    assert page.status_code == 502
    assert "HubSpot did not confirm the new connection" in page.text
    assert "Nothing was stored" in page.text
    assert ("not active" if fault == "invalid_grant" else "HTTP 500") in page.text
    assert _connections(setup) == []
    stats = setup.stats()
    assert stats["token"]["authorization_code"] == {"ok": 1, "error": 0}
    # One lookup (its tries; a fault counts as an error), and save never asked again.
    assert stats["introspect"] == {"ok": 0, "error": times}


def test_expired_state(setup: Setup) -> None:
    now = [datetime.now(UTC)]
    states = StateStore("memory://", now=lambda: now[0])
    with TestClient(setup.make_app(states=states), follow_redirects=False) as qs:
        callback = start_install(qs)
        now[0] += timedelta(seconds=601)
        page = qs.get(callback)
    assert page.status_code == 400
    assert "took too long" in page.text
    assert _connections(setup) == []


def test_two_tabs_both_complete(qs: TestClient, setup: Setup) -> None:
    """Case C6: two installs started, the second finished first; no state error."""
    first = start_install(qs, return_to="/accounts/1234567?tab=1")
    second = start_install(qs, return_to="/accounts/1234567?tab=2")
    done_second = qs.get(second)
    done_first = qs.get(first)
    assert done_second.status_code == 303
    assert done_second.headers["location"] == "/accounts/1234567?tab=2"
    assert done_first.status_code == 303
    assert done_first.headers["location"] == "/accounts/1234567?tab=1"
    assert setup.stats()["token"]["authorization_code"]["ok"] == 2


def test_expired_access_token_refreshes_once(qs: TestClient, setup: Setup) -> None:
    """HubSpot's clock moves 30 minutes on: the page still lists contacts, one refresh."""
    install(qs)
    setup.advance(1800)
    for _ in range(2):
        page = qs.get("/accounts/1234567")
        assert page.status_code == 200
        assert "Maria Johnson" in page.text
    assert setup.stats()["token"]["refresh_token"] == {"ok": 1, "error": 0}


def test_refresh_now_needs_csrf(qs: TestClient, setup: Setup) -> None:
    install(qs)
    refused = qs.post("/refresh", data={"key": "1234567", "csrf_token": "guess"})
    assert refused.status_code == 403
    assert setup.stats()["token"]["refresh_token"]["ok"] == 0
    done = qs.post("/refresh", data={"key": "1234567", "csrf_token": _csrf(qs)})
    assert done.status_code == 303
    assert done.headers["location"] == "/accounts/1234567?done=refreshed"
    assert setup.stats()["token"]["refresh_token"]["ok"] == 1


def test_disconnect_revokes_and_deletes(qs: TestClient, setup: Setup) -> None:
    install(qs)
    from hubspot_oauth import TokenStore

    refresh_token = TokenStore(setup.config.database_url, encryption_keys=list(
        setup.config.encryption_keys)).get("1234567").refresh_token
    # Without the CSRF token, or from another origin: refused, still connected.
    assert qs.post("/disconnect", data={"key": "1234567"}).status_code == 403
    csrf = _csrf(qs)
    cross = qs.post("/disconnect", data={"key": "1234567", "csrf_token": csrf},
                    headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert len(_connections(setup)) == 1
    done = qs.post("/disconnect", data={"key": "1234567", "csrf_token": csrf})
    assert done.status_code == 303
    page = qs.get(done.headers["location"])
    assert "Install the app" in page.text and "Disconnected" in page.text
    assert _connections(setup) == []
    client = OAuthClient.from_config(setup.config)
    with pytest.raises(ReauthorizationRequiredError):
        client.refresh(refresh_token)


def test_connections_survive_a_restart(setup: Setup) -> None:
    with TestClient(setup.make_app(), follow_redirects=False) as qs:
        install(qs)
    with TestClient(setup.make_app(), follow_redirects=False) as qs:
        page = qs.get("/")
        assert "acme.example.com" in page.text and "Maria Johnson" in page.text


def test_unknown_account_and_methods(qs: TestClient) -> None:
    assert qs.get("/accounts/nope").status_code == 404
    assert qs.get("/disconnect").status_code == 405
    assert qs.get("/no/such/page").status_code == 404


def test_security_headers(qs: TestClient) -> None:
    page = qs.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie


def test_quickstart_uses_only_the_public_api() -> None:
    import ast
    from pathlib import Path

    import hubspot_oauth
    from hubspot_oauth.quickstart import app

    tree = ast.parse(Path(app.__file__).read_text())
    public: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and "hubspot_oauth" in node.module:
            assert node.module == "hubspot_oauth", node.module
            for alias in node.names:
                assert alias.name in hubspot_oauth.__all__, alias.name
                public.append(alias.name)
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import into the package"
        if isinstance(node, ast.Import):  # `import hubspot_oauth.client.store` is private too
            for alias in node.names:
                assert not alias.name.startswith("hubspot_oauth."), alias.name
    assert public, "the quickstart imports nothing from hubspot_oauth: the check saw no import"


def test_revoked_connection_shows_what_to_do(qs: TestClient, setup: Setup) -> None:
    install(qs)
    setup.hubspot.uninstall(app_id=_app_id(setup), hub_id=1234567)
    setup.advance(1800)
    page = qs.get("/accounts/1234567")
    assert page.status_code == 200
    assert "install again" in page.text.lower()


def _app_id(setup: Setup) -> int:
    return next(a.app_id for a in setup.hubspot.list_apps()
                if a.client_id == setup.config.client_id)


def test_unreadable_store_is_a_clear_page(setup: Setup) -> None:
    from cryptography.fernet import Fernet

    with TestClient(setup.make_app(), follow_redirects=False) as qs:
        install(qs)
    other_key = ClientConfig(**{**setup.config.__dict__,
                                "encryption_keys": (Fernet.generate_key().decode(),)})
    from hubspot_oauth.quickstart import create_app

    with TestClient(create_app(other_key), follow_redirects=False) as qs:
        page = qs.get("/")
    assert page.status_code == 500
    assert "cannot be read" in page.text and "key" in page.text


def _second_app(setup: Setup) -> ClientConfig:
    """Another app on the same local HubSpot and the same token file: what a quickstart on
    another port used to share with the one on 3000."""
    _app_id, client_id, client_secret = setup.hubspot.create_app_registration(
        name="Another app", redirect_urls=["http://localhost:3000/oauth-callback"],
        scopes=["crm.objects.contacts.read"])
    return ClientConfig(**{**setup.config.__dict__, "client_id": client_id,
                           "client_secret": client_secret, "optional_scopes": ()})


def test_connection_of_another_app_says_so_and_offers_disconnect(setup: Setup) -> None:
    from hubspot_oauth.quickstart import create_app

    with TestClient(setup.make_app(), follow_redirects=False) as first:
        install(first)
    setup.advance(1800)  # the next read needs a refresh, with the other app's credentials
    with TestClient(create_app(_second_app(setup)), follow_redirects=False) as qs:
        home = qs.get("/accounts/1234567")
        assert "issued to another app" in home.text
        refused = qs.post("/refresh", data={"key": "1234567", "csrf_token": _csrf(qs)})
        assert refused.status_code == 409
        assert "This connection belongs to another app" in refused.text
        assert "installed again" not in refused.text  # not the uninstall wording
        # The way out the page names is on the page: a Disconnect form for this key.
        form = re.search(r'<form method="post" action="/disconnect">(.*?)</form>',
                         refused.text, re.S)
        assert form and 'name="key" value="1234567"' in form.group(1)
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.group(1)).group(1)
        done = qs.post("/disconnect", data={"key": "1234567", "csrf_token": csrf})
        assert done.status_code == 303 and done.headers["location"] == "/?done=disconnected"
    assert _connections(setup) == []


def test_uninstalled_connection_error_page_offers_disconnect(qs: TestClient, setup) -> None:
    install(qs)
    setup.hubspot.uninstall(app_id=_app_id(setup), hub_id=1234567)
    refused = qs.post("/refresh", data={"key": "1234567", "csrf_token": _csrf(qs)})
    assert refused.status_code == 409 and "must be installed again" in refused.text
    assert 'action="/disconnect"' in refused.text
    assert 'name="key" value="1234567"' in refused.text


def test_a_wrong_client_secret_names_the_credentials_not_the_code(setup: Setup) -> None:
    """A wrong secret surfaces at the first exchange: the page blames the app's credentials
    and names the settings (it said "HubSpot refused the authorization code")."""
    import dataclasses

    from hubspot_oauth.quickstart import create_app

    config = dataclasses.replace(setup.config, client_secret="wrong")
    with TestClient(create_app(config), follow_redirects=False) as qs:
        page = qs.get(start_install(qs))
    assert page.status_code == 502
    assert "HubSpot refused the app&#39;s credentials" in page.text \
        or "HubSpot refused the app's credentials" in page.text
    assert "check HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET" in page.text
    assert "BAD_CLIENT_SECRET" in page.text and "Nothing was stored" in page.text
    assert "refused the authorization code" not in page.text
    assert _connections(setup) == []
