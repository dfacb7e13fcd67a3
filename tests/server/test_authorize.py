"""The authorize pages in-process (httpx.ASGITransport): install errors, login, account
picker, consent, grant, cancel, CSRF, headers, auto-approve, several tabs (case C6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from hubspot_oauth.server import ServerSettings, create_app, models
from hubspot_oauth.server.authorize import LOGIN_FAILED, SESSION_COOKIE, STALE_LOGIN
from hubspot_oauth.server.bruteforce import default_guard
from hubspot_oauth.server.install import ERROR_TITLE
from tests.support.pages import (
    BASE_URL,
    CLIENT_ID,
    REDIRECT_URI,
    Browser,
    authorize_path,
    form_with,
    parse_page,
    redirect_query,
    text_of,
)

pytestmark = pytest.mark.anyio

CLIENT_SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
ODD_STATE = "a b&c=d/é"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(sqlite_url: str) -> ServerSettings:
    return ServerSettings(database_url=sqlite_url)


@pytest.fixture
def app(settings: ServerSettings):  # noqa: ANN201
    return create_app(settings)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # noqa: ANN001
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as http:
        yield http


@pytest.fixture
def browser(client: httpx.AsyncClient) -> Browser:
    return Browser(client)


def codes_issued(app) -> int:  # noqa: ANN001
    with app.state.hubspot.engine.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).select_from(models.authorization_codes)
        ).scalar_one()


def assert_error_page(response: httpx.Response, kind: str, message: str, status: int = 400) -> None:
    assert response.status_code == status, response.text[:500]
    assert "location" not in response.headers  # never a redirect to the app
    assert response.headers["content-type"].startswith("text/html")
    page = parse_page(response.text)
    assert page.h1 == ERROR_TITLE
    assert page.error_kind == kind
    assert page.error_message == message


async def exchange(client: httpx.AsyncClient, code: str, **extra: str) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "code": code,
        **extra,
    }
    return await client.post("/oauth/v3/token", data=data)


# --- install errors: pages, never redirects -----------------------------------------------

CONTACT = "Please contact the app developer."
INSUFFICIENT = f"Authorization failed because the provided scopes are insufficient. {CONTACT}"
MISMATCH = (
    "Authorization failed because there is a mismatch between the scopes in the install URL "
    f"and the app's configured scopes. {CONTACT}"
)


@pytest.mark.parametrize(
    ("path", "kind", "message"),
    [
        (
            authorize_path(client_id="00000000-0000-0000-0000-000000000000"),
            "unknown_client",
            f"Authorization failed because the app's client ID is not recognized. {CONTACT}",
        ),
        (
            authorize_path(client_id=None),
            "missing_parameter",
            "Authorization failed because the install URL is missing the required parameter "
            f"'client_id'. {CONTACT}",
        ),
        (
            authorize_path(redirect_uri=None),
            "missing_parameter",
            "Authorization failed because the install URL is missing the required parameter "
            f"'redirect_uri'. {CONTACT}",
        ),
        (
            authorize_path(redirect_uri="http://localhost:3001/oauth-callback"),
            "redirect_uri_mismatch",
            "Authorization failed as the redirect URL 'http://localhost:3001/oauth-callback' "
            f"doesn't match the app's registered redirect URL. {CONTACT}",
        ),
        (
            authorize_path(redirect_uri="https://evil.example/cb", scope=None),
            "redirect_uri_mismatch",
            "Authorization failed as the redirect URL 'https://evil.example/cb' doesn't match "
            f"the app's registered redirect URL. {CONTACT}",
        ),
        (
            authorize_path(scope=None),
            "missing_parameter",
            "Authorization failed because the install URL is missing the required parameter "
            f"'scope'. {CONTACT}",
        ),
        # Case C8, second half: scope=automation only.
        (
            authorize_path(scope="automation", optional_scope=None),
            "insufficient_scopes",
            INSUFFICIENT,
        ),
        # Case C8, first half: an optional scope in `scope`.
        (
            authorize_path(scope="crm.objects.contacts.read automation", optional_scope=None),
            "scope_mismatch",
            MISMATCH,
        ),
        (
            authorize_path(optional_scope="tickets"),
            "scope_mismatch",
            MISMATCH,
        ),
        (
            authorize_path(code_challenge="a" * 43, code_challenge_method="S512"),
            "invalid_pkce",
            "Authorization failed because the install URL's PKCE parameters are invalid. "
            f"{CONTACT}",
        ),
        (
            authorize_path(code_challenge="a" * 43 + "\n", code_challenge_method="S256"),
            "invalid_pkce",
            "Authorization failed because the install URL's PKCE parameters are invalid. "
            f"{CONTACT}",
        ),
        (
            authorize_path() + "&client_id=" + CLIENT_ID,
            "invalid_parameter",
            "Authorization failed because the install URL repeats the parameter 'client_id'. "
            f"{CONTACT}",
        ),
        (
            authorize_path() + "&state=%FF%FE",
            "invalid_parameter",
            f"Authorization failed because the install URL is not valid UTF-8. {CONTACT}",
        ),
    ],
    ids=[
        "unknown-client",
        "missing-client-id",
        "missing-redirect-uri",
        "redirect-port-differs",
        "redirect-foreign-before-scope",
        "missing-scope",
        "c8-insufficient",
        "c8-mismatch",
        "unconfigured-optional",
        "bad-pkce-method",
        "pkce-challenge-trailing-newline",
        "duplicate-parameter",
        "non-utf8",
    ],
)
async def test_install_error_pages(
    client: httpx.AsyncClient,
    app,
    path: str,
    kind: str,
    message: str,  # noqa: ANN001
) -> None:
    response = await client.get(path)
    assert_error_page(response, kind, message)
    assert_security_headers(response)
    assert codes_issued(app) == 0


async def test_errors_are_pages_even_when_signed_in(browser: Browser) -> None:
    signed_in = await browser.login(await browser.get(authorize_path()))
    assert parse_page(signed_in.text).h1 == "Choose an account"
    response = await browser.get(authorize_path(scope="automation", optional_scope=None))
    assert_error_page(response, "insufficient_scopes", INSUFFICIENT)


async def test_scope_separators_space_plus_and_percent20(client: httpx.AsyncClient) -> None:
    for sep in ("%20", "+"):
        path = (
            f"/oauth/authorize?client_id={CLIENT_ID}&redirect_uri={quote(REDIRECT_URI, safe='')}"
            f"&scope=crm.objects.contacts.read&optional_scope=crm.objects.contacts.write{sep}automation"
            "&response_type=code"
        )
        response = await client.get(path)
        assert response.status_code == 200, response.text[:300]
        assert parse_page(response.text).h1 == "Log in to HubSpot"


async def test_pinned_account_must_be_a_number(client: httpx.AsyncClient) -> None:
    response = await client.get(authorize_path(account_id="acme"))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert parse_page(response.text).error_kind == "invalid_parameter"


# --- login ------------------------------------------------------------------------------


async def test_login_page_then_generic_failure(browser: Browser, app) -> None:  # noqa: ANN001
    page = await browser.get(authorize_path())
    assert page.status_code == 200
    assert parse_page(page.text).h1 == "Log in to HubSpot"
    assert "Quickstart App" in text_of(page.text)
    wrong_password = await browser.login(page, password="nope")
    unknown_user = await browser.login(page, email="nobody@example.com")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 200
        assert parse_page(response.text).h1 == "Log in to HubSpot"
        assert LOGIN_FAILED in text_of(response.text)
    # The same words either way (the e-mail is only in the input's value attribute): the
    # page does not say which e-mails exist.
    assert text_of(wrong_password.text) == text_of(unknown_user.text)
    assert codes_issued(app) == 0


async def test_repeated_login_failures_are_throttled(browser: Browser, app) -> None:  # noqa: ANN001
    # The guard's clock stands still: its first lockout (1 s) cannot end between the 429
    # and the login below, however slow the machine.
    app.state.bruteforce = default_guard(clock=lambda: 1000.0)
    page = await browser.get(authorize_path())
    statuses = []
    for _ in range(12):
        response = await browser.login(page, password="wrong")
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429
    assert "Retry-After" in response.headers
    assert "Too many sign-in attempts" in text_of(response.text)
    # Even the right password is refused while locked.
    locked = await browser.login(page)
    assert locked.status_code == 429


# --- picker, consent, grant -------------------------------------------------------------


async def test_full_flow_grant_redirects_with_code_and_exact_state(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    login_page = await browser.get(authorize_path(state=ODD_STATE))
    picker = await browser.login(login_page)
    assert parse_page(picker.text).h1 == "Choose an account"
    choices = form_with(parse_page(picker.text), "/account").buttons
    assert choices == [("hub_id", "1234567"), ("hub_id", "7654321")]
    assert "acme.example.com" in text_of(picker.text)
    assert "globex.example.com" in text_of(picker.text)

    consent = await browser.choose(picker, 1234567)
    text = text_of(consent.text)
    assert parse_page(consent.text).h1 == "Connect Quickstart App to Acme"
    assert "The app of HubSpot's OAuth quickstart" in text  # the app's description
    assert "View properties and other details about contacts" in text
    assert "Create, delete, or make changes to contacts" in text
    assert "View, create and edit workflows" in text
    buttons = form_with(parse_page(consent.text), "/decision").buttons
    assert ("decision", "grant") in buttons and ("decision", "cancel") in buttons
    assert "Grant access" in text and "Cancel" in text

    granted = await browser.decide(consent, "grant")
    assert granted.status_code == 302
    location = granted.headers["location"]
    assert location.startswith(REDIRECT_URI + "?code=")
    assert location.endswith("&state=" + quote(ODD_STATE, safe=""))
    query = redirect_query(granted)
    assert query["state"] == [ODD_STATE]
    token = await exchange(client, query["code"][0])
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["hub_id"] == 1234567
    assert set(body["scopes"]) == {
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "automation",
    }


async def test_optional_scope_portal_lacks_is_dropped_and_not_shown(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    picker = await browser.login(await browser.get(authorize_path(state="s")))
    consent = await browser.choose(picker, 7654321)
    text = text_of(consent.text)
    assert "View properties and other details about contacts" in text
    assert "workflows" not in text and "automation" not in text
    granted = await browser.decide(consent, "grant")
    token = await exchange(client, redirect_query(granted)["code"][0])
    assert token.json()["hub_id"] == 7654321
    assert "automation" not in token.json()["scopes"]


async def test_pinned_account_skips_picker(browser: Browser) -> None:
    consent = await browser.login(await browser.get(authorize_path(account_id=7654321)))
    assert parse_page(consent.text).h1 == "Connect Quickstart App to Globex"
    granted = await browser.decide(consent, "grant")
    assert granted.status_code == 302
    assert "state" not in redirect_query(granted)  # no state sent, none echoed


async def test_redirect_uri_keeps_its_own_query(app, browser: Browser) -> None:  # noqa: ANN001
    uri = "https://www.example.com/auth-callback?tenant=7"
    app.state.hubspot.create_app_registration(
        name="Tenant App",
        redirect_urls=[uri],
        scopes=["crm.objects.contacts.read"],
        optional_scopes=[],
    )
    client_id = _client_id_of(app, "Tenant App")
    path = authorize_path(client_id=client_id, redirect_uri=uri, optional_scope=None, state="x")
    consent = await browser.choose(await browser.login(await browser.get(path)), 1234567)
    granted = await browser.decide(consent, "grant")
    assert granted.headers["location"].startswith(uri + "&code=")
    assert redirect_query(granted)["tenant"] == ["7"]


def _client_id_of(app, name: str) -> str:  # noqa: ANN001
    with app.state.hubspot.engine.connect() as conn:
        return conn.execute(
            sa.select(models.apps.c.client_id).where(models.apps.c.name == name)
        ).scalar_one()


async def test_pkce_challenge_is_bound_to_the_code(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    path = authorize_path(
        account_id=1234567, code_challenge=challenge, code_challenge_method="S256"
    )
    granted = await browser.decide(await browser.login(await browser.get(path)), "grant")
    code = redirect_query(granted)["code"][0]
    wrong = await exchange(client, code, code_verifier="x" * 43)
    assert wrong.status_code == 400
    # A fresh code, the right verifier.
    granted = await browser.decide(await browser.get(path), "grant")
    right = await exchange(client, redirect_query(granted)["code"][0], code_verifier=verifier)
    assert right.status_code == 200, right.text


# --- install errors that depend on the user and the portal --------------------------------


async def test_user_without_install_role_gets_permission_page(browser: Browser, app) -> None:  # noqa: ANN001
    response = await browser.login(
        await browser.get(authorize_path(account_id=1234567)), email="viewer@example.com"
    )
    assert_error_page(
        response,
        "no_permission",
        "You do not have the correct role to grant these permissions. Please contact your "
        "administrator.",
        status=403,
    )
    assert codes_issued(app) == 0


async def test_viewer_picks_account_then_permission_page(browser: Browser) -> None:
    picker = await browser.login(await browser.get(authorize_path()), email="viewer@example.com")
    assert form_with(parse_page(picker.text), "/account").buttons == [("hub_id", "1234567")]
    response = await browser.choose(picker, 1234567)
    assert parse_page(response.text).error_kind == "no_permission"


async def test_account_the_user_does_not_belong_to(browser: Browser) -> None:
    response = await browser.login(
        await browser.get(authorize_path(account_id=7654321)), email="viewer@example.com"
    )
    assert_error_page(
        response,
        "account_not_found",
        "You don't have access to the HubSpot account 7654321.",
        status=403,
    )


async def test_portal_lacking_a_required_product(app, browser: Browser) -> None:  # noqa: ANN001
    app.state.hubspot.create_app_registration(
        name="Workflow App",
        redirect_urls=[REDIRECT_URI],
        scopes=["automation"],
        optional_scopes=[],
    )
    path = authorize_path(
        account_id=7654321,
        client_id=_client_id_of(app, "Workflow App"),
        scope="automation",
        optional_scope=None,
    )
    response = await browser.login(await browser.get(path))
    assert_error_page(
        response,
        "portal_lacks_product",
        "This account doesn't have access to some HubSpot features that are required by this app.",
        status=403,
    )


# --- cancel, CSRF, tampering ------------------------------------------------------------


async def test_cancel_sends_nothing(browser: Browser, app) -> None:  # noqa: ANN001
    consent = await browser.login(await browser.get(authorize_path(account_id=1234567, state="s")))
    cancelled = await browser.decide(consent, "cancel")
    assert cancelled.status_code == 200
    assert "location" not in cancelled.headers
    assert parse_page(cancelled.text).h1 == "Access not granted"
    assert "Nothing was sent to the app" in text_of(cancelled.text)
    assert REDIRECT_URI not in cancelled.text
    assert codes_issued(app) == 0


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
async def test_csrf_missing_or_wrong_is_refused(
    browser: Browser,
    client: httpx.AsyncClient,
    app,
    csrf: str | None,  # noqa: ANN001
) -> None:
    consent = await browser.login(await browser.get(authorize_path(account_id=1234567)))
    form = form_with(parse_page(consent.text), "/decision")
    data = {**form.fields, "decision": "grant"}
    if csrf is None:
        del data["csrf_token"]
    else:
        data["csrf_token"] = csrf
    response = await client.post(form.action, data=data)
    assert response.status_code == 403
    assert "location" not in response.headers
    assert parse_page(response.text).error_kind == "csrf"
    assert codes_issued(app) == 0


async def test_csrf_token_is_tied_to_the_session_cookie(
    browser: Browser,
    app,  # noqa: ANN001
) -> None:
    consent = await browser.login(await browser.get(authorize_path(account_id=1234567)))
    form = form_with(parse_page(consent.text), "/decision")
    # Another browser (no cookie) replays the form with its valid-looking token.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as other:
        response = await other.post(form.action, data={**form.fields, "decision": "grant"})
    assert response.status_code == 403
    assert codes_issued(app) == 0
    # Login CSRF too: posting credentials without the page's token is refused.
    login = await browser.client.post(
        "/oauth/authorize/login",
        data={
            "email": "admin@example.com",
            "password": "password",
            "authorization": form.fields["authorization"],
        },
    )
    assert login.status_code == 403


async def test_tampered_authorization_is_invalid_link(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    consent = await browser.login(await browser.get(authorize_path(account_id=1234567)))
    form = form_with(parse_page(consent.text), "/decision")
    tampered = form.fields["authorization"][:-3] + "AAA"
    response = await client.post(
        form.action, data={**form.fields, "authorization": tampered, "decision": "grant"}
    )
    assert_error_page(
        response,
        "invalid_link",
        "This install link is no longer valid. Please visit HubSpot's App Marketplace to "
        "install this app.",
    )


async def test_form_with_wrong_content_type_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/oauth/authorize/decision", content=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert parse_page(response.text).error_kind == "invalid_request"


# --- headers and cookies ----------------------------------------------------------------


def assert_security_headers(response: httpx.Response) -> None:
    headers = response.headers
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"


async def test_every_page_sends_anti_framing_and_no_store(browser: Browser) -> None:
    login_page = await browser.get(authorize_path())
    picker = await browser.login(login_page)
    consent = await browser.choose(picker, 1234567)
    granted = await browser.decide(consent, "grant")
    for response in (login_page, picker, consent, granted):
        assert_security_headers(response)


async def test_session_cookie_attributes(client: httpx.AsyncClient) -> None:
    response = await client.get(authorize_path())
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(SESSION_COOKIE + "=")
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/oauth" in lowered


async def test_stylesheet_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/oauth/assets/authorize.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


# --- several tabs in one browser (case C6) ------------------------------------------------


async def test_c6_interleaved_authorizations_in_one_cookie_jar(
    browser: Browser, client: httpx.AsyncClient
) -> None:
    tab1 = await browser.get(authorize_path(state="first"))
    tab2 = await browser.get(authorize_path(state="second"))
    tab2 = await browser.login(tab2)
    tab2 = await browser.choose(tab2, 7654321)
    # Tab 1 logs in after tab 2 did (same cookie jar), and is sent to the picker.
    tab1 = await browser.login(tab1)
    tab1 = await browser.choose(tab1, 1234567)
    done2 = await browser.decide(tab2, "grant")
    done1 = await browser.decide(tab1, "grant")
    q1, q2 = redirect_query(done1), redirect_query(done2)
    assert q1["state"] == ["first"] and q2["state"] == ["second"]
    t1 = (await exchange(client, q1["code"][0])).json()
    t2 = (await exchange(client, q2["code"][0])).json()
    assert (t1["hub_id"], t2["hub_id"]) == (1234567, 7654321)


async def test_signed_in_user_goes_straight_to_picker(browser: Browser) -> None:
    await browser.login(await browser.get(authorize_path()))
    again = await browser.get(authorize_path(state="2"))
    assert parse_page(again.text).h1 == "Choose an account"


async def test_use_a_different_user(browser: Browser) -> None:
    picker = await browser.login(await browser.get(authorize_path()))
    login_again = await browser.submit(picker, "/logout")
    assert parse_page(login_again.text).h1 == "Log in to HubSpot"


# --- auto-approve -------------------------------------------------------------------------


async def _auto_client(sqlite_url: str, email: str) -> tuple[httpx.AsyncClient, object]:
    app = create_app(ServerSettings(database_url=sqlite_url, auto_approve=email))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)
    return client, app


async def test_auto_approve_redirects_without_pages(sqlite_url: str) -> None:
    client, _ = await _auto_client(sqlite_url, "admin@example.com")
    async with client:
        response = await client.get(authorize_path(state=ODD_STATE))
        assert response.status_code == 302
        assert redirect_query(response)["state"] == [ODD_STATE]
        token = (await exchange(client, redirect_query(response)["code"][0])).json()
        assert token["hub_id"] == 1234567  # the first eligible portal
        pinned = await client.get(authorize_path(account_id=7654321))
        token = (await exchange(client, redirect_query(pinned)["code"][0])).json()
        assert token["hub_id"] == 7654321
        # Install errors still apply.
        refused = await client.get(authorize_path(scope="automation", optional_scope=None))
        assert_error_page(refused, "insufficient_scopes", INSUFFICIENT)


async def test_auto_approve_as_user_without_role(sqlite_url: str) -> None:
    client, _ = await _auto_client(sqlite_url, "viewer@example.com")
    async with client:
        response = await client.get(authorize_path())
        assert response.status_code == 403
        assert "location" not in response.headers
        assert parse_page(response.text).error_kind == "no_permission"


# --- escaping -----------------------------------------------------------------------------


async def test_user_controlled_text_is_escaped(app, browser: Browser) -> None:  # noqa: ANN001
    mismatch = await browser.get(
        authorize_path(redirect_uri="https://x.example/<script>x()</script>")
    )
    assert mismatch.status_code == 400
    assert "<script>" not in mismatch.text
    assert "&lt;script&gt;" in mismatch.text
    app.state.hubspot.create_app_registration(
        name="<b>Evil</b> App",
        description="<img src=x onerror=alert(1)>",
        redirect_urls=[REDIRECT_URI],
        scopes=["crm.objects.contacts.read"],
        optional_scopes=[],
    )
    path = authorize_path(
        account_id=1234567, client_id=_client_id_of(app, "<b>Evil</b> App"), optional_scope=None
    )
    consent = await browser.login(await browser.get(path))
    assert "<b>Evil</b>" not in consent.text and "<img" not in consent.text
    assert parse_page(consent.text).h1 == "Connect <b>Evil</b> App to Acme"


# --- sample users on the login page ----------------------------------------------------------


async def test_login_page_lists_default_sample_users(client: httpx.AsyncClient) -> None:
    text = text_of((await client.get(authorize_path())).text).replace(" ,", ",")
    assert "admin@example.com, password password (super admin)" in text
    assert "viewer@example.com, password password (may not install apps)" in text


async def test_login_page_hides_seed_file_users(tmp_path) -> None:  # noqa: ANN001
    seed = tmp_path / "seed.toml"
    seed.write_text(
        f"""
[[apps]]
name = "Own App"
client_id = "{CLIENT_ID}"
client_secret = "s3cr3t-s3cr3t"
redirect_urls = ["{REDIRECT_URI}"]
scopes = ["crm.objects.contacts.read"]

[[portals]]
hub_id = 42
hub_domain = "own.example.com"

[[users]]
email = "owner@example.com"
password = "hunter2-hunter2"
roles = {{ 42 = "super_admin" }}
""",
        encoding="utf-8",
    )
    app = create_app(
        ServerSettings(database_url=f"sqlite:///{tmp_path / 'own.db'}", seed_file=seed)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as client:
        page = await client.get(authorize_path(optional_scope=None))
    assert page.status_code == 200
    assert "hunter2" not in page.text and "owner@example.com" not in page.text
    assert "Sample users" not in page.text


async def test_registered_ip_redirect_url_is_refused_by_page(tmp_path) -> None:  # noqa: ANN001
    # create_app_registration refuses such URLs; a seed file can still hold one.
    uri = "http://127.0.0.1:3000/oauth-callback"
    seed = tmp_path / "seed.toml"
    seed.write_text(
        f"""
[[apps]]
name = "IP App"
client_id = "{CLIENT_ID}"
client_secret = "s3cr3t-s3cr3t"
redirect_urls = ["{uri}"]
scopes = ["crm.objects.contacts.read"]

[[portals]]
hub_id = 42
hub_domain = "own.example.com"
""",
        encoding="utf-8",
    )
    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'ip.db'}", seed_file=seed))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as client:
        response = await client.get(authorize_path(redirect_uri=uri, optional_scope=None))
    assert_error_page(
        response,
        "redirect_uri_not_allowed",
        f"Authorization failed because the redirect URL '{uri}' is not allowed: IP addresses "
        "are not supported, use a domain name such as localhost. Please contact the app "
        "developer.",
    )


async def test_login_form_from_an_older_session_asks_again(browser: Browser, app) -> None:  # noqa: ANN001
    # Two tabs opened before either had a cookie: the second one's cookie wins.
    tab1 = await browser.get(authorize_path(state="1"))
    browser.client.cookies.clear()
    await browser.get(authorize_path(state="2"))
    stale = await browser.login(tab1)
    assert stale.status_code == 403
    assert parse_page(stale.text).h1 == "Log in to HubSpot"
    assert STALE_LOGIN in text_of(stale.text)
    assert codes_issued(app) == 0
    picker = await browser.login(stale)
    assert parse_page(picker.text).h1 == "Choose an account"
    granted = await browser.decide(await browser.choose(picker, 1234567), "grant")
    assert redirect_query(granted)["state"] == ["1"]
