"""An httpx transport that sends requests straight into an ASGI app, no socket.

`httpx.ASGITransport` serves only `httpx.AsyncClient`. `InProcessTransport` serves both
kinds of client: async requests run in the caller's event loop (through
`httpx.ASGITransport`); sync requests run on an event loop of their own in a background
thread (an AnyIO blocking portal), so `httpx.Client`, `OAuthClient` and `TokenStore` reach
the app exactly as they would reach a server, from any thread.

Read timeouts are honoured (`httpx.ReadTimeout`) so latency faults behave as on a socket.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.from_thread
import httpx

__all__ = ["InProcessTransport"]


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout") or {}
    value = timeout.get("read")
    return float(value) if value is not None else None


class InProcessTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """A transport for `httpx.Client` and `httpx.AsyncClient` that calls an ASGI app.

    **Parameters:** `app` - the ASGI application; `client` - the (host, port) the app sees
    as the caller (default loopback, as a local test client would be).

    Clients may close it (``with httpx.Client(transport=t)`` does): closing a client does
    not stop the transport; `shutdown()` does, and the owner (the test kit) calls it.
    A 500 from the app reaches the caller as a 500 response, as over a socket.
    """

    def __init__(self, app: Callable[..., Any], *, client: tuple[str, int] = ("127.0.0.1", 50000)):
        self.app = app
        self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=client)
        self._lock = threading.Lock()
        self._portal_cm: contextlib.AbstractContextManager[anyio.from_thread.BlockingPortal] | None
        self._portal_cm = None
        self._portal: anyio.from_thread.BlockingPortal | None = None

    # -- async clients: the caller's own event loop ----------------------------------------

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._send(request)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        timeout = _read_timeout(request)
        try:
            with anyio.fail_after(timeout):
                response = await self._asgi.handle_async_request(request)
                content = await response.aread()
        except TimeoutError:
            raise httpx.ReadTimeout("the local HubSpot did not answer in time",
                                    request=request) from None
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    # -- sync clients: a private event loop in a background thread -------------------------

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        replay = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=body,
            extensions=request.extensions,
        )
        response = self._blocking_portal().call(self._send, replay)
        response.request = request
        return response

    def _blocking_portal(self) -> anyio.from_thread.BlockingPortal:
        with self._lock:
            if self._portal is None:
                self._portal_cm = anyio.from_thread.start_blocking_portal()
                self._portal = self._portal_cm.__enter__()
            return self._portal

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Called by `httpx.Client.close()`; the transport stays usable (see class doc)."""

    async def aclose(self) -> None:
        """Called by `httpx.AsyncClient.aclose()`; the transport stays usable."""

    def shutdown(self) -> None:
        """Stop the background event loop (if one was started). Idempotent."""
        with self._lock:
            portal_cm, self._portal_cm, self._portal = self._portal_cm, None, None
        if portal_cm is not None:
            portal_cm.__exit__(None, None, None)
