"""The control API for tests (DESIGN §4), JSON in and out, under ``/_emulator``:

| call | body → answer |
|---|---|
| GET ``/_emulator/clock`` | → ``{"now": ISO 8601, "offset_seconds": n}`` |
| POST ``/_emulator/clock`` | ``{"advance": s}`` / ``{"now": ISO}`` / ``{"reset": true}`` → same |
| GET ``/_emulator/faults`` | → ``{"faults": [queued …]}`` |
| POST ``/_emulator/faults`` | ``{"endpoint", "fault", "times": 1, "delay_ms": 0}`` → 201 entry |
| DELETE ``/_emulator/faults`` | → ``{"faults": []}`` |
| GET ``/_emulator/stats`` | → counts by endpoint, grant type and outcome |
| GET ``/_emulator/installs`` | → ``{"installs": […]}`` |
| POST ``/_emulator/installs/{app_id}/{hub_id}/uninstall`` | → ``{"uninstalled": true}`` |
| POST ``/_emulator/reset`` | → ``{"reset": true, "now": ISO}`` |

Served only when `ServerSettings.control_api_enabled` (loopback by default). With an
`admin_token`, every call needs ``Authorization: Bearer <admin token>``; without one (on by
default on loopback) the ``Host`` and any ``Origin`` must be loopback names (403 otherwise:
DNS rebinding). Bodies are JSON objects at most 16 KiB and 32 levels deep. POSTs need
``Content-Type: application/json`` (even with an empty ``{}`` body), so a web page in the
user's browser cannot send them as a simple cross-site request.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..errors import ConfigurationError
from .bruteforce import guard_for
from .settings import is_loopback
from .wire import HubSpotHTTPError, bad_request, json_response, parse_json, read_body

__all__ = ["routes"]

MAX_CONTROL_BODY = 16 * 1024


def _authorize(request: Request) -> None:
    settings = request.app.state.hubspot.settings
    token = settings.admin_token
    if token is None:
        # On by default only for loopback: also refuse a non-loopback caller, in case the
        # app was served on another interface than `settings.host` says.
        client = request.client.host if request.client else None
        if settings.control_api is None and client is not None and not is_loopback(client):
            raise HubSpotHTTPError(403, "INVALID_AUTHENTICATION",
                                   "the control API answers only loopback clients unless "
                                   "the server has an admin token")
        if settings.control_api is None:
            _refuse_foreign_names(request, settings.public_url)
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(),
                                                             token.encode()):
        raise HubSpotHTTPError(401, "INVALID_AUTHENTICATION",
                               "the control API needs Authorization: Bearer <admin token>",
                               headers={"WWW-Authenticate": 'Bearer realm="local HubSpot '
                                        'control API"'})


def _local_name(host: str | None, public_url: str | None) -> bool:
    """`host` names this machine: ``localhost`` or ``*.localhost`` (RFC 6761 §6.3), a loopback
    address, the host of `public_url`, or a name under ``.test`` (RFC 6761 §6.2: never in
    public DNS, so no page can rebind it; the in-process transport's ``local-hubspot.test``).
    """
    if not host:
        return False
    host = host.lower().rstrip(".")
    if is_loopback(host) or host.endswith((".localhost", ".test")):
        return True
    return bool(public_url) and host == (_hostname(public_url) or "")


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _refuse_foreign_names(request: Request, public_url: str | None) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 reaches
    this loopback server with ``Host: evil.example`` (and its own ``Origin``); without an
    admin token, answer only requests addressed to, and (when the browser says) sent from,
    a local name. Raises 403 in HubSpot's shape."""
    host = request.headers.get("host")
    origin = request.headers.get("origin")
    if host is not None and not _local_name(_hostname(f"//{host}"), public_url):
        raise HubSpotHTTPError(403, "INVALID_AUTHENTICATION",
                               "the control API answers only requests to a loopback host "
                               "(localhost, 127.0.0.1, [::1]) unless the server has an "
                               "admin token")
    if origin is not None and not _local_name(_hostname(origin), public_url):
        raise HubSpotHTTPError(403, "INVALID_AUTHENTICATION",
                               "the control API answers only pages served from a loopback "
                               "host unless the server has an admin token")


async def _json_body(request: Request) -> dict[str, Any]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise HubSpotHTTPError(415, "VALIDATION_ERROR",
                               "the control API takes Content-Type: application/json "
                               "(send {} for no options)")
    raw = await read_body(request, MAX_CONTROL_BODY)
    if not raw.strip():
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    return data


def _clock_answer(hubspot: Any) -> dict[str, Any]:
    offset = hubspot.clock.offset()
    now = datetime.fromtimestamp(datetime.now(UTC).timestamp() + offset, UTC)
    return {"now": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "offset_seconds": round(offset, 3)}


async def clock(request: Request) -> Response:
    _authorize(request)
    hubspot = request.app.state.hubspot
    if request.method == "POST":
        data = await _json_body(request)
        known = {"advance", "now", "reset"}
        if len(set(data) & known) != 1 or set(data) - known:
            raise bad_request('send exactly one of {"advance": seconds}, {"now": "ISO 8601"}, '
                              '{"reset": true}')
        try:
            if "advance" in data:
                await run_in_threadpool(hubspot.clock.advance, data["advance"])
            elif "now" in data:
                value = data["now"]
                if not isinstance(value, str):
                    raise ValueError("now must be an ISO 8601 string")
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
                await run_in_threadpool(hubspot.clock.set, when)
            elif data["reset"] is True:
                await run_in_threadpool(hubspot.clock.reset)
            else:
                raise ValueError("reset must be true")
        except (ValueError, OverflowError, OSError) as exc:
            raise bad_request(f"bad clock request: {exc}") from None
    return json_response(request, await run_in_threadpool(_clock_answer, hubspot))


async def faults(request: Request) -> Response:
    _authorize(request)
    hubspot = request.app.state.hubspot
    if request.method == "POST":
        data = await _json_body(request)
        extra = set(data) - {"endpoint", "fault", "times", "delay_ms"}
        if extra:
            raise bad_request(f"unknown field '{sorted(extra)[0]}'")
        try:
            entry = await run_in_threadpool(
                lambda: hubspot.faults.add(endpoint=data.get("endpoint"),
                                           fault=data.get("fault"),
                                           times=data.get("times", 1),
                                           delay_ms=data.get("delay_ms", 0)))
        except ConfigurationError as exc:
            raise bad_request(str(exc)) from None
        return json_response(request, entry, 201)
    if request.method == "DELETE":
        await run_in_threadpool(hubspot.faults.clear)
    return json_response(request, {"faults": await run_in_threadpool(hubspot.faults.pending)})


async def stats(request: Request) -> Response:
    _authorize(request)
    return json_response(request, await run_in_threadpool(request.app.state.hubspot.stats))


async def installs(request: Request) -> Response:
    _authorize(request)
    found = await run_in_threadpool(request.app.state.hubspot.installs)
    return json_response(request, {"installs": found})


async def uninstall(request: Request) -> Response:
    _authorize(request)
    await _json_body(request)
    ids = []
    for name in ("app_id", "hub_id"):
        raw = request.path_params[name]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
            raise bad_request(f"{name} must be a number, got '{raw[:40]}'")
        ids.append(int(raw))
    done = await run_in_threadpool(request.app.state.hubspot.uninstall, ids[0], ids[1])
    if not done:
        raise HubSpotHTTPError(404, "OBJECT_NOT_FOUND",
                               f"app {ids[0]} is not installed in portal {ids[1]}")
    return json_response(request, {"uninstalled": True})


async def reset(request: Request) -> Response:
    _authorize(request)
    await _json_body(request)
    hubspot = request.app.state.hubspot
    await run_in_threadpool(hubspot.reset)
    guard_for(request.app.state).reset()  # brute-force lockouts are state too
    return json_response(request, {"reset": True, **await run_in_threadpool(_clock_answer,
                                                                            hubspot)})


routes = [
    Route("/_emulator/clock", clock, methods=["GET", "POST"]),
    Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/_emulator/stats", stats, methods=["GET"]),
    Route("/_emulator/installs", installs, methods=["GET"]),
    Route("/_emulator/installs/{app_id}/{hub_id}/uninstall", uninstall, methods=["POST"]),
    Route("/_emulator/reset", reset, methods=["POST"]),
]
