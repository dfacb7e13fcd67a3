"""One table of scenarios, run through OAuthClient and AsyncOAuthClient on every token API
version (v1, v3, 2026-03), against the local HubSpot in-process (the `hubspot` fixture of
hubspot_oauth.testing: `create_app(ServerSettings(...))` behind an httpx transport).

Each scenario is a function ``(hubspot, run, version)``; `run` is the client under test
whose methods are called the same way whether it is sync or async."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx
import pytest

from hubspot_oauth import (
    InvalidAuthorizationCodeError,
    InvalidClientError,
    ReauthorizationRequiredError,
    RetryableError,
    ServerError,
    StateMismatchError,
    StateStore,
    Token,
)
from hubspot_oauth.client.protocol import TokenInfo, code_challenge_s256, new_code_verifier
from hubspot_oauth.client.retry import RetryPolicy

USER = "admin@example.com"
PORTAL = 1234567


class Run:
    """The client under test; async methods are driven to completion, so every scenario
    reads the same for both clients."""

    def __init__(self, client: Any, kind: str) -> None:
        self.client, self.kind = client, kind

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if self.kind == "sync" or name == "authorization_url":
            return method
        return lambda *a, **kw: anyio.run(lambda: method(*a, **kw))


def make_run(hubspot: Any, kind: str, version: str, **options: Any) -> Run:
    options.setdefault("endpoints", hubspot.endpoints.with_version(version))
    options.setdefault("retry", RetryPolicy(attempts=3, backoff=0.5, jitter=False))
    factory = hubspot.oauth_client if kind == "sync" else hubspot.async_oauth_client
    return Run(factory(**options), kind)


# ----------------------------------------------------------------------- scenarios


def exchange_code(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize(user=USER, portal=PORTAL))
    assert isinstance(token, Token)
    assert token.hub_id == PORTAL and token.expires_in == 1800
    assert token.access_token.startswith("C") and token.refresh_token.startswith("na1-")
    assert set(hubspot.scopes) | {"oauth"} <= set(token.scopes)
    assert abs((token.expires_at - hubspot.now()).total_seconds() - 1800) < 5
    assert hubspot.stats()["token"]["authorization_code"]["ok"] == 1


def refresh_keeps_the_refresh_token(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    hubspot.advance(1700)
    fresh = run.refresh(token.refresh_token)
    assert fresh.access_token != token.access_token
    assert fresh.refresh_token == token.refresh_token  # HubSpot's default: no rotation
    assert fresh.expires_at > token.expires_at
    assert hubspot.refresh_count() == 1


def introspect_access_and_refresh_tokens(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize(user=USER, portal=PORTAL))
    info = run.introspect(token.access_token)
    assert isinstance(info, TokenInfo) and info.active
    assert (info.hub_id, info.user, info.hub_domain, info.app_id) == (
        PORTAL,
        USER,
        "acme.example.com",
        hubspot.app_id,
    )
    assert info.token_use == "access_token" and 1700 <= info.expires_in <= 1800
    assert set(hubspot.scopes) <= set(info.scopes)
    assert token.access_token not in repr(info)
    info = run.introspect(token.refresh_token, token_type_hint="refresh_token")
    assert info.active and info.token_use == "refresh_token" and info.hub_id == PORTAL


def introspect_an_expired_access_token(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    hubspot.advance(1801)
    assert run.introspect(token.access_token).active is False


def revoke_ends_the_refresh_token(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    assert run.revoke(token.refresh_token) is None
    with pytest.raises(ReauthorizationRequiredError):
        run.refresh(token.refresh_token)


def reused_code_is_rejected(hubspot, run, version):
    code = hubspot.authorize()
    run.exchange_code(code)
    with pytest.raises(InvalidAuthorizationCodeError):
        run.exchange_code(code)


def expired_code_is_rejected(hubspot, run, version):
    code = hubspot.authorize()
    hubspot.advance(3600)
    with pytest.raises(InvalidAuthorizationCodeError) as info:
        run.exchange_code(code)
    assert info.value.status in ("EXPIRED_AUTH_CODE", "BAD_AUTH_CODE")


def pkce_verifier_is_checked(hubspot, run, version):
    verifier = new_code_verifier()
    challenge = code_challenge_s256(verifier)
    code = hubspot.authorize(code_challenge=challenge, code_challenge_method="S256")
    with pytest.raises(InvalidAuthorizationCodeError):
        run.exchange_code(code, code_verifier=new_code_verifier())
    code = hubspot.authorize(code_challenge=challenge, code_challenge_method="S256")
    assert run.exchange_code(code, code_verifier=verifier).hub_id == PORTAL


def c3_refresh_token_of_another_app(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    _app_id, client_id, client_secret = hubspot.server.create_app_registration(
        name="Second app",
        redirect_urls=[hubspot.redirect_uri],
        scopes=list(hubspot.scopes),
        optional_scopes=[],
    )
    other = make_run(
        hubspot,
        run.kind,
        version,
        client_id=client_id,
        client_secret=client_secret,
        optional_scopes=[],
    )
    with pytest.raises(ReauthorizationRequiredError) as info:
        other.refresh(token.refresh_token)
    assert info.value.status == "BAD_REFRESH_TOKEN"
    assert "not issued to this client" in str(info.value)
    assert token.refresh_token not in str(info.value)


def c4_access_token_as_refresh_token(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    with pytest.raises(ReauthorizationRequiredError) as info:
        run.refresh(token.access_token)
    assert info.value.status == "BAD_REFRESH_TOKEN" and "access token" in str(info.value)
    assert token.access_token not in str(info.value)
    assert run.refresh(token.refresh_token).hub_id == PORTAL  # nothing changed


def uninstall_needs_reauthorization(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize(portal=PORTAL))
    hubspot.uninstall(portal=PORTAL)
    with pytest.raises(ReauthorizationRequiredError):
        run.refresh(token.refresh_token)


def wrong_client_secret(hubspot, run, version):
    code = hubspot.authorize()
    bad = make_run(hubspot, run.kind, version, client_secret="not-the-secret")
    with pytest.raises(InvalidClientError):
        bad.exchange_code(code)


def c11_outage_page_then_success(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    hubspot.fail_next("token", "html_502")  # a proxy's HTML page, then HubSpot's own 500
    hubspot.fail_next("token", "server_error")
    fresh = run.refresh(token.refresh_token)
    assert fresh.access_token != token.access_token
    assert hubspot.refresh_count("ok") == 1


def c11_outage_page_is_a_retryable_error_with_an_excerpt(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    once = make_run(hubspot, run.kind, version, retry=RetryPolicy(attempts=1))
    hubspot.fail_next("token", "html_502")
    with pytest.raises(ServerError) as info:
        once.refresh(token.refresh_token)
    error = info.value
    assert isinstance(error, RetryableError) and error.status_code == 502
    assert error.body_excerpt and len(error.body_excerpt) <= 200
    assert token.refresh_token not in str(error) and token.refresh_token not in error.body_excerpt
    assert once.refresh(token.refresh_token).hub_id == PORTAL  # the next attempt succeeds


def rate_limited_refresh_is_retried(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    hubspot.fail_next("token", "rate_limit")
    assert run.refresh(token.refresh_token).hub_id == PORTAL
    assert hubspot.refresh_count("ok") == 1


def invalid_grant_is_never_retried(hubspot, run, version):
    token = run.exchange_code(hubspot.authorize())
    hubspot.fail_next("token", "invalid_grant")
    with pytest.raises(ReauthorizationRequiredError):
        run.refresh(token.refresh_token)
    assert hubspot.refresh_count("ok") == 0
    assert run.refresh(token.refresh_token).hub_id == PORTAL  # the fault was one answer


def c8_authorization_url_is_accepted_by_the_authorize_page(hubspot, run, version):
    """URL → (auto-)approve → redirect with code and state → exchange: the client's URL
    (required scope in `scope`, optional ones only in `optional_scope`) installs."""
    url = run.authorization_url(state="tab-1")
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == [" ".join(hubspot.scopes)]
    assert query["optional_scope"] == [" ".join(hubspot.optional_scopes)]
    with hubspot.http_client() as browser:
        answer = browser.get(url.replace(hubspot.base_url, ""))
    assert answer.status_code in (302, 303), answer.text[:300]
    location = urlsplit(answer.headers["location"])
    back = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == hubspot.redirect_uri
    assert back["state"] == ["tab-1"]
    assert run.exchange_code(back["code"][0]).hub_id == PORTAL


SCENARIOS = [
    exchange_code,
    refresh_keeps_the_refresh_token,
    introspect_access_and_refresh_tokens,
    introspect_an_expired_access_token,
    revoke_ends_the_refresh_token,
    reused_code_is_rejected,
    expired_code_is_rejected,
    pkce_verifier_is_checked,
    c3_refresh_token_of_another_app,
    c4_access_token_as_refresh_token,
    uninstall_needs_reauthorization,
    wrong_client_secret,
    c11_outage_page_then_success,
    c11_outage_page_is_a_retryable_error_with_an_excerpt,
    rate_limited_refresh_is_retried,
    invalid_grant_is_never_retried,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("version", ["v1", "v3", "2026-03"])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_scenario(hubspot, kind, version, scenario):
    scenario(hubspot, make_run(hubspot, kind, version), version)


@pytest.mark.hubspot(auto_approve=USER)
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_authorization_url_round_trip(hubspot, kind):
    c8_authorization_url_is_accepted_by_the_authorize_page(
        hubspot, make_run(hubspot, kind, "v3"), "v3"
    )


@pytest.mark.hubspot(auto_approve=USER)
@pytest.mark.parametrize("version", ["v1", "v3", "2026-03"])
def test_the_guides_five_steps_with_state_and_pkce(hubspot, version, tmp_path):
    """issue state (+ PKCE verifier) → authorization URL → approve → callback → consume the
    state once → exchange with the verifier kept in the state."""
    run = make_run(hubspot, "sync", version)
    states = StateStore(f"sqlite:///{tmp_path / 'states.db'}")
    verifier = new_code_verifier()
    nonce = states.issue({"user": 42, "return_to": "/settings"}, code_verifier=verifier)
    url = run.authorization_url(state=nonce, code_verifier=verifier)
    with hubspot.http_client() as browser:
        answer = browser.get(url.replace(hubspot.base_url, ""))
    assert answer.status_code in (302, 303), answer.text[:300]
    callback = parse_qs(urlsplit(answer.headers["location"]).query)
    state = states.consume(callback["state"][0])
    assert state == {"user": 42, "return_to": "/settings"}
    token = run.exchange_code(callback["code"][0], code_verifier=state.code_verifier)
    assert token.hub_id == PORTAL
    with pytest.raises(StateMismatchError):  # a replayed callback
        states.consume(callback["state"][0])
    states.close()


def test_the_same_client_works_over_a_real_socket(hubspot_server):
    """No transport: the client reaches the local HubSpot on a loopback port as it would
    reach api.hubapi.com."""
    hubspot = hubspot_server
    assert hubspot.base_url.startswith("http://127.0.0.1:")
    client = hubspot.oauth_client()
    token = client.exchange_code(hubspot.authorize())
    with httpx.Client() as plain:  # the token works on the sample API
        answer = plain.get(
            f"{hubspot.base_url}/crm/v3/objects/contacts",
            headers={"Authorization": f"Bearer {token.access_token}"},
        )
    assert answer.status_code == 200
    assert client.refresh(token.refresh_token).hub_id == PORTAL
    assert client.introspect(token.access_token).active
    client.revoke(token.refresh_token)
    with pytest.raises(ReauthorizationRequiredError):
        client.refresh(token.refresh_token)
