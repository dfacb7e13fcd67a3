"""POST /oauth/{v1,v3,2026-03,2026-09}/token: both grants, form-encoded (reference §4).

Parameters are validated here (present, once, UTF-8, bounded); the grant rules live in
`LocalHubSpot.exchange_code` / `.refresh`. v3 and later refuse credentials in the query
string (reference §4.1, [DOC-MIGRATE]); v1 tolerates them (merged with the body, each
parameter still at most once). Every answer carries ``Cache-Control: no-store``
(RFC 6749 §5.1).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from .bruteforce import Attempt, BruteForceGuard, Verdict, guard_for, token_keys
from .faults import Fault
from .hubspot import FaultPending
from .storage import FastPathBusy, FastPathMiss
from .wire import (
    CORRELATION_HEADER,
    FORM_BODY_KEY,
    NO_STORE,
    HubSpotHTTPError,
    OAuthError,
    correlation_id,
    error_response,
    json_response,
    parse_form,
    parse_pairs,
    rate_limited,
)

__all__ = ["TOKEN_VERSIONS", "fault_response", "routes"]

TOKEN_VERSIONS = ("v1", "v3", "2026-03", "2026-09")
GRANT_TYPES = ("authorization_code", "refresh_token")
# Parameters that are credentials or grants: never in a v3+ query string.
CREDENTIAL_PARAMS = ("client_id", "client_secret", "code", "refresh_token", "code_verifier",
                     "token", "redirect_uri", "grant_type")
MAX_PARAM = 4096

PROXY_502_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)


async def read_params(request: Request, version: str) -> dict[str, str]:
    """The form parameters of a token-style endpoint, checked as the module says."""
    settings = request.app.state.hubspot.settings
    form = await parse_form(request, settings.max_body_bytes)
    # Building request.url costs more than the rest of the parsing: only when there is one.
    query = request.url.query if request.scope.get("query_string") else ""
    if query:
        if version == "v1":
            for name, value in parse_pairs(query).items():
                if name in form:
                    raise OAuthError("invalid_request", "BAD_REQUEST",
                                     f"parameter '{name}' was sent more than once")
                form[name] = value
        else:
            sent = [n for n in parse_pairs(query) if n in CREDENTIAL_PARAMS]
            if sent:
                raise OAuthError(
                    "invalid_request", "BAD_REQUEST",
                    f"{', '.join(sent)} must be sent in the form-encoded request body, not "
                    f"the query string (the {version} token endpoints take the body only)")
    for name, value in form.items():
        if len(value) > MAX_PARAM:
            raise OAuthError("invalid_request", "BAD_REQUEST",
                             f"parameter '{name}' is longer than {MAX_PARAM} characters")
    return form


def client_credentials(request: Request, form: dict[str, str]) -> tuple[str, str]:
    """`client_id` and `client_secret` from the body (client_secret_post, the only method
    HubSpot documents; reference §4.1). Raises `OAuthError` ``invalid_client``."""
    client_id = form.get("client_id", "")
    client_secret = form.get("client_secret", "")
    basic = request.headers.get("authorization", "").lower().startswith("basic ")
    if not client_id:
        hint = (" (HTTP Basic client authentication is not supported: send client_id and "
                "client_secret in the form body)") if basic else ""
        raise OAuthError("invalid_client", "BAD_CLIENT_ID", "missing client_id" + hint)
    if not client_secret:
        raise OAuthError("invalid_client", "BAD_CLIENT_SECRET", "missing client_secret")
    return client_id, client_secret


def client_guard(
    request: Request, client_id: str
) -> tuple[BruteForceGuard, tuple[str, ...]]:
    """The brute-force guard and this client authentication's keys (the `client_id` at the
    remote address, and the remote address; RFC 6749 §10.10, see bruteforce.py)."""
    remote = request.client.host if request.client else None
    return guard_for(request.app.state), token_keys(client_id, remote)


def locked_response(request: Request, verdict: Verdict) -> Response:
    """429 in HubSpot's rate-limit shape, before the credentials are even looked at."""
    exc = HubSpotHTTPError(
        429, "RATE_LIMITS",
        "Too many failed client authentications from this address (for this client_id or "
        "in all); "
        f"try again in {verdict.retry_after_header} seconds.",
        extra={"errorType": "RATE_LIMIT", "policyName": "FAILED_CLIENT_AUTHENTICATION"},
        headers={"Retry-After": verdict.retry_after_header, **NO_STORE})
    return error_response(request, exc)


def settle_client_auth(attempt: Attempt, error: HubSpotHTTPError | None) -> None:
    """Settle an attempt admitted by `BruteForceGuard.enter`/`try_enter`: count a failed
    client authentication (``invalid_client``), clear on success, else just release its
    reservation."""
    if error is None:
        attempt.success()
    elif getattr(error, "error", None) == "invalid_client":
        attempt.failure()
    else:
        attempt.release()


async def take_fault(request: Request, endpoint: str) -> Fault | None:
    """The next queued fault of `endpoint`, after waiting its delay; None when none."""
    fault = await request.app.state.hubspot.call(request.app.state.hubspot.faults.take, endpoint)
    if fault is not None and fault.delay_ms:
        await anyio.sleep(fault.delay_ms / 1000)
    return fault


# Scope key `token_fast_path` sets when its inline try of this very request missed (not
# merely busy): the general route's inline try would only miss again.
INLINE_MISSED_KEY = "hubspot.inline_missed"

# Seconds to wait between inline tries while SQLite is busy: in all (~0.1 s) about the
# longest a WAL restart holds writers off (storage.InlineConnection); then the thread
# pool waits, up to SQLite's busy timeout.
BUSY_WAITS = (0.0005, 0.001, 0.002, 0.004, *(0.008,) * 12)


async def run_inline(inline: Callable[[], Any]) -> Any:
    """`inline()` (a hot path run on the event loop thread), tried again after each of
    `BUSY_WAITS` while it raises `FastPathBusy`: waiting here costs nothing, a worker
    thread ~100 µs CPU, and the thread pool's writers would keep the lock busy in turn.
    Raises `FastPathMiss` (or `FastPathBusy` after the last wait) for the general path."""
    for wait in BUSY_WAITS:
        try:
            return inline()
        except FastPathBusy:
            await anyio.sleep(wait)
    return inline()


async def run_with_faults(request: Request, endpoint: str, call: Callable[..., Any],
                          count: tuple[str, str],
                          inline: Callable[[str], Any] | None = None) -> Any:
    """Run `call(fault_endpoint=endpoint)` in the thread pool. When the domain reports a
    queued fault (`FaultPending`, found by the same query that reads the clock), take it:
    answer as the fault says, or (``delay``) wait and run `call` without the check.
    `inline(endpoint)`, when given, is tried first on the event loop thread: the common
    case only, never waiting for the database (`FastPathMiss` otherwise, then `call`;
    `run_inline` tries again while it is only busy; skipped when the token fast path's
    inline try already missed, `INLINE_MISSED_KEY`). Returns the call's result or a
    `Response`."""
    try:
        if inline is not None and not request.scope.get(INLINE_MISSED_KEY):
            try:
                return await run_inline(lambda: inline(endpoint))
            except FastPathMiss:
                pass
        return await request.app.state.hubspot.call(call, endpoint)
    except FaultPending:
        pass
    fault = await take_fault(request, endpoint)
    if fault is not None:
        answer = fault_response(request, fault, count[1])
        if answer is not None:
            hubspot = request.app.state.hubspot
            await hubspot.call(hubspot.count, count[0], count[1], "error")
            return answer
    return await request.app.state.hubspot.call(call, None)


async def guarded_run(request: Request, client_id: str, endpoint: str, grant_type: str,
                      call: Callable[..., Any],
                      inline: Callable[[str], Any] | None = None) -> Any:
    """`run_with_faults` behind the client-authentication brute-force guard: a locked-out
    client gets 429 (counted as an error of `endpoint`/`grant_type`) before its credentials
    are looked at, and each outcome is recorded with the guard. Returns the call's result
    or a `Response` to send."""
    guard, keys = client_guard(request, client_id)
    attempt = await guard.enter(*keys)  # counts attempts in flight (bruteforce.py)
    if not attempt.allowed:
        hubspot = request.app.state.hubspot
        await hubspot.call(hubspot.count, endpoint, grant_type, "error")
        return locked_response(request, attempt.verdict)
    with attempt:  # released whatever happens (a database error, a cancelled request)
        try:
            result = await run_with_faults(request, endpoint, call, (endpoint, grant_type),
                                           inline)
        except HubSpotHTTPError as exc:
            settle_client_auth(attempt, exc)
            return error_response(request, exc)
        if not isinstance(result, Response):
            settle_client_auth(attempt, None)
    return result


def fault_response(request: Request, fault: Fault, grant_type: str = "") -> Response | None:
    """The answer a queued fault makes (None for a pure ``delay``)."""
    kind = fault.fault
    cid = correlation_id(request)
    if kind == "delay":
        return None
    if kind == "html_502":
        return HTMLResponse(PROXY_502_PAGE, status_code=502,
                            headers={CORRELATION_HEADER: cid, **NO_STORE})
    if kind == "rate_limit":
        return error_response(request, rate_limited(1, NO_STORE))
    if kind == "server_error":
        exc = HubSpotHTTPError(500, "INTERNAL_ERROR",
                               "internal error (fault queued through the control API)",
                               headers=NO_STORE)
        return error_response(request, exc)
    if kind == "invalid_grant":
        if grant_type == "refresh_token" or fault.endpoint == "introspect":
            exc = OAuthError("invalid_grant", "BAD_REFRESH_TOKEN",
                             "refresh token is invalid, expired or revoked (fault queued "
                             "through the control API)")
        else:
            exc = OAuthError("invalid_grant", "BAD_AUTH_CODE",
                             "missing or unknown auth code (fault queued through the "
                             "control API)")
        return error_response(request, exc)
    if kind == "expired_authentication":
        from .api import expired_error

        return error_response(request, expired_error(0.0, None))
    return None


def _token_endpoint(version: str):  # noqa: ANN202
    async def endpoint(request: Request) -> Response:
        hubspot = request.app.state.hubspot
        grant_type = ""
        try:
            form = await read_params(request, version)
            grant_type = form.get("grant_type", "")
            if not grant_type:
                raise OAuthError("invalid_request", "BAD_GRANT_TYPE", "missing grant_type")
            if grant_type not in GRANT_TYPES:
                raise OAuthError("unsupported_grant_type", "BAD_GRANT_TYPE",
                                 f"unsupported grant_type '{grant_type[:60]}'; use "
                                 "authorization_code or refresh_token")
            client_id, client_secret = client_credentials(request, form)
            if grant_type == "authorization_code":
                code = form.get("code", "")
                redirect_uri = form.get("redirect_uri", "")
                if not code:
                    raise OAuthError("invalid_request", "BAD_AUTH_CODE",
                                     "missing or unknown auth code: send code")
                if not redirect_uri:
                    raise OAuthError("invalid_request", "BAD_REDIRECT_URI",
                                     "missing redirect_uri: send the redirect_uri of the "
                                     "authorization request")
                call: Any = lambda fault_endpoint, inline=False: hubspot.exchange_code(  # noqa: E731
                    client_id=client_id, client_secret=client_secret, code=code,
                    redirect_uri=redirect_uri, code_verifier=form.get("code_verifier") or None,
                    fault_endpoint=fault_endpoint, inline=inline)
            else:
                refresh_token = form.get("refresh_token", "")
                if not refresh_token:
                    raise OAuthError("invalid_request", "BAD_REFRESH_TOKEN",
                                     "missing or invalid refresh token: send refresh_token")
                call = lambda fault_endpoint, inline=False: hubspot.refresh(  # noqa: E731
                    client_id=client_id, client_secret=client_secret,
                    refresh_token=refresh_token, fault_endpoint=fault_endpoint, inline=inline)
            inline_call = lambda fault_endpoint: call(fault_endpoint, True)  # noqa: E731
        except HubSpotHTTPError as exc:
            grant_type = grant_type or _grant_type_sent(request)
            await hubspot.call(hubspot.count, "token", _grant_key(grant_type), "error")
            return error_response(request, exc)
        payload = await guarded_run(request, client_id, "token", grant_type, call, inline_call)
        if isinstance(payload, Response):
            return payload
        if version != "v1":
            payload["token_use"] = "access_token"
        return json_response(request, payload, 200, NO_STORE)

    return endpoint


def _grant_type_sent(request: Request) -> str:
    """The `grant_type` of a request refused while its parameters were read (too long, NUL,
    not UTF-8, sent twice …), read leniently from the body or query string, so stats count
    it under its grant; "" when none (or several different ones) can be read."""
    raw = request.scope.get(FORM_BODY_KEY, b"")
    query = request.scope.get("query_string", b"")
    found: set[str] = set()
    for text in (raw.decode("utf-8", "replace"), query.decode("latin-1")):
        try:
            pairs = parse_qsl(text, keep_blank_values=True, errors="replace")
        except ValueError:
            continue
        found.update(value for name, value in pairs if name == "grant_type")
    return found.pop() if len(found) == 1 else ""


def _grant_key(grant_type: str) -> str:
    return grant_type if grant_type in GRANT_TYPES else "other"


routes = [
    Route(f"/oauth/{version}/token", _token_endpoint(version), methods=["POST"],
          name=f"token-{version}")
    for version in TOKEN_VERSIONS
]
