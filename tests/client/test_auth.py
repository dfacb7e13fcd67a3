"""HubSpotAuth on scripted API answers: bearer header, one refresh on EXPIRED_AUTHENTICATION,
no refresh on other 401s, never a loop; sync and async. (Against the local HubSpot: see
test_auth_server.py.)"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx
import pytest

from hubspot_oauth import ConfigurationError, HubSpotAuth, ReauthorizationRequiredError

OLD = "C" + "o" * 60
NEW = "C" + "n" * 60
EXPIRED = {
    "status": "error",
    "message": "The OAuth token used to make this call expired 0 second(s) ago.",
    "correlationId": "c1",
    "category": "EXPIRED_AUTHENTICATION",
}
INVALID = {
    "message": "Authentication credentials not found.",
    "correlationId": "c2",
    "category": "INVALID_AUTHENTICATION",
}


class Api:
    """A bearer-protected endpoint: `valid` tokens get 200, others the scripted 401 body."""

    def __init__(self, valid: set[str], rejection: dict[str, Any] = EXPIRED) -> None:
        self.valid = valid
        self.rejection = rejection
        self.seen: list[tuple[str | None, bytes]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("authorization")
        self.seen.append((header, request.content))
        token = header.removeprefix("Bearer ") if header else None
        if token in self.valid:
            return httpx.Response(200, json={"results": []})
        return httpx.Response(401, json=self.rejection)


class Provider:
    """The token provider protocol of auth.py, counting its calls."""

    def __init__(self, current: str = OLD, fresh: str = NEW) -> None:
        self.current, self.fresh = current, fresh
        self.refreshed_with: list[str] = []
        self.threads: set[str] = set()

    def access_token(self) -> str:
        self.threads.add(threading.current_thread().name)
        return self.current

    def refresh(self, rejected: str) -> str:
        self.refreshed_with.append(rejected)
        if rejected == self.current:
            self.current = self.fresh
        return self.current


def send(kind: str, auth: httpx.Auth, api: Api, method: str = "GET", **kw: Any) -> httpx.Response:
    url = "http://hubspot.test/crm/v3/objects/contacts"
    if kind == "sync":
        with httpx.Client(transport=httpx.MockTransport(api), auth=auth) as client:
            return client.request(method, url, **kw)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(api), auth=auth) as client:
            return await client.request(method, url, **kw)

    return anyio.run(go)


kinds = pytest.mark.parametrize("kind", ["sync", "async"])


@kinds
def test_bearer_header_and_no_refresh_while_valid(kind):
    provider, api = Provider(), Api({OLD})
    response = send(kind, HubSpotAuth(provider.access_token, provider.refresh), api)
    assert response.status_code == 200
    assert api.seen == [(f"Bearer {OLD}", b"")]
    assert provider.refreshed_with == []


@kinds
def test_expired_authentication_refreshes_once_and_retries_once(kind):
    provider, api = Provider(), Api({NEW})
    auth = HubSpotAuth(provider.access_token, provider.refresh)
    response = send(kind, auth, api, "POST", json={"properties": {"email": "a@b.c"}})
    assert response.status_code == 200
    assert provider.refreshed_with == [OLD] and auth.refreshes == 1
    assert [h for h, _ in api.seen] == [f"Bearer {OLD}", f"Bearer {NEW}"]
    assert api.seen[0][1] == api.seen[1][1] == b'{"properties":{"email":"a@b.c"}}'


@kinds
def test_still_expired_after_the_refresh_is_returned_not_looped(kind):
    provider, api = Provider(), Api(set())  # nothing is ever accepted
    response = send(kind, HubSpotAuth(provider.access_token, provider.refresh), api)
    assert response.status_code == 401
    assert len(api.seen) == 2 and provider.refreshed_with == [OLD]


@kinds
def test_invalid_authentication_never_refreshes(kind):
    provider, api = Provider(), Api({NEW}, rejection=INVALID)
    response = send(kind, HubSpotAuth(provider.access_token, provider.refresh), api)
    assert response.status_code == 401
    assert response.json()["category"] == "INVALID_AUTHENTICATION"
    assert len(api.seen) == 1 and provider.refreshed_with == []


@kinds
def test_a_401_without_json_never_refreshes(kind):
    provider = Provider()

    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, html="<h1>Unauthorized</h1>")

    response = send(kind, HubSpotAuth(provider.access_token, provider.refresh), html)  # type: ignore[arg-type]
    assert response.status_code == 401 and provider.refreshed_with == []


@kinds
def test_refresh_that_returns_the_rejected_token_is_not_retried(kind):
    provider, api = Provider(fresh=OLD), Api(set())
    response = send(kind, HubSpotAuth(provider.access_token, provider.refresh), api)
    assert response.status_code == 401 and len(api.seen) == 1


@kinds
def test_reauthorization_error_from_the_provider_reaches_the_caller(kind):
    def refresh(rejected: str) -> str:
        raise ReauthorizationRequiredError(
            "app uninstalled", status_code=400, status="BAD_REFRESH_TOKEN"
        )

    with pytest.raises(ReauthorizationRequiredError, match="uninstalled"):
        send(kind, HubSpotAuth(lambda: OLD, refresh), Api({NEW}))


@kinds
def test_without_a_refresh_callable_the_401_is_returned(kind):
    api = Api({NEW})
    assert send(kind, HubSpotAuth(OLD), api).status_code == 401
    assert len(api.seen) == 1


def test_async_flow_runs_plain_providers_in_a_worker_thread_and_accepts_async_ones():
    provider, api = Provider(), Api({NEW})
    send("async", HubSpotAuth(provider.access_token, provider.refresh), api)
    assert threading.main_thread().name not in provider.threads

    calls: list[str] = []

    async def get() -> str:
        calls.append("get")
        return OLD

    async def refresh(rejected: str) -> str:
        calls.append(f"refresh:{rejected == OLD}")
        return NEW

    assert send("async", HubSpotAuth(get, refresh), Api({NEW})).status_code == 200
    assert calls == ["get", "refresh:True"]
    with pytest.raises(ConfigurationError, match="AsyncClient"):
        send("sync", HubSpotAuth(get, refresh), Api({NEW}))


def test_bad_providers_are_configuration_errors():
    with pytest.raises(ConfigurationError):
        HubSpotAuth(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        HubSpotAuth(lambda: OLD, "not callable")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="not an access token"):
        send("sync", HubSpotAuth(lambda: None), Api({OLD}))  # type: ignore[arg-type,return-value]
    assert OLD not in repr(HubSpotAuth(OLD))
