"""The bearer-protected sample API (DESIGN §4; shapes of reference §7 and HubSpot's CRM v3).

* GET/POST ``/crm/v3/objects/contacts`` (list: `limit` 1-100, default 10, `after`,
  `properties`; create needs ``crm.objects.contacts.write``), GET
  ``/crm/v3/objects/contacts/{id}``;
* GET ``/contacts/v1/lists/all/contacts/all`` (`count`, `vidOffset`; HubSpot's Node
  quickstart reads it);
* GET ``/account-info/v3/details``.

Every call: ``Authorization: Bearer <access token>``. 401 ``INVALID_AUTHENTICATION`` (no,
unknown or revoked token) or ``EXPIRED_AUTHENTICATION`` ("expired N second(s) ago", with
``context["expire time"]``); 403 ``MISSING_SCOPES`` with
``errors[0].context.requiredScopes``; 429 ``RATE_LIMITS`` past `rate_limit_max` calls per
window per app and portal; ``X-HubSpot-RateLimit-*`` headers on every authenticated call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .hubspot import TokenGrant, expired_ago, utc_iso
from .metadata import MAX_TOKEN
from .models import contacts, portals
from .ratelimit import count_call
from .storage import FastPathMiss, FastTransaction, HotStatement, all_hot
from .token import run_with_faults
from .wire import (
    HubSpotHTTPError,
    bad_request,
    error_response,
    json_response,
    parse_json,
    rate_limited,
    read_body,
)

__all__ = ["expired_error", "rate_limited", "routes"]

READ_SCOPES = ("crm.objects.contacts.read", "contacts")
WRITE_SCOPES = ("crm.objects.contacts.write", "contacts")
DEFAULT_PROPERTIES = ("firstname", "lastname", "email")
ALWAYS_PROPERTIES = ("createdate", "lastmodifieddate", "hs_object_id")
SCOPES_LINK = "https://developers.hubspot.com/scopes"


def expired_error(expires_at: float, now: float | None) -> HubSpotHTTPError:
    """401 EXPIRED_AUTHENTICATION as HubSpot words it (reference §7.2)."""
    ago = expired_ago((now - expires_at) if now is not None else 0)
    return HubSpotHTTPError(
        401, "EXPIRED_AUTHENTICATION",
        f"The OAuth token used to make this call expired {ago} ago.",
        context={"expire time": [utc_iso(expires_at if now is not None else 0)]},
        headers=_AUTH_FAILURE)


_AUTH_FAILURE = {"x-hubspot-auth-failure": "401 Unauthorized",
                 "WWW-Authenticate": 'Bearer realm="HubSpot", error="invalid_token"'}


def _invalid(message: str) -> HubSpotHTTPError:
    return HubSpotHTTPError(
        401, "INVALID_AUTHENTICATION", message,
        links={"api key": "https://app.hubspot.com/l/api-key/",
               "private-apps": "https://app.hubspot.com/l/private-apps"},
        headers=_AUTH_FAILURE)


def _missing_scopes(required: tuple[str, ...]) -> HubSpotHTTPError:
    return HubSpotHTTPError(
        403, "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call. Read more "
        f"about required scopes here: {SCOPES_LINK}.",
        errors=[{"message": "One or more of the following scopes are required.",
                 "context": {"requiredScopes": list(required)}}],
        links={"scopes": SCOPES_LINK})


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _invalid(
            "Authentication credentials not found. This API supports OAuth 2.0 "
            "authentication and you can find more details at "
            "https://developers.hubspot.com/docs/methods/auth/oauth-overview")
    if len(token) > MAX_TOKEN:
        raise _invalid("The OAuth token used to make this call is not valid.")
    return token


def _open_grant(hubspot: Any) -> TokenGrant | None:
    """`api_auth=False`: every call acts as the seed's first app in its first portal."""
    seed = hubspot.seed
    if not seed.apps or not seed.portals or not seed.users:
        return None
    app = seed.apps[0]
    return TokenGrant(app.app_id, seed.portals[0].hub_id, seed.users[0].user_id,
                      (*app.scopes, *app.optional_scopes), float("inf"))


Handler = Callable[[Connection, TokenGrant, float], tuple[int, Any]]


def _api(scopes: tuple[str, ...] | None, prepare: Callable[[Request], Any]):  # noqa: ANN202
    """Wrap `prepare(request)` → handler(conn, grant, now) as an API endpoint with auth,
    rate limit, scope check, stats and faults."""

    async def endpoint(request: Request) -> Response:
        hubspot = request.app.state.hubspot
        try:
            token = _bearer(request) if hubspot.settings.api_auth else ""
        except HubSpotHTTPError as exc:
            await hubspot.call(hubspot.count, "api", "", "error")
            return error_response(request, exc)
        # HubSpot authenticates and checks scopes before it looks at the input: an input
        # error is raised only once the token has passed those checks (below).
        invalid: HubSpotHTTPError | None = None
        handler: Handler | None = None
        try:
            handler = await prepare(request)
        except HubSpotHTTPError as exc:
            invalid = exc
        fast = getattr(handler, "fast", None)

        def call_fast(fault_endpoint: str | None, inline: bool = False) -> Any:
            if hubspot.settings.api_auth:
                return hubspot.api_call_fast(token, None, scopes, fast, fault_endpoint, inline)
            return hubspot.api_call_fast(None, _open_grant(hubspot), scopes, fast,
                                         fault_endpoint, inline)

        def call(fault_endpoint: str | None) -> tuple[int, Any, dict[str, str]]:
            if fast is not None:
                try:
                    return call_fast(fault_endpoint)
                except FastPathMiss:
                    pass  # the general code below answers, with every rule
            failure: HubSpotHTTPError | None = None
            headers: dict[str, str] = {}
            result: tuple[int, Any] = (200, None)
            with hubspot.api_transaction() as conn:
                now = hubspot.now_in(conn, fault_endpoint)
                try:
                    grant = (hubspot.authenticate(conn, token, now)
                             if hubspot.settings.api_auth else _open_grant(hubspot))
                    if grant is None:
                        raise _invalid("The OAuth token used to make this call is not valid "
                                       "(unknown or revoked).")
                    if isinstance(grant, float):
                        raise expired_error(grant, now)
                    window = hubspot.rate_limit(conn, grant, now)
                    headers = window.headers()
                    if not window.allowed:
                        raise rate_limited(max(1, -(-window.reset_in_ms // 1000)))
                    if not grant.allows(scopes):
                        raise _missing_scopes(scopes[:1])
                    if invalid is not None or handler is None:
                        raise invalid or bad_request("bad request")
                    result = handler(conn, grant, now)
                except HubSpotHTTPError as exc:
                    failure = exc
                count_call(conn, "api", "", "error" if failure else "ok")
            if failure is not None:
                failure.headers = {**headers, **failure.headers}
                raise failure
            return result[0], result[1], headers

        try:
            outcome = await run_with_faults(
                request, "api", call, ("api", ""),
                None if fast is None else lambda fault_endpoint: call_fast(fault_endpoint, True))
        except HubSpotHTTPError as exc:
            return error_response(request, exc)
        if isinstance(outcome, Response):
            return outcome
        status, payload, headers = outcome
        return json_response(request, payload, status, headers)

    return endpoint


# -- contacts ------------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise bad_request(f"'{name}' must be an integer between {low} and {high}, got "
                          f"'{raw[:40]}'")
    return int(raw)


def _properties_param(request: Request) -> tuple[str, ...]:
    names: list[str] = []
    for value in request.query_params.getlist("properties"):
        names.extend(p.strip() for p in value.split(",") if p.strip())
    if len(names) > 100 or any(len(n) > 100 for n in names):
        raise bad_request("'properties' may name at most 100 properties of 100 characters")
    return tuple(dict.fromkeys(names)) or DEFAULT_PROPERTIES


def _contact_json(row: Any, names: tuple[str, ...]) -> dict[str, Any]:
    props = row.properties or {}
    out: dict[str, Any] = {n: props.get(n) for n in names}
    created, updated, object_id = utc_iso(row.created_at), utc_iso(row.updated_at), str(row.id)
    out.update({"createdate": created, "lastmodifieddate": updated, "hs_object_id": object_id})
    return {"id": object_id, "properties": out, "createdAt": created, "updatedAt": updated,
            "archived": False}


# A portal's contacts after a cursor, in id order (built once; hot path of the benchmarks).
_LIST_CONTACTS = HotStatement(
    sa.select(contacts).where(contacts.c.hub_id == sa.bindparam("hub_id"),
                              contacts.c.id > sa.bindparam("after"))
    .order_by(contacts.c.id).limit(sa.bindparam("limit", type_=sa.Integer)))


async def _list_contacts(request: Request) -> Handler:
    limit = _int_param(request, "limit", 10, 1, 100)
    after_raw = request.query_params.get("after") or "0"
    if not after_raw.isascii() or not after_raw.isdigit() or len(after_raw) > 18:
        raise bad_request(f"'after' must be a paging cursor from a previous page, got "
                          f"'{after_raw[:40]}'")
    after = int(after_raw)
    names = _properties_param(request)

    def page(rows: list) -> tuple[int, Any]:
        body: dict[str, Any] = {"results": [_contact_json(r, names) for r in rows[:limit]]}
        if len(rows) > limit:
            cursor = str(rows[limit - 1].id)
            base = str(request.url.replace(query=""))
            body["paging"] = {"next": {"after": cursor,
                                       "link": f"{base}?after={cursor}&limit={limit}"}}
        return 200, body

    def handler(db: Connection | FastTransaction, grant: TokenGrant,
                now: float) -> tuple[int, Any]:
        return page(all_hot(db, _LIST_CONTACTS, {
            "hub_id": grant.hub_id, "after": after, "limit": limit + 1}))

    handler.fast = handler  # type: ignore[attr-defined]  # also runs in api_call_fast
    return handler


async def _get_contact(request: Request) -> Handler:
    raw = request.path_params["contact_id"]
    names = _properties_param(request)

    def handler(conn: Connection, grant: TokenGrant, now: float) -> tuple[int, Any]:
        row = None
        if raw.isascii() and raw.isdigit() and len(raw) <= 18:
            row = conn.execute(sa.select(contacts).where(
                contacts.c.id == int(raw), contacts.c.hub_id == grant.hub_id)).first()
        if row is None:
            raise HubSpotHTTPError(404, "OBJECT_NOT_FOUND",
                                   "Object not found.  objectId are usually numeric.",
                                   context={"id": [raw[:100]]})
        return 200, _contact_json(row, names)

    return handler


async def _create_contact(request: Request) -> Handler:
    settings = request.app.state.hubspot.settings
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise HubSpotHTTPError(415, "VALIDATION_ERROR",
                               "Content-Type must be application/json")
    data = parse_json(await read_body(request, settings.max_body_bytes))
    props = data.get("properties") if isinstance(data, dict) else None
    if not isinstance(props, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in props.items()):
        raise bad_request("Invalid input JSON: 'properties' must be an object of property "
                          "names to string values")
    if len(props) > 200 or any(len(k) > 100 or len(str(v)) > 65536 for k, v in props.items()):
        raise bad_request("too many or too long properties")
    values = {k: str(v) for k, v in props.items() if k not in ALWAYS_PROPERTIES}

    def handler(conn: Connection, grant: TokenGrant, now: float) -> tuple[int, Any]:
        email = values.get("email", "").strip().lower()
        if email:
            for existing in conn.execute(sa.select(contacts.c.id, contacts.c.properties)
                                         .where(contacts.c.hub_id == grant.hub_id)):
                if str((existing.properties or {}).get("email", "")).lower() == email:
                    raise HubSpotHTTPError(409, "CONFLICT",
                                           f"Contact already exists. Existing ID: {existing.id}")
        new_id = conn.execute(sa.insert(contacts).values(
            hub_id=grant.hub_id, properties=values, created_at=now, updated_at=now)
            .returning(contacts.c.id)).scalar_one()
        row = conn.execute(sa.select(contacts).where(contacts.c.id == new_id)).one()
        return 201, _contact_json(row, tuple(values) or DEFAULT_PROPERTIES)

    return handler


async def _legacy_contacts(request: Request) -> Handler:
    count = _int_param(request, "count", 20, 1, 100)
    offset = _int_param(request, "vidOffset", 0, 0, 10**17)

    def handler(conn: Connection, grant: TokenGrant, now: float) -> tuple[int, Any]:
        rows = conn.execute(sa.select(contacts).where(
            contacts.c.hub_id == grant.hub_id, contacts.c.id > offset)
            .order_by(contacts.c.id).limit(count + 1)).all()
        page = rows[:count]
        found = []
        for r in page:
            props = {k: {"value": str(v)} for k, v in (r.properties or {}).items()}
            props["lastmodifieddate"] = {"value": str(int(r.updated_at * 1000))}
            found.append({"addedAt": int(r.created_at * 1000), "vid": r.id,
                          "canonical-vid": r.id, "portal-id": grant.hub_id,
                          "is-contact": True, "properties": props})
        return 200, {"contacts": found, "has-more": len(rows) > count,
                     "vid-offset": page[-1].id if page else offset}

    return handler


async def _account_details(request: Request) -> Handler:
    def handler(conn: Connection, grant: TokenGrant, now: float) -> tuple[int, Any]:
        portal = conn.execute(sa.select(portals).where(portals.c.hub_id == grant.hub_id)
                              ).first()
        hublet = portal.hublet if portal else "na1"
        return 200, {
            "portalId": grant.hub_id, "accountType": "STANDARD", "timeZone": "US/Eastern",
            "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "-05:00",
            "utcOffsetMilliseconds": -18000000,
            "uiDomain": "app.hubspot.com" if hublet == "na1" else f"app-{hublet}.hubspot.com",
            "dataHostingLocation": hublet,
        }

    return handler


routes = [
    Route("/crm/v3/objects/contacts", _api(READ_SCOPES, _list_contacts), methods=["GET"],
          name="contacts-list"),
    Route("/crm/v3/objects/contacts", _api(WRITE_SCOPES, _create_contact), methods=["POST"],
          name="contacts-create"),
    Route("/crm/v3/objects/contacts/{contact_id}", _api(READ_SCOPES, _get_contact),
          methods=["GET"]),
    Route("/contacts/v1/lists/all/contacts/all", _api(READ_SCOPES, _legacy_contacts),
          methods=["GET"]),
    Route("/account-info/v3/details", _api(None, _account_details), methods=["GET"]),
]
