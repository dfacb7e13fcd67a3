"""The authorize pages: what the user's browser sees at ``/oauth/authorize``.

Flow (reference §2.5, DESIGN §4): GET ``/oauth/authorize`` or ``/oauth/{accountId}/authorize``
→ install checks of `install.py` (errors are HTML pages, never redirects) → login page →
account picker (skipped when the URL pins an account) → consent page → Grant: 302 to
``redirect_uri?code=…&state=…``; Cancel: a page, nothing is sent to the app.

State between the pages:

- The authorization request itself travels in a signed, timed token (itsdangerous) in a
  hidden form field or the ``/oauth/authorize/continue`` URL, never in a cookie slot, so
  several authorizations in one browser (several tabs) do not clobber each other
  (cases/README.md C6). Tampering gives the "install link is no longer valid" page.
- The signed session cookie ``hubspot_local_session`` (HttpOnly, SameSite=Lax, path
  ``/oauth``) holds only the signed-in user and the CSRF secret. Every form carries that
  secret; a POST without the matching value gets a 403 page and changes nothing.

Signing key: ``app.state.authorize_secret`` when set (bytes or str), else the database's
shared secret (signing.py), so every process on one database accepts the others' pages (a
load balancer may send each request elsewhere) and a restart keeps the user signed in.
Every page sends ``X-Frame-Options: DENY``, ``Content-Security-Policy: frame-ancestors 'none'; …``,
``Cache-Control: no-store`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import dataclasses
import hmac
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from .bruteforce import guard_for, locked_message, login_keys
from .install import (
    AppRegistration,
    AuthorizeRequest,
    InstallError,
    ScopeRequest,
    authorization_redirect,
    check_authorize_request,
    check_install,
    describe_scope,
    invalid_link,
    parse_authorize_query,
)
from .seed import INSTALL_ROLES
from .signing import shared_secret

__all__ = ["SESSION_COOKIE", "routes"]

SESSION_COOKIE = "hubspot_local_session"
SESSION_MAX_AGE = 12 * 3600  # seconds; a signed-in session lasts a working day
AUTHORIZATION_MAX_AGE = 3600  # seconds a user may take between the pages of one install
CSS_PATH = "/oauth/assets/authorize.css"

LOGIN_PATH = "/oauth/authorize/login"
ACCOUNT_PATH = "/oauth/authorize/account"
DECISION_PATH = "/oauth/authorize/decision"
LOGOUT_PATH = "/oauth/authorize/logout"
# Install errors caused by who is signed in: their page offers "Use a different user".
SWITCH_USER_ERRORS = frozenset({"no_permission", "account_not_found"})
CONTINUE_PATH = "/oauth/authorize/continue"

# One message whether the e-mail is unknown or the password wrong (no user enumeration).
LOGIN_FAILED = "The email address or password is incorrect. Check them and try again."
STALE_LOGIN = "This sign-in form had expired. Enter your email address and password again."

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_env = Environment(
    loader=FileSystemLoader(str(_TEMPLATES)),
    autoescape=select_autoescape(["html"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


# --- responses ----------------------------------------------------------------------------


def _protect(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _page(template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("css_url", CSS_PATH)
    html = _env.get_template(template).render(**context)
    return _protect(HTMLResponse(html, status_code=status_code))


def _error_page(error: InstallError) -> Response:
    return _page("error.html", status_code=error.status_code, error=error)


def _csrf_error() -> InstallError:
    return InstallError(
        "csrf",
        "This page has expired, or it was opened in another browser session, so it can't "
        "be used to connect the app.",
        hint="Go back to the app and start the connection again.",
        status_code=403,
    )


def _bad_form() -> InstallError:
    return InstallError(
        "invalid_request",
        "The form could not be read.",
        hint="Go back to the app and start the connection again.",
    )


# --- signing: session cookie and authorization tokens --------------------------------------


def _secret(request: Request) -> bytes | str:
    state = request.app.state
    secret = getattr(state, "authorize_secret", None)
    if not secret:
        # Once per process: one short query (every process on the database shares it).
        secret = shared_secret(_hubspot(request).engine)
        state.authorize_secret = secret
    return secret


def _serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_secret(request), salt=salt)


@dataclasses.dataclass
class _Session:
    csrf: str
    user_id: int | None = None
    email: str | None = None
    fresh: bool = False  # needs a Set-Cookie


def _load_session(request: Request) -> _Session | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        data = _serializer(request, "hubspot-oauth.session").loads(raw, max_age=SESSION_MAX_AGE)
        csrf = data["csrf"]
        user_id = data.get("uid")
        email = data.get("email")
    except (BadSignature, KeyError, TypeError, AttributeError, ValueError):
        return None
    if not isinstance(csrf, str) or (user_id is not None and not isinstance(user_id, int)):
        return None
    return _Session(csrf=csrf, user_id=user_id, email=email)


def _session(request: Request) -> _Session:
    return _load_session(request) or _Session(csrf=secrets.token_urlsafe(32), fresh=True)


def _save_session(request: Request, response: Response, session: _Session) -> Response:
    value = _serializer(request, "hubspot-oauth.session").dumps(
        {"csrf": session.csrf, "uid": session.user_id, "email": session.email}
    )
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_MAX_AGE,
        path="/oauth",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def _csrf_ok(session: _Session | None, submitted: object) -> bool:
    if session is None or not isinstance(submitted, str) or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())


def _seal(request: Request, areq: AuthorizeRequest, hub_id: int | None = None) -> str:
    return _serializer(request, "hubspot-oauth.authorization").dumps(
        {"r": areq.to_dict(), "h": hub_id}
    )


def _unseal(request: Request, token: object) -> tuple[AuthorizeRequest, int | None]:
    """Raises InstallError(invalid_link) for a missing, tampered or expired token."""
    if not isinstance(token, str) or not token:
        raise invalid_link()
    try:
        data = _serializer(request, "hubspot-oauth.authorization").loads(
            token, max_age=AUTHORIZATION_MAX_AGE
        )
        hub_id = data["h"]
        areq = AuthorizeRequest.from_dict(data["r"])
    except (BadSignature, KeyError, TypeError) as exc:
        raise invalid_link() from exc
    if hub_id is not None and not isinstance(hub_id, int):
        raise invalid_link()
    return areq, hub_id


# --- the directory: LocalHubSpot's reads (apps, users, portals) ---------------------------


def _hubspot(request: Request) -> Any:
    return request.app.state.hubspot


def _settings(request: Request) -> Any:
    return _hubspot(request).settings


def _find_app(request: Request, client_id: str | None) -> AppRegistration | None:
    return _hubspot(request).app_registration(client_id)


def _sample_users(request: Request) -> list[dict[str, str]]:
    """The default seed's users and their (published, DESIGN §4) passwords, shown on the
    login page; never a seed file's users."""
    seed = getattr(_hubspot(request), "seed", None)
    if seed is None or not getattr(seed, "is_default", False):
        return []
    notes = {"super_admin": "super admin", "marketplace": "App Marketplace Access"}
    found = []
    for user in seed.users:
        roles = set(user.roles.values())
        note = next((notes[r] for r in INSTALL_ROLES if r in roles),
                    "may not install apps")
        found.append({"email": user.email, "password": user.password, "note": note})
    return found


def _signed_in_user(request: Request, session: _Session) -> Any:
    """The session's user (a `UserRecord`), or None when signed out or since deleted."""
    if session.user_id is None or not session.email:
        return None
    user = _hubspot(request).user(session.email)
    return user if user is not None and user.user_id == session.user_id else None


def _login_guard(request: Request) -> Any:
    # The app's one guard, shared with the endpoints that authenticate clients.
    return guard_for(request.app.state)


# --- the flow -----------------------------------------------------------------------------


def _query_pairs(request: Request) -> list[tuple[str, str]]:
    """The raw query string, decoded strictly: non-UTF-8 percent-escapes are refused
    instead of being replaced, because `state` must come back byte for byte."""
    raw: bytes = request.scope.get("query_string", b"")
    try:
        text = raw.decode("ascii")
        return parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InstallError(
            "invalid_parameter",
            "Authorization failed because the install URL is not valid UTF-8. "
            "Please contact the app developer.",
            hint="The install link is malformed; the app developer has to fix it.",
        ) from exc


async def authorize(request: Request) -> Response:
    """GET /oauth/authorize and /oauth/{accountId}/authorize."""
    try:
        pairs = _query_pairs(request)
        areq = parse_authorize_query(pairs, request.path_params.get("account_id"))
        app = await run_in_threadpool(_find_app, request, areq.client_id)
        scope_request = check_authorize_request(app, areq)
        auto = _settings(request).auto_approve
        if auto:
            return await _auto_approve(request, scope_request, auto)
        return await _next_step(request, _session(request), scope_request, None)
    except InstallError as error:
        return _error_page(error)


async def resume(request: Request) -> Response:
    """GET /oauth/authorize/continue?authorization=…: the page after a form was posted."""
    try:
        areq, hub_id = _unseal(request, request.query_params.get("authorization"))
        app = await run_in_threadpool(_find_app, request, areq.client_id)
        scope_request = check_authorize_request(app, areq)
        return await _next_step(request, _session(request), scope_request, hub_id)
    except InstallError as error:
        return _error_page(error)


async def _next_step(
    request: Request, session: _Session, scope_request: ScopeRequest, hub_id: int | None
) -> Response:
    """Render the page the user is at: login, account picker or consent."""
    areq = scope_request.request
    user = await run_in_threadpool(_signed_in_user, request, session)
    if user is None:
        session.user_id = session.email = None
        response = _page(
            "login.html",
            app=scope_request.app,
            authorization=_seal(request, areq),
            csrf_token=session.csrf,
            login_url=LOGIN_PATH,
            email="",
            error=None,
            sample_users=_sample_users(request),
        )
        return _save_session(request, response, session)
    if hub_id is None:
        hub_id = areq.account_id
    common = {
        "app": scope_request.app,
        "csrf_token": session.csrf,
        "user_email": user.email,
        "logout_url": LOGOUT_PATH,
    }
    if hub_id is None:
        portals = await run_in_threadpool(_hubspot(request).portals_for, user.email)
        response = _page(
            "accounts.html",
            portals=portals,
            authorization=_seal(request, areq),
            account_url=ACCOUNT_PATH,
            **common,
        )
        return _save_session(request, response, session)
    portal = await run_in_threadpool(_hubspot(request).portal_access, user.email, hub_id)
    try:
        grant = check_install(scope_request, portal)
    except InstallError as error:
        if error.kind not in SWITCH_USER_ERRORS:
            raise
        # The user is the problem, not the app: offer "Use a different user" (sign out,
        # then this same authorization from the login page), as HubSpot's page does.
        response = _page(
            "error.html", status_code=error.status_code, error=error,
            authorization=_seal(request, areq), **common,
        )
        return _save_session(request, response, session)
    assert portal is not None  # check_install refuses a missing portal
    optional = set(scope_request.optional)
    scopes = [
        {"description": describe_scope(scope), "optional": scope in optional}
        for scope in grant.scopes
    ]
    redirect = urlsplit(areq.redirect_uri or "")
    response = _page(
        "consent.html",
        portal=portal,
        scopes=scopes,
        redirect_host=redirect.netloc,
        authorization=_seal(request, areq, hub_id),
        decision_url=DECISION_PATH,
        **common,
    )
    return _save_session(request, response, session)


async def _form(request: Request) -> dict[str, str]:
    """The posted form as single values; a repeated field or a non-form body is refused."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _bad_form()
    try:
        form = await request.form(max_files=0, max_fields=20, max_part_size=16 * 1024)
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad form
        raise _bad_form() from exc
    values: dict[str, str] = {}
    for name, value in form.multi_items():
        if name in values or not isinstance(value, str):
            raise _bad_form()
        values[name] = value
    return values


_Posted = tuple[dict[str, str], _Session, AuthorizeRequest, int | None]


async def _posted(request: Request) -> _Posted:
    """Read a form post: CSRF first (nothing else is looked at without it), then the
    authorization token."""
    form = await _form(request)
    session = _load_session(request)
    if session is None or not _csrf_ok(session, form.get("csrf_token")):
        raise _csrf_error()
    areq, hub_id = _unseal(request, form.get("authorization"))
    return form, session, areq, hub_id


def _continue(request: Request, areq: AuthorizeRequest, hub_id: int | None) -> str:
    return f"{CONTINUE_PATH}?{urlencode({'authorization': _seal(request, areq, hub_id)})}"


async def login(request: Request) -> Response:
    """POST /oauth/authorize/login: e-mail and password."""
    try:
        form, session, areq, _ = await _posted(request)
        app = await run_in_threadpool(_find_app, request, areq.client_id)
        scope_request = check_authorize_request(app, areq)
    except InstallError as error:
        if error.kind == "csrf":
            return await _stale_login_form(request)
        return _error_page(error)
    email = form.get("email", "").strip()
    password = form.get("password", "")
    guard = _login_guard(request)
    keys = login_keys(email, request.client.host if request.client else None)

    def render(error: str, status_code: int) -> Response:
        response = _page(
            "login.html",
            status_code=status_code,
            app=scope_request.app,
            authorization=_seal(request, areq),
            csrf_token=session.csrf,
            login_url=LOGIN_PATH,
            email=email,
            error=error,
            sample_users=_sample_users(request),
        )
        return response

    attempt = await guard.enter(*keys)  # counts passwords in flight (bruteforce.py)
    if not attempt.allowed:
        verdict = attempt.verdict
        response = render(locked_message(verdict.retry_after), 429)
        response.headers["Retry-After"] = verdict.retry_after_header
        return response
    with attempt:  # released whatever happens (a database error, a cancelled request)
        # argon2 verification; an unknown e-mail costs the same as a wrong password.
        user = await run_in_threadpool(_hubspot(request).authenticate_user, email, password)
        if user is None:
            attempt.failure()
            return render(LOGIN_FAILED, 200)
        attempt.success()
    session.user_id = int(user.user_id)
    session.email = user.email
    response = _protect(RedirectResponse(_continue(request, areq, None), status_code=303))
    return _save_session(request, response, session)


async def _stale_login_form(request: Request) -> Response:
    """A login form whose CSRF token no longer matches the session (two tabs opened before
    either had a cookie, or a server restart): nothing happens; a 403 login page with a
    fresh form asks for the credentials again."""
    try:
        form = await _form(request)
        areq, _ = _unseal(request, form.get("authorization"))
        app = await run_in_threadpool(_find_app, request, areq.client_id)
        scope_request = check_authorize_request(app, areq)
    except InstallError:
        return _error_page(_csrf_error())
    session = _session(request)
    response = _page(
        "login.html",
        status_code=403,
        app=scope_request.app,
        authorization=_seal(request, areq),
        csrf_token=session.csrf,
        login_url=LOGIN_PATH,
        email=form.get("email", "").strip(),
        error=STALE_LOGIN,
        sample_users=_sample_users(request),
    )
    return _save_session(request, response, session)


async def logout(request: Request) -> Response:
    """POST /oauth/authorize/logout: sign out and show the login page again."""
    try:
        _, session, areq, _ = await _posted(request)
    except InstallError as error:
        return _error_page(error)
    session.user_id = session.email = None
    response = _protect(RedirectResponse(_continue(request, areq, None), status_code=303))
    return _save_session(request, response, session)


async def choose_account(request: Request) -> Response:
    """POST /oauth/authorize/account: the account picker's choice."""
    try:
        form, session, areq, _ = await _posted(request)
        raw = form.get("hub_id", "")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise _bad_form()
        if areq.account_id is not None and int(raw) != areq.account_id:
            raise _bad_form()
    except InstallError as error:
        return _error_page(error)
    return _protect(RedirectResponse(_continue(request, areq, int(raw)), status_code=303))


async def decide(request: Request) -> Response:
    """POST /oauth/authorize/decision: Grant access (302 to the app) or Cancel (a page)."""
    try:
        form, session, areq, hub_id = await _posted(request)
        hub_id = hub_id if hub_id is not None else areq.account_id
        decision = form.get("decision")
        if hub_id is None or decision not in ("grant", "cancel"):
            raise _bad_form()
        user = await run_in_threadpool(_signed_in_user, request, session)
        if user is None:
            # Signed out in another tab meanwhile: sign in again, then back to consent.
            return _protect(RedirectResponse(_continue(request, areq, hub_id), status_code=303))
        app = await run_in_threadpool(_find_app, request, areq.client_id)
        scope_request = check_authorize_request(app, areq)
        portal = await run_in_threadpool(_hubspot(request).portal_access, user.email, hub_id)
        if decision == "cancel":
            # "If the user doesn't grant access, no request will be sent" [DOC-QS-GUIDE].
            # The way back is the registered redirect URI's origin (checked above, so no
            # open redirect), without its path and query: nothing reaches the callback.
            redirect = urlsplit(areq.redirect_uri or "")
            return _page("cancelled.html", app=scope_request.app, portal=portal,
                         back_url=f"{redirect.scheme}://{redirect.netloc}/")
        check_install(scope_request, portal)
        code = await run_in_threadpool(_issue_code, request, areq, user.email, hub_id)
    except InstallError as error:
        return _error_page(error)
    return _redirect_to_app(areq, code)


def _issue_code(request: Request, areq: AuthorizeRequest, email: str, hub_id: int) -> str:
    return _hubspot(request).issue_code(
        client_id=areq.client_id,
        redirect_uri=areq.redirect_uri,
        user_email=email,
        hub_id=hub_id,
        scopes=list(areq.scopes or ()),
        optional_scopes=list(areq.optional_scopes),
        code_challenge=areq.code_challenge,
        code_challenge_method=areq.code_challenge_method,
    )


def _redirect_to_app(areq: AuthorizeRequest, code: str) -> Response:
    assert areq.redirect_uri is not None
    location = authorization_redirect(areq.redirect_uri, code, areq.state)
    return _protect(RedirectResponse(location, status_code=302))


async def _auto_approve(request: Request, scope_request: ScopeRequest, email: str) -> Response:
    """`--auto-approve EMAIL`: no pages; the pinned portal or the first eligible one."""
    areq = scope_request.request
    user = await run_in_threadpool(_hubspot(request).user, email)
    if user is None:
        raise InstallError(
            "auto_approve_user",
            f"The auto-approve user {email} does not exist on this local HubSpot.",
            hint="Start the server with --auto-approve set to the e-mail of a seeded user.",
            status_code=403,
        )
    portals = await run_in_threadpool(_hubspot(request).portals_for, user.email)
    if areq.account_id is not None:
        chosen = next((p for p in portals if p.hub_id == areq.account_id), None)
        check_install(scope_request, chosen)
    else:
        chosen = None
        first_error: InstallError | None = None
        for portal in portals:
            try:
                check_install(scope_request, portal)
            except InstallError as error:
                first_error = first_error or error
                continue
            chosen = portal
            break
        if chosen is None:
            raise first_error or InstallError(
                "account_not_found",
                f"The auto-approve user {user.email} doesn't belong to any HubSpot account.",
                status_code=403,
            )
    assert chosen is not None
    code = await run_in_threadpool(_issue_code, request, areq, user.email, chosen.hub_id)
    return _redirect_to_app(areq, code)


async def stylesheet(request: Request) -> Response:
    """GET /oauth/assets/authorize.css."""
    css = (_TEMPLATES / "authorize.css").read_text(encoding="utf-8")
    response = Response(css, media_type="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


routes = [
    Route("/oauth/authorize", authorize, methods=["GET"]),
    Route("/oauth/authorize/continue", resume, methods=["GET"]),
    Route(LOGIN_PATH, login, methods=["POST"]),
    Route(ACCOUNT_PATH, choose_account, methods=["POST"]),
    Route(DECISION_PATH, decide, methods=["POST"]),
    Route(LOGOUT_PATH, logout, methods=["POST"]),
    Route(CSS_PATH, stylesheet, methods=["GET"]),
    Route("/oauth/{account_id}/authorize", authorize, methods=["GET"]),
]
