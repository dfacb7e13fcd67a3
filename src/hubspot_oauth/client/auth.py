"""`HubSpotAuth`: an `httpx.Auth` that adds the bearer token and recovers from expiry once.

The token provider protocol (what `TokenStore.auth(key)` passes in):

* ``access_token()`` -> str: an access token valid now (the store refreshes it when it is
  within its leeway of expiry). Called before every request.
* ``refresh(rejected)`` -> str: called with the access token HubSpot just rejected with
  401 ``EXPIRED_AUTHENTICATION``. It returns a working access token: the store refreshes
  only when `rejected` is still the stored token, otherwise (another thread or process
  refreshed meanwhile) it returns the stored one. It may raise
  `ReauthorizationRequiredError`, which reaches the caller of the HTTP request.

Either may be a plain function or an ``async def`` function. With `httpx.AsyncClient`
plain functions run in a worker thread (`anyio.to_thread`) so the event loop never blocks
on the store's database or lock; with `httpx.Client` they must be plain functions.

Rules (reference §7.2-7.3, §7.7): the header is ``Authorization: Bearer <token>`` (never
the URL); a 401 whose JSON ``category`` is ``EXPIRED_AUTHENTICATION`` triggers exactly one
refresh and one retry; any other 401 (``INVALID_AUTHENTICATION``) is returned as is, with
no refresh; the retried request's answer is returned whatever it is, so it never loops.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from typing import Any

import anyio.to_thread
import httpx

from ..errors import ConfigurationError
from ..tokens import mask
from .protocol import is_expired_authentication

__all__ = ["HubSpotAuth", "TokenGetter", "TokenRefresher"]

TokenGetter = Callable[[], str] | Callable[[], Awaitable[str]]
TokenRefresher = Callable[[str], str] | Callable[[str], Awaitable[str]]


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    )


class HubSpotAuth(httpx.Auth):
    """Bearer authentication for HubSpot's APIs with one refresh-and-retry on expiry.

    **Parameters:**
    * `access_token` - a callable returning a valid access token (or a fixed token str,
      which then cannot be refreshed).
    * `refresh` - *(optional)* a callable taking the rejected access token and returning a
      fresh one (see the module docstring for the exact protocol). Without it, a 401
      ``EXPIRED_AUTHENTICATION`` is returned to the caller.

    Usage: ``httpx.Client(auth=store.auth(key))`` or
    ``httpx.Client(auth=HubSpotAuth(get_token, refresh_token))``.

    `refreshes` counts the refreshes this instance triggered (for diagnostics). The
    request body is buffered (`requires_request_body`) so it can be sent twice; the
    response body is read only for a 401, so streamed downloads stay streamed.
    """

    requires_request_body = True
    requires_response_body = False  # read only on 401; see sync_auth_flow

    def __init__(
        self,
        access_token: TokenGetter | str,
        refresh: TokenRefresher | None = None,
    ) -> None:
        if isinstance(access_token, str):
            if not access_token:
                raise ConfigurationError("access_token must not be empty")
            fixed = access_token

            def _fixed() -> str:
                return fixed

            self._get: TokenGetter = _fixed
        elif callable(access_token):
            self._get = access_token
        else:
            raise ConfigurationError("access_token must be a callable or a str")
        if refresh is not None and not callable(refresh):
            raise ConfigurationError("refresh must be a callable taking the rejected token")
        self._refresh = refresh
        # Decided once: the sync flow runs on every request (the hot path).
        self._has_async = _is_async(self._get) or (refresh is not None and _is_async(refresh))
        self.refreshes = 0

    @classmethod
    def for_store(cls, store: Any, key: str) -> HubSpotAuth:
        """Auth for one connection of a `TokenStore`: ``store.access_token(key)`` before each
        request, ``store.refresh(key, stale_access_token=rejected)`` after 401
        ``EXPIRED_AUTHENTICATION`` (the store refreshes only if `rejected` is still stored)."""

        def get() -> str:
            return store.access_token(key)

        def refresh(rejected: str) -> str:
            return store.refresh(key, stale_access_token=rejected).access_token

        return cls(get, refresh)

    def __repr__(self) -> str:
        return f"HubSpotAuth(refresh={'yes' if self._refresh else 'no'})"

    @staticmethod
    def _authorize(request: httpx.Request, token: object) -> str:
        if not isinstance(token, str) or not token:
            shown = mask(token) if isinstance(token, str) else type(token).__name__
            raise ConfigurationError(f"the token provider returned {shown}, not an access token")
        request.headers["Authorization"] = f"Bearer {token}"
        return token

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Send `request` with the bearer token; refresh and resend once on expiry."""
        if self._has_async:
            raise ConfigurationError(
                "HubSpotAuth was given async token callables; use it with httpx.AsyncClient"
            )
        request.read()
        token = self._authorize(request, self._get())
        response = yield request
        if response.status_code != 401 or self._refresh is None:
            return
        response.read()
        if not is_expired_authentication(response.status_code, response.content):
            return
        fresh = self._refresh(token)
        self.refreshes += 1
        if fresh == token:  # nothing new to try: hand the 401 back instead of looping
            return
        self._authorize(request, fresh)
        yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """As `sync_auth_flow`; plain provider callables run in a worker thread."""
        await request.aread()
        token = self._authorize(request, await _call(self._get))
        response = yield request
        if response.status_code != 401 or self._refresh is None:
            return
        await response.aread()
        if not is_expired_authentication(response.status_code, response.content):
            return
        fresh = await _call(self._refresh, token)
        self.refreshes += 1
        if fresh == token:
            return
        self._authorize(request, fresh)
        yield request


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    if _is_async(fn):
        return await fn(*args)
    result = await anyio.to_thread.run_sync(lambda: fn(*args))
    if inspect.isawaitable(result):  # a plain function that returned a coroutine
        return await result
    return result
