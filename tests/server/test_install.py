"""The install-time rules of the authorize step (pure functions of server/install.py)."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from hubspot_oauth.server.install import (
    ERROR_TITLE,
    AppRegistration,
    AuthorizeRequest,
    InstallError,
    PortalAccess,
    authorization_redirect,
    check_authorize_request,
    check_install,
    code_challenge_matches,
    describe_scope,
    parse_authorize_query,
    validate_redirect_url,
)

APP = AppRegistration(
    client_id="7fff1e36-2d40-4ae1-bbb1-5266d59564fb",
    name="Quickstart App",
    redirect_urls=("http://localhost:3000/oauth-callback", "https://www.example.com/auth-callback"),
    scopes=("crm.objects.contacts.read",),
    optional_scopes=("crm.objects.contacts.write", "automation"),
    app_id=1,
)
ACME = PortalAccess(hub_id=1234567, hub_domain="acme.example.com", may_install=True)
GLOBEX = PortalAccess(
    hub_id=7654321,
    hub_domain="globex.example.com",
    may_install=True,
    available_scopes=frozenset({"crm.objects.contacts.read", "crm.objects.contacts.write"}),
)


def request(**overrides: object) -> AuthorizeRequest:
    values: dict[str, object] = {
        "client_id": APP.client_id,
        "redirect_uri": "http://localhost:3000/oauth-callback",
        "scopes": ("crm.objects.contacts.read",),
        "optional_scopes": ("crm.objects.contacts.write", "automation"),
        "state": "xyz",
    }
    values.update(overrides)
    return AuthorizeRequest(**values)  # type: ignore[arg-type]


def refused(app: AppRegistration | None, req: AuthorizeRequest) -> InstallError:
    with pytest.raises(InstallError) as info:
        check_authorize_request(app, req)
    assert info.value.title == ERROR_TITLE
    return info.value


def test_valid_request_asks_oauth_required_and_optional() -> None:
    scope_request = check_authorize_request(APP, request())
    assert scope_request.required == ("oauth", "crm.objects.contacts.read")
    assert scope_request.optional == ("crm.objects.contacts.write", "automation")


def test_client_checked_before_everything_else() -> None:
    err = refused(None, request(client_id="nope", redirect_uri=None, scopes=None))
    assert err.kind == "unknown_client"
    assert err.message == (
        "Authorization failed because the app's client ID is not recognized. "
        "Please contact the app developer."
    )
    assert refused(APP, request(client_id=None)).kind == "missing_parameter"


def test_redirect_uri_checked_before_scopes() -> None:
    err = refused(APP, request(redirect_uri="http://localhost:3001/oauth-callback", scopes=None))
    assert err.kind == "redirect_uri_mismatch"
    assert err.message == (
        "Authorization failed as the redirect URL 'http://localhost:3001/oauth-callback' "
        "doesn't match the app's registered redirect URL. Please contact the app developer."
    )
    missing = refused(APP, request(redirect_uri=None))
    assert missing.kind == "missing_parameter"
    assert "'redirect_uri'" in missing.message


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost:3000/oauth-callback/",  # trailing slash
        "http://localhost:3000/oauth-callback?x=1",  # extra query
        "http://LOCALHOST:3000/oauth-callback",  # case
        "http://localhost/oauth-callback",  # port
        "https://localhost:3000/oauth-callback",  # scheme
        "https://www.example.com/auth-callback#frag",
    ],
)
def test_redirect_uri_must_match_exactly(uri: str) -> None:
    assert refused(APP, request(redirect_uri=uri)).kind == "redirect_uri_mismatch"


@pytest.mark.parametrize(
    "uri",
    [
        "http://127.0.0.1:3000/cb",
        "https://127.0.0.1/cb",
        "https://[::1]:3000/cb",
        "http://www.example.com/cb",
        "ftp://localhost/cb",
        "https://example.com/cb#frag",
        "https://user:pw@example.com/cb",
        "/relative",
    ],
)
def test_registered_but_forbidden_redirect_url(uri: str) -> None:
    app = AppRegistration(client_id="c", name="x", redirect_urls=(uri,), scopes=("oauth",))
    err = refused(app, request(client_id="c", redirect_uri=uri, scopes=(), optional_scopes=()))
    assert err.kind == "redirect_uri_not_allowed"
    with pytest.raises(InstallError):
        validate_redirect_url(uri)


@pytest.mark.parametrize(
    "uri", ["http://localhost:3000/cb", "https://example.com/cb?tenant=1", "https://a.b.c:8443/"]
)
def test_allowed_redirect_urls(uri: str) -> None:
    validate_redirect_url(uri)


def test_c8_required_scope_missing_is_insufficient() -> None:
    # Case C8: scope=automation only (automation is optional for the app).
    err = refused(APP, request(scopes=("automation",), optional_scopes=()))
    assert err.kind == "insufficient_scopes"
    assert err.message == (
        "Authorization failed because the provided scopes are insufficient. "
        "Please contact the app developer."
    )
    assert any("crm.objects.contacts.read" in line for line in err.details)


def test_c8_optional_scope_in_scope_is_mismatch() -> None:
    # Case C8: scope=crm.objects.contacts.read automation
    req = request(scopes=("crm.objects.contacts.read", "automation"), optional_scopes=())
    err = refused(APP, req)
    assert err.kind == "scope_mismatch"
    assert err.message == (
        "Authorization failed because there is a mismatch between the scopes in the install "
        "URL and the app's configured scopes. Please contact the app developer."
    )


def test_required_scope_in_optional_scope_is_insufficient() -> None:
    err = refused(APP, request(scopes=(), optional_scopes=("crm.objects.contacts.read",)))
    assert err.kind == "insufficient_scopes"


@pytest.mark.parametrize(
    ("scopes", "optional"),
    [
        (("crm.objects.contacts.read", "tickets"), ()),
        (("crm.objects.contacts.read",), ("tickets",)),
        (("crm.objects.contacts.read,automation",), ()),  # commas are not separators
    ],
)
def test_unconfigured_scope_is_mismatch(scopes: tuple[str, ...], optional: tuple[str, ...]) -> None:
    # The comma case names a required scope that is missing as such, so it is insufficient.
    err = refused(APP, request(scopes=scopes, optional_scopes=optional))
    assert err.kind in {"scope_mismatch", "insufficient_scopes"}
    if "," not in scopes[0]:
        assert err.kind == "scope_mismatch"
    else:
        assert err.kind == "insufficient_scopes"


def test_oauth_always_allowed() -> None:
    scope_request = check_authorize_request(
        APP, request(scopes=("oauth", "crm.objects.contacts.read"), optional_scopes=("oauth",))
    )
    assert scope_request.required == ("oauth", "crm.objects.contacts.read")
    assert scope_request.optional == ()


def test_missing_scope_parameter() -> None:
    err = refused(APP, request(scopes=None))
    assert err.kind == "missing_parameter"
    assert "'scope'" in err.message


@pytest.mark.parametrize(
    ("challenge", "method", "ok"),
    [
        ("a" * 43, "S256", True),
        ("a" * 43, "plain", True),
        ("a" * 43, None, True),
        ("a" * 43, "s256", False),
        ("a" * 43, "SHA1", False),
        ("a" * 42, "S256", False),
        ("a" * 129, "S256", False),
        ("a" * 42 + "=", "S256", False),
        ("a" * 43 + "\n", "S256", False),  # `$` with `match` let a final newline through
        ("a" * 43 + "\n", "plain", False),
        (None, "S256", False),
    ],
)
def test_pkce_parameters(challenge: str | None, method: str | None, ok: bool) -> None:
    req = request(code_challenge=challenge, code_challenge_method=method)
    if ok:
        check_authorize_request(APP, req)
    else:
        assert refused(APP, req).kind == "invalid_pkce"


def test_code_challenge_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 Appendix B
    assert code_challenge_matches(verifier, challenge, "S256")
    assert not code_challenge_matches(verifier, challenge, "plain")
    assert code_challenge_matches(verifier, verifier, "plain")
    assert code_challenge_matches(verifier, verifier, None)
    assert not code_challenge_matches(verifier + "x", challenge, "S256")
    assert not code_challenge_matches("short", "short", "plain")
    digest = hashlib.sha256(verifier.encode()).digest()
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


def test_install_grants_required_and_available_optional() -> None:
    grant = check_install(check_authorize_request(APP, request()), ACME)
    assert grant.scopes == (
        "oauth",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
        "automation",
    )
    assert grant.dropped == ()


def test_optional_scope_portal_lacks_is_dropped_silently() -> None:
    grant = check_install(check_authorize_request(APP, request()), GLOBEX)
    assert grant.scopes == ("oauth", "crm.objects.contacts.read", "crm.objects.contacts.write")
    assert grant.dropped == ("automation",)
    via_missing = PortalAccess(
        hub_id=1, hub_domain="x", may_install=True, missing_scopes=frozenset({"automation"})
    )
    assert check_install(check_authorize_request(APP, request()), via_missing).dropped == (
        "automation",
    )


def test_portal_lacking_required_product() -> None:
    app = AppRegistration(
        client_id=APP.client_id, name="x", redirect_urls=APP.redirect_urls, scopes=("automation",)
    )
    req = request(scopes=("automation",), optional_scopes=())
    scope_request = check_authorize_request(app, req)
    with pytest.raises(InstallError) as info:
        check_install(scope_request, GLOBEX)
    assert info.value.kind == "portal_lacks_product"
    assert info.value.message == (
        "This account doesn't have access to some HubSpot features that are required by this app."
    )
    assert info.value.status_code == 403


def test_user_without_role_may_not_install() -> None:
    viewer = PortalAccess(hub_id=1234567, hub_domain="acme.example.com", may_install=False)
    with pytest.raises(InstallError) as info:
        check_install(check_authorize_request(APP, request()), viewer)
    assert info.value.kind == "no_permission"
    assert info.value.message == (
        "You do not have the correct role to grant these permissions. "
        "Please contact your administrator."
    )


def test_no_portal_is_account_not_found() -> None:
    with pytest.raises(InstallError) as info:
        check_install(check_authorize_request(APP, request(account_id=42)), None)
    assert info.value.kind == "account_not_found"
    assert "42" in info.value.message


def test_parse_query_splits_scopes_and_ignores_response_type() -> None:
    req = parse_authorize_query(
        [
            ("client_id", "c"),
            ("redirect_uri", "http://localhost:3000/cb"),
            ("scope", "a  b a"),
            ("optional_scope", "c"),
            ("response_type", "code"),
            ("access_type", "offline"),
            ("state", ""),
        ],
        "1234567",
    )
    assert req.scopes == ("a", "b")
    assert req.optional_scopes == ("c",)
    assert req.state == ""
    assert req.account_id == 1234567
    assert parse_authorize_query([("client_id", "c")]).scopes is None


@pytest.mark.parametrize(
    ("pairs", "account"),
    [
        ([("client_id", "a"), ("client_id", "b")], None),
        ([("state", "x" * 5000)], None),
        ([], "12ab"),
        ([], "١٢٣"),  # non-ASCII digits
    ],
)
def test_parse_query_refuses_malformed(pairs: list[tuple[str, str]], account: str | None) -> None:
    with pytest.raises(InstallError) as info:
        parse_authorize_query(pairs, account)
    assert info.value.kind == "invalid_parameter"


def test_request_round_trips_through_dict() -> None:
    req = request(code_challenge="a" * 43, code_challenge_method="S256", account_id=5)
    assert AuthorizeRequest.from_dict(req.to_dict()) == req
    with pytest.raises(InstallError) as info:
        AuthorizeRequest.from_dict({"client_id": "x"})
    assert info.value.kind == "invalid_link"


@pytest.mark.parametrize(
    ("uri", "state", "expected_query"),
    [
        ("https://a.example/cb", "xyz", "code=CODE&state=xyz"),
        ("https://a.example/cb?tenant=7", "s", "tenant=7&code=CODE&state=s"),
        ("https://a.example/cb?", None, "code=CODE"),
        ("https://a.example/cb", "", "code=CODE&state="),
        ("https://a.example/cb", "a b&c=d/é", "code=CODE&state=a%20b%26c%3Dd%2F%C3%A9"),
    ],
)
def test_authorization_redirect(uri: str, state: str | None, expected_query: str) -> None:
    location = authorization_redirect(uri, "CODE", state)
    assert urlsplit(location).query == expected_query
    if state:
        assert parse_qs(urlsplit(location).query)["state"] == [state]


@pytest.mark.parametrize("state", ["+", "%20", "a+b%2Fc", "\u2603\U0001f600", "&&==", "#frag"])
def test_state_survives_any_characters(state: str) -> None:
    location = authorization_redirect("http://localhost:3000/oauth-callback", "c", state)
    query = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert query == {"code": ["c"], "state": [state]}


def test_scopes_described_in_words() -> None:
    assert describe_scope("crm.objects.contacts.read").text == (
        "View properties and other details about contacts"
    )
    assert describe_scope("crm.objects.contacts.write").text.startswith("Create, delete")
    assert describe_scope("automation").group == "Automation"
    assert describe_scope("crm.schemas.deals.read").text == "View the property settings of deals"
    assert describe_scope("made.up").text == "made.up"


def test_validators_refuse_a_trailing_newline() -> None:
    # Each shape check is a `fullmatch`: ``value + "\n"`` is refused like any other bad value.
    from hubspot_oauth.tokens import looks_like_hublet_token, new_refresh_token

    verifier = "a" * 43
    assert code_challenge_matches(verifier, verifier, "plain")
    assert not code_challenge_matches(verifier + "\n", verifier + "\n", "plain")
    assert not code_challenge_matches(verifier + "\n", verifier + "\n", None)
    assert describe_scope("crm.objects.contacts.read").group == "CRM"
    newline = describe_scope("crm.objects.contacts.read\n")
    assert (newline.group, newline.text) == ("Other", "crm.objects.contacts.read\n")
    token = new_refresh_token()
    assert looks_like_hublet_token(token)
    assert not looks_like_hublet_token(token + "\n")
