"""Token metadata, introspection and revocation (reference §6).

* GET ``/oauth/v1/access-tokens/{token}`` (§6.1), GET/DELETE
  ``/oauth/v1/refresh-tokens/{token}`` (§6.2, §4.5): no client credentials (as HubSpot);
  an unknown, expired or revoked token answers 404 (UNCONFIRMED at HubSpot, §14 item 16).
* POST ``/oauth/{v3,2026-03,2026-09}/token/introspect`` (§6.3, RFC 7662): client
  credentials in the body; the token as ``token`` or under the field its
  ``token_type_hint`` names; unknown or inactive → ``200 {"active": false}``.
* POST ``/oauth/{v3,2026-03,2026-09}/token/revoke`` (§6.4, RFC 7009): 200 with an empty
  body, also for unknown tokens (UNCONFIRMED at HubSpot).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .token import client_credentials, guarded_run, read_params
from .wire import (
    CORRELATION_HEADER,
    NO_STORE,
    HubSpotHTTPError,
    OAuthError,
    correlation_id,
    error_response,
    json_response,
)

__all__ = ["routes"]

INTROSPECT_VERSIONS = ("v3", "2026-03", "2026-09")
TOKEN_HINTS = ("access_token", "refresh_token")
# The longest token taken anywhere (a path, a form, a bearer header; api.py too): HubSpot
# advises allowing up to 300 characters (reference §5).
MAX_TOKEN = 1024


def _not_found(status: str, what: str) -> HubSpotHTTPError:
    return HubSpotHTTPError(404, "OBJECT_NOT_FOUND",
                            f"{what} not found: it is unknown, expired, deleted or revoked",
                            status=status, headers=NO_STORE)


def _path_token(request: Request, status: str) -> str:
    token = request.path_params["token"]
    if not token or len(token) > MAX_TOKEN:
        raise _not_found(status, "token")
    return token


async def access_token_info(request: Request) -> Response:
    token = _path_token(request, "BAD_ACCESS_TOKEN")
    info = await request.app.state.hubspot.call(request.app.state.hubspot.access_token_info, token)
    if info is None:
        raise _not_found("BAD_ACCESS_TOKEN", "access token")
    info.pop("client_id", None)
    return json_response(request, info, 200, NO_STORE)


async def refresh_token_info(request: Request) -> Response:
    token = _path_token(request, "BAD_REFRESH_TOKEN")
    hubspot = request.app.state.hubspot
    if request.method == "DELETE":
        if not await hubspot.call(hubspot.delete_refresh_token, token):
            raise _not_found("BAD_REFRESH_TOKEN", "refresh token")
        return Response(status_code=204, headers={CORRELATION_HEADER: correlation_id(request),
                                                  **NO_STORE})
    info = await hubspot.call(hubspot.refresh_token_info, token)
    if info is None:
        raise _not_found("BAD_REFRESH_TOKEN", "refresh token")
    return json_response(request, info, 200, NO_STORE)


def token_param(form: dict[str, str]) -> tuple[str, str | None]:
    """The token and its usable ``token_type_hint`` (None) of an introspection or
    revocation form. Raises `OAuthError` ``invalid_request`` for a missing or too long
    token."""
    hint = form.get("token_type_hint") or None
    if hint is not None and hint not in TOKEN_HINTS:
        hint = None  # RFC 7662 §2.1 / RFC 7009 §2.1: an unknown hint is ignored
    token = form.get("token") or ""
    if not token:
        # reference §6.3: HubSpot's guide sends the token under the hint-named field.
        for name in ((hint,) if hint else ()) + TOKEN_HINTS:
            if form.get(name):
                token = form[name]
                hint = hint or name
                break
    if not token:
        raise OAuthError("invalid_request", "BAD_REQUEST",
                         "missing token: send token (and token_type_hint)")
    if len(token) > MAX_TOKEN:
        raise OAuthError("invalid_request", "BAD_REQUEST", "token is too long")
    return token, hint


def _introspection_endpoint(version: str, action: str):  # noqa: ANN202
    async def endpoint(request: Request) -> Response:
        hubspot = request.app.state.hubspot
        try:
            form = await read_params(request, version)
            client_id, client_secret = client_credentials(request, form)
            token, hint = token_param(form)
        except HubSpotHTTPError as exc:
            await hubspot.call(hubspot.count, action, "", "error")
            return error_response(request, exc)
        method = hubspot.introspect if action == "introspect" else hubspot.revoke
        inline = None
        if action == "introspect":
            inline = lambda fault_endpoint: hubspot.introspect(  # noqa: E731
                client_id=client_id, client_secret=client_secret, token=token,
                token_type_hint=hint, fault_endpoint=fault_endpoint, inline=True)
        result = await guarded_run(
            request, client_id, action, "",
            lambda fault_endpoint: method(client_id=client_id, client_secret=client_secret,
                                          token=token, token_type_hint=hint,
                                          fault_endpoint=fault_endpoint),
            inline)
        if isinstance(result, Response):
            return result
        if action == "revoke":
            return Response(b"", status_code=200,
                            headers={CORRELATION_HEADER: correlation_id(request), **NO_STORE})
        return json_response(request, result, 200, NO_STORE)

    return endpoint


routes = [
    Route("/oauth/v1/access-tokens/{token}", access_token_info, methods=["GET"]),
    Route("/oauth/v1/refresh-tokens/{token}", refresh_token_info, methods=["GET", "DELETE"]),
]
for _version in INTROSPECT_VERSIONS:
    routes.append(Route(f"/oauth/{_version}/token/introspect",
                        _introspection_endpoint(_version, "introspect"), methods=["POST"]))
    routes.append(Route(f"/oauth/{_version}/token/revoke",
                        _introspection_endpoint(_version, "revoke"), methods=["POST"]))
