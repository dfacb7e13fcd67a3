"""The quickstart app: HubSpot's Node.js OAuth quickstart (reference §8), in Python.

Built only on the public library API (`from hubspot_oauth import …`), so it is the example
to copy. What it adds to the Node original:

* a `state` nonce per install (RFC 6749 §10.12) that also carries where to send the user
  afterwards (`/install?return_to=/accounts/acme`, the guide's multi-tenant pattern); one
  nonce per install, so several tabs can install at once (case C6);
* every callback answers: unknown, reused or expired state, HubSpot's `error`, a missing
  `code` each get a clear page and store nothing (the Node app hangs without `code`);
* tokens of many HubSpot accounts in a SQLite `TokenStore` in the data directory, so a
  restart keeps the connections; `store.auth(key)` refreshes expired access tokens;
* "Refresh now" and "Disconnect" (revoke, then delete) as CSRF-protected POST forms.

Routes: ``GET /``, ``GET /accounts/{key}``, ``GET /install``, ``GET /oauth-callback`` (or the
path of the configured redirect URI), ``POST /refresh``, ``POST /disconnect``.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hubspot_oauth import (
    BadRequestError,
    ClientConfig,
    Connection,
    HubSpotAPIError,
    HubSpotOAuthError,
    InvalidClientError,
    MissingScopesError,
    NetworkError,
    OAuthClient,
    ReauthorizationRequiredError,
    StateExpiredError,
    StateStore,
    TokenStore,
)

__all__ = ["QuickstartOptions", "create_app", "safe_return_path"]

log = logging.getLogger("hubspot_oauth.quickstart")

TEMPLATES = Path(__file__).resolve().parent / "templates"
CSRF_COOKIE = "quickstart_csrf"
CONTACTS_SHOWN = 10
STATE_TTL = 600  # seconds a started install may take (login, account choice, consent)


@dataclass(frozen=True)
class QuickstartOptions:
    """Presentation details the command passes in; none of them is needed to run the app.

    `hubspot_name` names what the app talks to ("HubSpot" or "the local HubSpot at …");
    `sign_in` lists (email, password, what it is for) rows shown to newcomers on the local
    HubSpot; `access_log` writes one line per request (method, path, status; never the
    query string, which carries codes) to stderr.
    """

    hubspot_name: str = "HubSpot"
    sign_in: tuple[tuple[str, str, str], ...] = ()
    access_log: bool = False
    state_ttl: int = STATE_TTL
    extra_context: dict[str, Any] = field(default_factory=dict)


def safe_return_path(value: str | None) -> str | None:
    """`value` when it is a path on this site (``/…``), else None: never an open redirect.

    Rejects absolute URLs, scheme-relative ``//host`` and ``/\\host`` (browsers treat a
    backslash as a slash), and control characters.
    """
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return None
    if any(ord(ch) < 0x20 or ch == "\\" for ch in value):
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return None
    return value


@dataclass
class _Deps:
    client: OAuthClient
    store: TokenStore
    states: StateStore
    http: httpx.Client
    options: QuickstartOptions
    config: ClientConfig


def create_app(
    config: ClientConfig | None = None,
    *,
    options: QuickstartOptions | None = None,
    client: OAuthClient | None = None,
    store: TokenStore | None = None,
    states: StateStore | None = None,
) -> Starlette:
    """The quickstart as a Starlette app.

    `config` defaults to `ClientConfig.from_env()`; it must hold the app's client ID and
    secret (`ConfigurationError` otherwise). Tokens go to `config.default_database_url()`
    (``tokens.db`` in the data directory unless ``HUBSPOT_OAUTH_DATABASE_URL`` is set);
    install states go to the same database (its engine), so an install survives a restart.
    `client`, `store`, `states` replace the ones built from `config` (tests).
    """
    config = config or ClientConfig.from_env()
    options = options or QuickstartOptions()
    config.require_credentials()
    owned: list[Any] = []  # what this app built, and so closes at shutdown
    if client is None:
        client = OAuthClient.from_config(config)
        owned.append(client)
    database_url = config.default_database_url()
    if store is None:
        store = TokenStore(
            database_url, client=client, encryption_keys=list(config.encryption_keys) or None
        )
        owned.append(store)
    if states is None:
        states = StateStore(store.engine)
    http = httpx.Client(base_url=config.endpoints().api_url, timeout=15.0)
    deps = _Deps(client, store, states, http, options, config)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    callback_path = urlsplit(config.redirect_uri).path or "/oauth-callback"

    def page(
        request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        token = _csrf_token(request)
        merged = {
            "hubspot_name": options.hubspot_name,
            "sign_in": options.sign_in,
            "csrf_token": token,
            **options.extra_context,
            **context,
        }
        response = templates.TemplateResponse(request, name, merged, status_code=status_code)
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(
                CSRF_COOKIE, token, httponly=True, samesite="strict", path="/"
            )
        return response

    def error_page(
        request: Request,
        title: str,
        message: str,
        *,
        status_code: int = 400,
        detail: str | None = None,
        next_step: str = "Start the install again from the home page.",
        disconnect_key: str | None = None,
    ) -> Response:
        # `disconnect_key`: the page offers the Disconnect button for that connection, so
        # a "disconnect it" next step can be done right there.
        return page(
            request,
            "error.html",
            {"title": title, "message": message, "detail": detail, "next_step": next_step,
             "disconnect_key": disconnect_key},
            status_code=status_code,
        )

    async def home(request: Request) -> Response:
        try:
            return await _home(request)
        except HubSpotOAuthError as exc:  # e.g. the token store's key or schema
            return error_page(
                request,
                "The stored connections cannot be read",
                "The quickstart's token store refused the request. Nothing was changed.",
                status_code=500,
                detail=str(exc),
                next_step="Fix what the message says (see also the terminal), then reload.",
            )

    async def _home(request: Request) -> Response:
        selected = request.path_params.get("key") or request.query_params.get("account")
        connections = await run_in_threadpool(deps.store.connections)
        accounts = [_account_view(c) for c in connections]
        if selected is not None and not any(a["key"] == selected for a in accounts):
            return error_page(
                request,
                "No such connection",
                f"No HubSpot account is connected under {selected!r}.",
                status_code=404,
                next_step="Pick one of the connected accounts, or install the app again.",
            )
        notice = _NOTICES.get(request.query_params.get("done", ""))
        if not accounts:
            return page(
                request,
                "welcome.html",
                {
                    "scopes": deps.config.scopes,
                    "optional_scopes": deps.config.optional_scopes,
                    "notice": notice,
                },
            )
        current = next((a for a in accounts if a["key"] == selected), accounts[0])
        contacts = await run_in_threadpool(_read_contacts, deps, current["key"])
        # The contacts call may have refreshed the token: show the fresh one.
        connection = await run_in_threadpool(deps.store.connection, current["key"])
        token = await run_in_threadpool(deps.store.get, current["key"])
        current = _account_view(connection, token.access_token)
        accounts = [current if a["key"] == current["key"] else a for a in accounts]
        return page(
            request,
            "home.html",
            {"accounts": accounts, "current": current, "contacts": contacts, "notice": notice},
        )

    async def install(request: Request) -> Response:
        raw = request.query_params.get("return_to")
        return_to = safe_return_path(raw)
        if raw is not None and return_to is None:
            return error_page(
                request,
                "Cannot start the install",
                "return_to must be a path on this site, such as /accounts/acme.",
                next_step="Remove return_to from the link, or give a path that starts with /.",
            )
        nonce = await run_in_threadpool(
            deps.states.issue, {"return_to": return_to}, ttl=options.state_ttl
        )
        url = deps.client.authorization_url(state=nonce)
        return RedirectResponse(url, status_code=302)

    async def oauth_callback(request: Request) -> Response:
        params = request.query_params
        state = params.get("state")
        if not state:
            return error_page(
                request,
                "This callback is not from an install we started",
                "HubSpot's redirect carried no state, so it cannot be matched to an install "
                "started here. Nothing was stored.",
            )
        try:
            payload = await run_in_threadpool(deps.states.consume, state)
        except StateExpiredError:
            return error_page(
                request,
                "This install took too long",
                f"The install link expired (it is valid for {options.state_ttl // 60} "
                "minutes). Nothing was stored.",
            )
        except HubSpotOAuthError:
            return error_page(
                request,
                "This callback is not from an install we started",
                "The state in the link is unknown or was already used (each install link "
                "works once). Nothing was stored.",
            )
        error = params.get("error")
        if error:
            return error_page(
                request,
                "HubSpot did not connect the app",
                f"HubSpot answered {error!r}. Nothing was stored.",
                detail=params.get("error_description"),
            )
        code = params.get("code")
        if not code:
            return error_page(
                request,
                "HubSpot sent no authorization code",
                "The redirect had neither a code nor an error. Nothing was stored.",
            )
        try:
            token = await run_in_threadpool(deps.client.exchange_code, code)
        except NetworkError as exc:
            return error_page(
                request,
                f"{options.hubspot_name} could not be reached",
                "The authorization code could not be exchanged for tokens. Nothing was stored.",
                status_code=502,
                detail=str(exc),
            )
        except InvalidClientError as exc:
            # The code is fine: the app's credentials are not (a wrong secret is found here,
            # at the first exchange, since authorize needs none).
            return error_page(
                request,
                "HubSpot refused the app's credentials",
                "The client ID or secret is wrong: check HUBSPOT_CLIENT_ID and "
                "HUBSPOT_CLIENT_SECRET (or CLIENT_ID and CLIENT_SECRET), restart the "
                "quickstart and install again. Nothing was stored.",
                status_code=502,
                detail=str(exc),
            )
        except HubSpotOAuthError as exc:
            return error_page(
                request,
                "HubSpot refused the authorization code",
                "The code could not be exchanged for tokens. Nothing was stored.",
                status_code=502,
                detail=str(exc),
            )
        try:
            # One introspection for the domain and the installing user (reference §6.1);
            # the store then saves without asking again.
            token = await run_in_threadpool(deps.client.with_account_details, token)
        except HubSpotOAuthError as exc:
            unreachable = isinstance(exc, NetworkError)
            return error_page(
                request,
                f"{options.hubspot_name} could not be reached" if unreachable
                else "HubSpot did not confirm the new connection",
                "The account of the new access token could not be looked up (token "
                "introspection). Nothing was stored.",
                status_code=502,
                detail=str(exc),
            )
        try:
            key = await run_in_threadpool(deps.store.save, token, describe=False)
        except HubSpotOAuthError as exc:  # the token store's database or key
            return error_page(
                request,
                "The connection could not be saved",
                "The quickstart's token store refused the new tokens. Nothing was stored.",
                status_code=500,
                detail=str(exc),
                next_step="Fix what the message says (see also the terminal), then install "
                "again.",
            )
        return_to = safe_return_path((payload or {}).get("return_to"))
        target = return_to or f"/accounts/{quote(key, safe='')}?done=connected"
        return RedirectResponse(target, status_code=303)

    async def refresh(request: Request) -> Response:
        key = await _checked_form_key(request)
        try:
            await run_in_threadpool(deps.store.refresh, key)
        except HubSpotOAuthError as exc:
            return _action_error(request, "refresh", exc, key)
        return RedirectResponse(f"/accounts/{quote(key, safe='')}?done=refreshed", 303)

    async def disconnect(request: Request) -> Response:
        key = await _checked_form_key(request)
        try:
            token = await run_in_threadpool(deps.store.get, key)
            if token.refresh_token:
                # Already dead at HubSpot, or another app's token that only that app may
                # revoke: deleting our copy is all that is left to do here.
                try:
                    await run_in_threadpool(deps.client.revoke, token.refresh_token)
                except ReauthorizationRequiredError:
                    pass
                except BadRequestError as exc:
                    if not _issued_to_another_app(exc):
                        raise
            await run_in_threadpool(deps.store.delete, key)
        except HubSpotOAuthError as exc:
            return _action_error(request, "disconnect", exc, key)
        return RedirectResponse("/?done=disconnected", status_code=303)

    def _action_error(
        request: Request, action: str, exc: HubSpotOAuthError, key: str
    ) -> Response:
        if isinstance(exc, ReauthorizationRequiredError) and _issued_to_another_app(exc):
            return error_page(
                request,
                "This connection belongs to another app",
                "HubSpot says its refresh token was issued to another app (client ID) than "
                "the one this quickstart runs as: for example a quickstart on another port, "
                "or an app registered again. This quickstart cannot refresh or revoke it. "
                "Nothing was changed.",
                status_code=409,
                detail=str(exc),
                next_step="Disconnect it here (this deletes only this quickstart's copy), "
                "then install the app again.",
                disconnect_key=key,
            )
        if isinstance(exc, ReauthorizationRequiredError):
            return error_page(
                request,
                "This connection must be installed again",
                "HubSpot no longer accepts its refresh token (the app was uninstalled or "
                "the token revoked).",
                status_code=409,
                detail=str(exc),
                next_step="Disconnect it, then install the app again.",
                disconnect_key=key,
            )
        return error_page(
            request,
            f"Could not {action} the connection",
            "Nothing was changed.",
            status_code=502,
            detail=str(exc),
            next_step="Try again in a moment"
            + (", or disconnect it." if action == "refresh" else "."),
            disconnect_key=key if action == "refresh" else None,
        )

    async def _checked_form_key(request: Request) -> str:
        form = await request.form()
        sent = str(form.get("csrf_token") or "")
        cookie = request.cookies.get(CSRF_COOKIE) or ""
        if not sent or not cookie or not hmac.compare_digest(sent, cookie):
            raise HTTPException(403, "The form is stale or was not sent by this app.")
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "The form was sent from another site.")
        key = str(form.get("key") or "")
        if not key:
            raise HTTPException(400, "The form names no connection.")
        return key

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {403: "Request refused", 404: "Page not found", 405: "Method not allowed"}
        return error_page(
            request,
            titles.get(exc.status_code, "Bad request"),
            str(exc.detail),
            status_code=exc.status_code,
            next_step="Go back to the home page and try again.",
        )

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        log.error("quickstart error on %s: %s", request.url.path, type(exc).__name__)
        return error_page(
            request,
            "Something went wrong",
            f"The quickstart hit an unexpected {type(exc).__name__}. Nothing was changed.",
            status_code=500,
            next_step="Reload the page; if it keeps happening, check the terminal.",
        )

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        try:
            yield
        finally:
            http.close()
            for resource in owned:
                resource.close()

    routes = [
        Route("/", home),
        Route("/accounts/{key}", home),
        Route("/install", install),
        Route(callback_path, oauth_callback),
        Route("/refresh", refresh, methods=["POST"]),
        Route("/disconnect", disconnect, methods=["POST"]),
    ]
    if callback_path != "/oauth-callback":
        routes.append(Route("/oauth-callback", oauth_callback))
    middleware = [Middleware(_SecurityHeaders)]
    if options.access_log:
        middleware.insert(0, Middleware(_AccessLog))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
        lifespan=lifespan,
    )
    app.state.quickstart = deps
    return app


_NOTICES = {
    "connected": "Connected. The tokens are stored; this page reads contacts with them.",
    "refreshed": "The access token was refreshed.",
    "disconnected": "Disconnected: the refresh token was revoked and the connection deleted.",
}


def _csrf_token(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE)
    if token and 20 <= len(token) <= 100:
        return token
    if "csrf_token" not in request.scope.setdefault("state", {}):
        request.scope["state"]["csrf_token"] = secrets.token_urlsafe(32)
    return str(request.scope["state"]["csrf_token"])


def _mask(secret: str | None) -> str:
    if not secret:
        return "—"
    return f"{secret[:6]}…{secret[-4:]}" if len(secret) > 16 else "…"


def _expires_in_text(expires_at: datetime | None) -> tuple[str, bool]:
    if expires_at is None:
        return "unknown", False
    seconds = int((expires_at - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "expired (refreshed on next use)", True
    minutes, secs = divmod(seconds, 60)
    return (f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"), False


def _account_view(connection: Connection, access_token: str | None = None) -> dict[str, Any]:
    expires_text, expired = _expires_in_text(connection.expires_at)
    return {
        "key": connection.key,
        "hub_id": connection.hub_id,
        "hub_domain": connection.hub_domain or "—",
        "user": connection.user or "—",
        "scopes": list(connection.scopes),
        "access_token": _mask(access_token),
        "expires_in": expires_text,
        "expired": expired,
        "needs_reauth": connection.needs_reauthorization,
    }


def _read_contacts(deps: _Deps, key: str) -> dict[str, Any]:
    """The first contacts of one account, or the reason they could not be read."""
    try:
        response = deps.http.get(
            "/crm/v3/objects/contacts",
            params={"limit": CONTACTS_SHOWN, "properties": "firstname,lastname,email"},
            auth=deps.store.auth(key),
        )
    except HubSpotOAuthError as exc:
        return {"error": _contacts_error(exc)}
    except httpx.HTTPError as exc:
        return {"error": f"HubSpot could not be reached ({type(exc).__name__})."}
    if response.status_code == 401:
        return {"error": "HubSpot no longer accepts this connection's access token (was the "
                "app uninstalled?). Try \"Refresh now\"; if that fails, disconnect and "
                "install again."}
    if response.status_code != 200:
        try:
            body = response.json()
            message = body.get("message") or body.get("category") or response.reason_phrase
        except ValueError:
            message = response.reason_phrase
        return {"error": f"HubSpot answered {response.status_code}: {message}"}
    try:
        results = response.json().get("results") or []
    except ValueError:
        return {"error": "HubSpot answered with something that is not JSON."}
    rows = []
    for item in results[:CONTACTS_SHOWN]:
        props = item.get("properties") or {}
        name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
        rows.append({"name": name or "(no name)", "email": props.get("email") or "—"})
    return {"rows": rows}


def _issued_to_another_app(exc: HubSpotOAuthError) -> bool:
    """HubSpot's answer for a token of another client: refresh says "refresh token was not
    issued to this client" (BAD_REFRESH_TOKEN), revoke `unauthorized_client` (RFC 7009
    §2.1: a client may only revoke its own tokens)."""
    message = str(exc).lower()
    return ("not issued to this client" in message or "another client" in message
            or getattr(exc, "error", None) == "unauthorized_client")


def _contacts_error(exc: HubSpotOAuthError) -> str:
    if isinstance(exc, ReauthorizationRequiredError) and _issued_to_another_app(exc):
        return ("This connection's tokens were issued to another app (client ID) than the "
                "one this quickstart runs as, so it cannot use them: disconnect it, then "
                "install the app again.")
    if isinstance(exc, ReauthorizationRequiredError):
        return "HubSpot no longer accepts this connection's refresh token: install again."
    if isinstance(exc, MissingScopesError):
        return f"The connection lacks a scope: {', '.join(exc.required_scopes) or exc.message}"
    if isinstance(exc, NetworkError):
        return "HubSpot could not be reached; try again in a moment."
    if isinstance(exc, HubSpotAPIError):
        return f"HubSpot answered {exc.status_code}: {exc.message}"
    return str(exc)


class _SecurityHeaders:
    """No framing, no referrer to other sites (the callback URL carries a code; same-origin
    keeps the Origin header on our own forms), no caching of pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", _CSP),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"cache-control", b"no-store"),
                ]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


_CSP = (
    b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class _AccessLog:
    """One line per request: method, path (never the query: it carries codes), status."""

    def __init__(self, app: ASGIApp, write: Callable[[str], Any] | None = None) -> None:
        self.app = app
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.write(
                f"quickstart: {scope['method']} {scope['path']} {status[0] if status else '-'}"
            )
