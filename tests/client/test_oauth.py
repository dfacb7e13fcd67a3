"""OAuthClient and AsyncOAuthClient over a scripted HubSpot (httpx.MockTransport).

The MockTransport stands in for the network edge only, to script answers the real local
HubSpot gives rarely (outage pages, timeouts, 429 with Retry-After); the flows against the
local HubSpot itself are in test_scenarios.py. Every test runs on both clients."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest

from hubspot_oauth import (
    AsyncOAuthClient,
    ClientConfig,
    ConfigurationError,
    Endpoints,
    InvalidAuthorizationCodeError,
    NetworkError,
    OAuthClient,
    RateLimitError,
    ReauthorizationRequiredError,
    ServerError,
    Token,
)
from hubspot_oauth.client.protocol import TokenInfo
from hubspot_oauth.client.retry import RetryPolicy

CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
REDIRECT = "http://localhost:3000/oauth-callback"
REFRESH = "na1-8649-43d7-456c-a15c-305ec7f11101"
ACCESS = "CJSP5qf1KhICAQEYs-gDIIGOBii1hQIyGQAf3xBKmlwHjX7OIpuIFEavB2-qYAGQsF4"

Answer = httpx.Response | Exception


def token_json(access: str = ACCESS, refresh: str | None = REFRESH, expires_in: int = 1800):
    data: dict[str, Any] = {
        "token_type": "bearer",
        "access_token": access,
        "expires_in": expires_in,
        "hub_id": 1234567,
        "scopes": ["oauth", "crm.objects.contacts.read"],
    }
    if refresh:
        data["refresh_token"] = refresh
    return httpx.Response(200, json=data)


class ScriptedHubSpot:
    """Answers requests from a script, records what it was sent."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def form(self, index: int = -1) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.requests[index].content.decode()).items()}


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """make(script, **options) -> Runner: the same calls on OAuthClient or AsyncOAuthClient."""
    kind = request.param

    def factory(script: ScriptedHubSpot, **options: Any) -> Runner:
        options.setdefault("client_id", CLIENT_ID)
        options.setdefault("client_secret", SECRET)
        options.setdefault("redirect_uri", REDIRECT)
        options.setdefault("scopes", ["crm.objects.contacts.read"])
        options.setdefault("optional_scopes", ["automation"])
        options.setdefault("retry", RetryPolicy(attempts=3, backoff=0.25, jitter=False))
        transport = httpx.MockTransport(script)
        cls = OAuthClient if kind == "sync" else AsyncOAuthClient
        return Runner(cls(transport=transport, **options), kind)

    return factory


class Runner:
    def __init__(self, client: OAuthClient | AsyncOAuthClient, kind: str) -> None:
        self.client, self.kind = client, kind
        self.sleeps: list[float] = []
        if kind == "sync":
            client._sleep = self.sleeps.append
        else:

            async def record(seconds: float) -> None:
                self.sleeps.append(seconds)

            client._sleep = record

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.client, name)
        if self.kind == "sync":
            return method
        return lambda *a, **kw: anyio.run(lambda: method(*a, **kw))


@pytest.mark.parametrize("version", ["v1", "v3", "2026-03"])
def test_exchange_code_posts_the_form_and_returns_a_token(make, version):
    script = ScriptedHubSpot(token_json(expires_in=1234))
    run = make(script, endpoints=Endpoints.local("http://hubspot.test", api_version=version))
    token = run.exchange_code("na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee", code_verifier="v" * 43)
    assert isinstance(token, Token) and token.access_token == ACCESS
    assert 1230 <= token.seconds_left() <= 1234
    request = script.requests[0]
    assert (request.method, str(request.url)) == (
        "POST",
        f"http://hubspot.test/oauth/{version}/token",
    )
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert script.form() == {
        "grant_type": "authorization_code",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        "code": "na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "code_verifier": "v" * 43,
    }
    assert "authorization" not in request.headers and SECRET not in str(request.url)


def test_refresh_retries_an_html_outage_then_succeeds(make):
    """Case C11: 502 with a proxy's HTML page, then the next attempt succeeds."""
    script = ScriptedHubSpot(
        httpx.Response(502, html="<html><h1>502 Bad Gateway</h1></html>"),
        token_json(access="C" + "n" * 60),
    )
    run = make(script)
    token = run.refresh(REFRESH)
    assert token.access_token == "C" + "n" * 60 and token.refresh_token == REFRESH
    assert len(script.requests) == 2 and run.sleeps == [0.25]


def test_refresh_gives_up_after_the_bounded_attempts(make):
    script = ScriptedHubSpot(httpx.Response(503, text="Service Unavailable"))
    run = make(script)
    with pytest.raises(ServerError) as info:
        run.refresh(REFRESH)
    assert info.value.status_code == 503 and "Service Unavailable" in info.value.body_excerpt
    assert len(script.requests) == 3 and run.sleeps == [0.25, 0.5]


def test_refresh_honours_retry_after_on_429(make):
    script = ScriptedHubSpot(
        httpx.Response(
            429,
            json={
                "status": "error",
                "category": "RATE_LIMITS",
                "message": "You have reached your secondly limit.",
            },
            headers={"Retry-After": "2"},
        ),
        token_json(),
    )
    run = make(script)
    run.refresh(REFRESH)
    assert run.sleeps == [2.0] and len(script.requests) == 2


def test_a_retry_after_beyond_the_budget_is_raised_at_once(make):
    script = ScriptedHubSpot(httpx.Response(429, headers={"Retry-After": "120"}, text="slow down"))
    run = make(script, retry=RetryPolicy(max_total_wait=30))
    with pytest.raises(RateLimitError) as info:
        run.refresh(REFRESH)
    assert info.value.retry_after == 120.0
    assert len(script.requests) == 1 and run.sleeps == []


def test_refresh_never_retries_invalid_grant(make):
    script = ScriptedHubSpot(
        httpx.Response(
            400,
            json={
                "status": "BAD_REFRESH_TOKEN",
                "error": "invalid_grant",
                "message": "refresh token is invalid, expired or revoked",
            },
        )
    )
    run = make(script)
    with pytest.raises(ReauthorizationRequiredError, match="invalid, expired or revoked"):
        run.refresh(REFRESH)
    assert len(script.requests) == 1 and run.sleeps == []


def test_c4_access_token_passed_as_refresh_token_says_so(make):
    script = ScriptedHubSpot(
        httpx.Response(
            400,
            json={
                "status": "BAD_REFRESH_TOKEN",
                "error": "invalid_grant",
                "message": "missing or invalid refresh token",
            },
        )
    )
    with pytest.raises(ReauthorizationRequiredError) as info:
        make(script).refresh(ACCESS)
    assert "looks like an access token" in str(info.value)
    assert ACCESS not in str(info.value)


def test_secrets_a_server_echoes_are_in_no_error_attribute(make):
    """errors.py promises no attribute holds a token or secret: a server (or proxy) that
    echoes them into `context`/`errors` must not leak them there (adversarial review)."""
    body = {
        "status": "BAD_REFRESH_TOKEN", "message": "bad", "category": "VALIDATION_ERROR",
        "correlationId": REFRESH, "error": "invalid_grant", "error_description": "d " + REFRESH,
        "subCategory": REFRESH,
        "errors": [{"message": f"token {REFRESH} and secret {SECRET}",
                    "context": {"token": [REFRESH], REFRESH: ["key"]}, "in": {"deep": [SECRET]},
                    "code": 7}],
        "context": {"refresh_token": [REFRESH], "secret": [SECRET], "plain": ["kept"]},
    }
    script = ScriptedHubSpot(httpx.Response(400, json=body))
    with pytest.raises(ReauthorizationRequiredError) as info:
        make(script).refresh(REFRESH)
    error = info.value
    for name, value in vars(error).items():
        shown = repr(value)
        assert REFRESH not in shown and SECRET not in shown, name
    assert REFRESH not in str(error) and SECRET not in str(error)
    # What is not secret is kept, and the shapes stay as documented.
    assert error.context["plain"] == ["kept"]
    assert error.context["refresh_token"] == ["[redacted]"]
    assert error.errors[0]["code"] == 7 and error.errors[0]["context"]["token"] == ["[redacted]"]


@pytest.mark.parametrize(
    "failure",
    [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("Server disconnected"),
     httpx.ReadError("connection reset")],
)
def test_a_refresh_that_may_have_reached_hubspot_is_not_sent_again(make, failure):
    """A read timeout or a connection dropped after sending: HubSpot may have acted on the
    refresh. Resending the same refresh token to a server with reuse detection (RFC 9700
    §4.14.2) revokes the whole grant, so the retryable error goes to the caller."""
    script = ScriptedHubSpot(failure, token_json())
    run = make(script)
    with pytest.raises(NetworkError) as info:
        run.refresh(REFRESH)
    assert len(script.requests) == 1 and run.sleeps == []
    assert REFRESH not in str(info.value)
    # The same failures of idempotent calls are still retried …
    script = ScriptedHubSpot(failure, httpx.Response(200, json={
        "active": True, "token_use": "access_token", "hub_id": 1, "expires_in": 60}))
    assert make(script).introspect(ACCESS).active
    assert len(script.requests) == 2
    # … and so is a refresh when the policy says refresh tokens never rotate.
    script = ScriptedHubSpot(failure, token_json())
    policy = RetryPolicy(attempts=3, backoff=0.25, jitter=False, retry_unanswered_refresh=True)
    assert make(script, retry=policy).refresh(REFRESH).access_token == ACCESS
    assert len(script.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("connection refused"), httpx.ConnectTimeout("timed out"),
     httpx.PoolTimeout("no connection")],
)
def test_network_failures_are_network_errors_and_retried(make, failure):
    script = ScriptedHubSpot(failure, token_json())
    run = make(script)
    assert run.refresh(REFRESH).access_token == ACCESS
    assert len(script.requests) == 2
    script = ScriptedHubSpot(failure)
    with pytest.raises(NetworkError) as info:
        make(script).refresh(REFRESH)
    assert "/oauth/v3/token" in str(info.value) and REFRESH not in str(info.value)


def test_exchange_code_is_not_retried(make):
    """A code is single use: a lost answer cannot be replayed (RFC 6749 §4.1.2)."""
    script = ScriptedHubSpot(httpx.Response(502, text="bad gateway"), token_json())
    with pytest.raises(ServerError):
        make(script).exchange_code("na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    assert len(script.requests) == 1
    script = ScriptedHubSpot(
        httpx.Response(
            400,
            json={
                "status": "BAD_AUTH_CODE",
                "error": "invalid_grant",
                "message": "missing or unknown auth code",
            },
        )
    )
    with pytest.raises(InvalidAuthorizationCodeError):
        make(script).exchange_code("na1-aaaa-bbbb-cccc-dddd-eeeeeeeeeeee")


@pytest.mark.parametrize("version", ["v1", "v3", "2026-03"])
def test_introspect_and_revoke_per_api_version(make, version):
    info_body = {
        "token": ACCESS,
        "user": "admin@example.com",
        "hub_domain": "acme.example.com",
        "scopes": ["oauth"],
        "hub_id": 1234567,
        "app_id": 1,
        "expires_in": 1799,
        "user_id": 42,
        "token_type": "access",
    }
    if version != "v1":
        info_body.update(active=True, token_use="access_token")
    script = ScriptedHubSpot(httpx.Response(200, json=info_body))
    run = make(script, endpoints=Endpoints.local("http://hubspot.test", api_version=version))
    info = run.introspect(ACCESS)
    assert isinstance(info, TokenInfo) and info.active and info.hub_id == 1234567
    assert info.user == "admin@example.com" and info.expires_in == 1799
    request = script.requests[0]
    if version == "v1":
        assert request.method == "GET"
        assert request.url.path == f"/oauth/v1/access-tokens/{ACCESS}"
    else:
        assert (request.method, request.url.path) == ("POST", f"/oauth/{version}/token/introspect")
        assert script.form() == {
            "token": ACCESS,
            "token_type_hint": "access_token",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
        }
    script.answers = [httpx.Response(204)]
    assert run.revoke(REFRESH) is None
    request = script.requests[-1]
    if version == "v1":
        assert (request.method, request.url.path) == (
            "DELETE",
            f"/oauth/v1/refresh-tokens/{REFRESH}",
        )
    else:
        assert (request.method, request.url.path) == ("POST", f"/oauth/{version}/token/revoke")
        assert script.form()["token"] == REFRESH


def test_authorization_url_uses_the_clients_scopes_and_pkce(make):
    run = make(ScriptedHubSpot(token_json()))
    url = run.client.authorization_url(
        state="nonce-1", pkce="dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    )
    assert "scope=crm.objects.contacts.read&optional_scope=automation&state=nonce-1" in url
    assert "code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM" in url
    # Asking for the client's optional scope as required is the C8 mistake: an error,
    # never a URL that silently moves it into `scope` (HubSpot's scope-mismatch page).
    with pytest.raises(ConfigurationError, match="automation.*must not be in `scope`"):
        run.client.authorization_url(scopes=["crm.objects.contacts.read", "automation"])
    with pytest.raises(ConfigurationError, match="automation"):
        run.client.authorization_url(scopes=["automation"], optional_scopes=["automation"])
    # Saying what is optional for this URL as well resolves it.
    url = run.client.authorization_url(
        scopes=["crm.objects.contacts.read", "automation"], optional_scopes=[]
    )
    assert url.endswith("&scope=crm.objects.contacts.read%20automation")
    assert "optional_scope" not in url


@pytest.mark.parametrize(
    "options, message",
    [
        ({"client_secret": ""}, "client_secret is missing"),
        ({"client_id": " "}, "client_id is missing"),
        ({"redirect_uri": "localhost:3000/cb"}, "http"),
        ({"redirect_uri": "ftp://example.com/cb"}, "http"),
        ({"redirect_uri": "https://example.com/cb#frag"}, "fragment"),
        ({"scopes": []}, "scopes is empty"),
        ({"scopes": ["a", "b"], "optional_scopes": ["b"]}, "both required and optional"),
        ({"timeout": 0}, "timeout"),
    ],
)
def test_bad_arguments_are_configuration_errors(options, message):
    base = {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uri": REDIRECT}
    for cls in (OAuthClient, AsyncOAuthClient):
        with pytest.raises(ConfigurationError, match=message):
            cls(**{**base, **options})


@pytest.mark.parametrize("cls", [OAuthClient, AsyncOAuthClient])
def test_a_scope_configured_as_both_required_and_optional_is_one_error_everywhere(cls):
    """Case C8's own kind (adversarial review): the environment, flags and from_config
    once moved an optional scope into `scope`; the constructor refused the same input."""
    env = {
        "HUBSPOT_CLIENT_ID": CLIENT_ID,
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "HUBSPOT_SCOPES": "crm.objects.contacts.read automation",
        "HUBSPOT_OPTIONAL_SCOPES": "automation",
    }
    message = r"automation.*both required and optional.*must not be in `scope`"
    with pytest.raises(ConfigurationError, match=message):
        cls.from_env(env)
    with pytest.raises(ConfigurationError, match=message):
        cls.from_env({**env, "HUBSPOT_SCOPES": "a", "HUBSPOT_OPTIONAL_SCOPES": "b"},
                     scopes="x automation", optional_scopes="automation")
    with pytest.raises(ConfigurationError, match=message):
        cls.from_config(ClientConfig.from_env(env))
    with pytest.raises(ConfigurationError, match=message):
        cls(client_id=CLIENT_ID, client_secret=SECRET,
            scopes=["crm.objects.contacts.read", "automation"], optional_scopes="automation")
    # The default required scope named as optional is the same mistake.
    with pytest.raises(ConfigurationError, match="crm.objects.contacts.read"):
        cls.from_env({**env, "HUBSPOT_SCOPES": "",
                      "HUBSPOT_OPTIONAL_SCOPES": "crm.objects.contacts.read"})


def test_async_transport_given_to_the_sync_client_is_a_clear_error():
    with pytest.raises(ConfigurationError, match="AsyncOAuthClient"):
        OAuthClient(
            client_id=CLIENT_ID,
            client_secret=SECRET,
            transport=httpx.ASGITransport(app=lambda *a: None),
        )


def test_repr_never_shows_the_secret():
    client = OAuthClient(client_id=CLIENT_ID, client_secret=SECRET)
    assert SECRET not in repr(client) and CLIENT_ID in repr(client)
    assert "api.hubapi.com" in repr(client)  # production by default
    client.close()


def test_from_env_and_from_config():
    env = {
        "HUBSPOT_CLIENT_ID": CLIENT_ID,
        "HUBSPOT_CLIENT_SECRET": SECRET,
        "HUBSPOT_SCOPES": "crm.objects.contacts.read, crm.objects.contacts.write",
        "HUBSPOT_OPTIONAL_SCOPES": "automation",
        "HUBSPOT_BASE_URL": "http://localhost:8765",
        "HUBSPOT_API_VERSION": "2026-03",
    }
    with OAuthClient.from_env(env) as client:
        assert client.scopes == ("crm.objects.contacts.read", "crm.objects.contacts.write")
        assert client.optional_scopes == ("automation",)
        assert client.endpoints == Endpoints.local("http://localhost:8765", "2026-03")
        assert client.redirect_uri == "http://localhost:3000/oauth-callback"
    client = AsyncOAuthClient.from_config(ClientConfig.from_env(env), timeout=3.0)
    assert client.timeout == 3.0 and client.endpoints.api_version == "2026-03"
    with pytest.raises(ConfigurationError, match="HUBSPOT_CLIENT_SECRET"):
        OAuthClient.from_env({"HUBSPOT_CLIENT_ID": CLIENT_ID})


def test_v1_token_urls_are_masked_in_httpx_logs(caplog):
    script = ScriptedHubSpot(httpx.Response(200, json={"token": ACCESS, "hub_id": 1}))
    client = OAuthClient(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        endpoints=Endpoints(api_version="v1"),
        transport=httpx.MockTransport(script),
    )
    with caplog.at_level(logging.DEBUG):
        client.introspect(ACCESS)
        client.revoke(REFRESH)
    assert "access-tokens/[redacted]" in caplog.text
    assert ACCESS not in caplog.text and REFRESH not in caplog.text


def test_a_caller_supplied_http_client_is_used_and_left_open():
    script = ScriptedHubSpot(token_json())
    http = httpx.Client(transport=httpx.MockTransport(script))
    with OAuthClient(client_id=CLIENT_ID, client_secret=SECRET, http_client=http) as client:
        client.refresh(REFRESH)
    assert not http.is_closed and len(script.requests) == 1
    http.close()


def test_token_endpoint_answers_are_json_bodies():
    """The client asks for JSON; HubSpot's answers are parsed whatever the content type."""
    script = ScriptedHubSpot(
        httpx.Response(
            200,
            content=json.dumps(
                {"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 60}
            ).encode(),
        )
    )
    with OAuthClient(
        client_id=CLIENT_ID, client_secret=SECRET, transport=httpx.MockTransport(script)
    ) as client:
        assert client.refresh(REFRESH).expires_in == 60
    assert script.requests[0].headers["accept"] == "application/json"


def test_nothing_listening_is_a_network_error_after_bounded_tries(unused_port):
    """A real refused connection on loopback (no mock): NetworkError, tried 3 times."""
    client = OAuthClient(
        client_id=CLIENT_ID,
        client_secret=SECRET,
        endpoints=Endpoints.local(f"http://127.0.0.1:{unused_port}"),
        retry=RetryPolicy(attempts=3, backoff=0.01, jitter=False),
    )
    waits: list[float] = []
    client._sleep = waits.append
    with pytest.raises(NetworkError) as info:
        client.refresh(REFRESH)
    assert waits == [0.01, 0.02]
    assert f"127.0.0.1:{unused_port}/oauth/v3/token" in str(info.value)
    assert REFRESH not in str(info.value) and SECRET not in str(info.value)
    client.close()
