"""`create_app(settings)`: the local HubSpot as a Starlette app (DESIGN §4).

One app serves what ``app.hubspot.com`` serves (the authorize pages, from authorize.py)
and what ``api.hubapi.com`` serves (token endpoints, metadata, the sample API), plus the
control API under ``/_emulator`` when it is on. Every answer carries
``X-HubSpot-Correlation-Id``; every error is HubSpot's JSON error shape: 404/405 from
routing, 413 for big bodies, 503 when the database fails, and 500 only as a last resort.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping

from sqlalchemy import exc as sa_exc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api, authorize, control, metadata, openapi, token, token_fast_path
from .hubspot import LocalHubSpot
from .settings import ServerSettings
from .token_fast_path import FastPath
from .wire import (
    CORRELATION_HEADER,
    JSON_CONTENT_TYPE,
    NO_STORE,
    HubSpotHTTPError,
    error_response,
    json_response,
)

__all__ = ["create_app"]

log = logging.getLogger("hubspot_oauth.server")
# Request header limits (431 beyond them), as common proxies set them: a bearer token is
# at most ~300 characters (reference §5) and a browser's cookies a few KB.
MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024
_JSON_HEADER = (b"content-type", JSON_CONTENT_TYPE.encode("latin-1"))


class HubSpotMiddleware:
    """Outermost layer: a correlation id for every request (scope key
    ``hubspot.correlation_id``, echoed in the header), and HubSpot-shaped 503/500 answers
    for exceptions nothing else handled (logged without request data)."""

    def __init__(self, app: ASGIApp, fast_paths: Mapping[str, FastPath] | None = None,
                 ) -> None:
        self.app = app
        # POST paths answered in plain ASGI when they can (token_fast_path.py).
        self.fast_paths = dict(fast_paths or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = scope.setdefault("hubspot.correlation_id", str(uuid.uuid4()))
        header = (CORRELATION_HEADER.lower().encode(), cid.encode())
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(k.lower() == header[0] for k, _ in headers):
                    headers.append(header)
                message["headers"] = headers
            await send(message)

        headers = scope.get("headers") or []
        if len(headers) > MAX_HEADERS or sum(len(k) + len(v) for k, v in headers) > (
                MAX_HEADER_BYTES):
            # uvicorn's httptools parser buffers headers of any size: refuse them here.
            error = HubSpotHTTPError(
                431, "VALIDATION_ERROR",
                f"Request headers too large: at most {MAX_HEADERS} headers and "
                f"{MAX_HEADER_BYTES} bytes in all.")
            await _send_error(send_with_id, error, cid)
            return
        try:
            fast = self.fast_paths.get(scope["path"]) if scope["method"] == "POST" else None
            if fast is not None:
                answer = await fast(scope, receive, cid)
                if isinstance(answer, tuple):
                    status, answer_headers, body = answer
                    started = True
                    await send({"type": "http.response.start", "status": status,
                                "headers": answer_headers})
                    await send({"type": "http.response.body", "body": body})
                    return
                receive = answer  # handed over, with what it read replayed
            await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # The client left before its body arrived: nobody to answer, nothing was done.
            log.info("client disconnected mid-request [correlation id %s]", cid)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
            if started:
                raise
            if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError
                          | sa_exc.TimeoutError | sa_exc.DBAPIError):
                log.error("database unavailable (%s) [correlation id %s]",
                          type(getattr(exc, "orig", exc)).__name__, cid)
                error = HubSpotHTTPError(
                    503, "SERVICE_UNAVAILABLE",
                    "The local HubSpot's database is unavailable (locked, read-only or "
                    "unreachable); try again later.", headers={"Retry-After": "1", **NO_STORE})
            else:
                log.exception("internal error [correlation id %s]", cid)
                error = HubSpotHTTPError(500, "INTERNAL_ERROR",
                                         "internal error; the server log has the details "
                                         f"under correlation id {cid}", headers=NO_STORE)
            await _send_error(send_with_id, error, cid)


async def _send_error(send: Send, error: HubSpotHTTPError, cid: str) -> None:
    """`error` in HubSpot's JSON shape, sent as plain ASGI (no Starlette request here)."""
    body = json.dumps(error.body(cid)).encode()
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [_JSON_HEADER, (b"content-length", str(len(body)).encode()),
                            *[(k.lower().encode(), v.encode())
                              for k, v in error.headers.items()]]})
    await send({"type": "http.response.body", "body": body})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = HubSpotHTTPError(
            405, "VALIDATION_ERROR",
            f"HTTP method {request.method} is not allowed on {request.url.path}",
            headers=dict(exc.headers or {}))
    elif exc.status_code == 404:
        error = HubSpotHTTPError(404, "OBJECT_NOT_FOUND",
                                 f"Resource not found: {request.url.path[:200]}")
    else:
        error = HubSpotHTTPError(exc.status_code, "VALIDATION_ERROR", str(exc.detail),
                                 headers=dict(exc.headers or {}))
    return error_response(request, error)


async def _hubspot_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubSpotHTTPError)
    return error_response(request, exc)


async def _index(request: Request) -> Response:
    hubspot: LocalHubSpot = request.app.state.hubspot
    return json_response(request, {
        "name": "local HubSpot (hubspot-oauth)",
        "authorize": "/oauth/authorize",
        "token": [f"/oauth/{v}/token" for v in token.TOKEN_VERSIONS],
        "control_api": hubspot.settings.control_api_enabled,
        "openapi": "/openapi.json",
    })


# uvicorn's access log (off unless a handler is added to "uvicorn.access") prints request
# paths with their query: v1 metadata paths carry tokens (reference §6.1) and callbacks
# carry codes. Whoever turns it on gets those values masked.
_SECRETS_IN_TARGET = re.compile(
    r"(/oauth/v1/(?:access|refresh)-tokens/)[^/?#\s\"]+"
    r"|([?&](?:code|state|token|access_token|refresh_token|client_secret|code_verifier)=)"
    r"[^&#\s\"]*")


class _RedactAccessLog(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _SECRETS_IN_TARGET.sub(lambda m: (m.group(1) or m.group(2)) + "[redacted]", a)
                if isinstance(a, str) else a for a in record.args)
        return True


def _redact_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, _RedactAccessLog) for f in access.filters):
        access.addFilter(_RedactAccessLog())


def create_app(settings: ServerSettings | None = None) -> Starlette:
    """The local HubSpot for `settings`; ``app.state.hubspot`` is its `LocalHubSpot`.

    Creates and seeds the database when empty; raises `DatabaseSchemaError` when its
    schema is behind, `SeedError` for a bad seed file, `ConfigurationError` for bad
    settings.
    """
    settings = settings or ServerSettings()
    _redact_access_log()
    hubspot = LocalHubSpot(settings)
    # The busiest routes first: the router tries each pattern in turn. No path matches
    # routes of two modules, so the order changes nothing else.
    routes: list = [*token.routes, *metadata.routes, *api.routes,
                    Route("/", _index, methods=["GET"]),
                    *openapi.routes,  # GET /openapi.json (servers = the request's base URL)
                    *authorize.routes]
    if settings.control_api_enabled:
        routes.extend(control.routes)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, HubSpotHTTPError: _hubspot_error},
    )
    # No 307 from /path/ to /path: a client would re-post its credentials (HubSpot: 404).
    app.router.redirect_slashes = False
    app.add_middleware(HubSpotMiddleware, fast_paths=token_fast_path.FAST_PATHS)
    app.state.hubspot = hubspot
    return app
