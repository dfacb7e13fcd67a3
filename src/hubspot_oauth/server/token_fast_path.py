"""The token endpoint's fast path: ``POST /oauth/{version}/token`` and
``POST /oauth/{version}/token/introspect`` answered in plain ASGI ahead of Starlette's
routing, for the common case only (issue 7).

The general routes (token.py, metadata.py) apply every rule to every request; most of
their cost on a refresh was Starlette (routing, `Request`, `Response`), not the grant.
This path answers only a request whose answer it knows is the general route's, byte for
byte: no query string, a form body within the size limit, every parameter once and at
most `MAX_PARAM` characters, client credentials and the endpoint's parameters present, a
client the brute-force guard lets through, and the domain's inline hot path answering it
(`LocalHubSpot.refresh`, `.exchange_code` or `.introspect` with ``inline=True``; they
count stats and check the fault queue themselves). Anything else (and every refusal) is
handed to the general route untouched: the ASGI messages read so far are replayed, and
nothing was written or counted. An `OAuthError` the inline call itself raises is
answered here exactly as `token.guarded_run` does.

`HubSpotMiddleware` (app.py) calls `FAST_PATHS[path]` for a POST after giving the request
its correlation id, so 431, 503 and 500 answers stay the middleware's.
tests/server/test_token_fast_path.py sends the same requests through both paths.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from .bruteforce import guard_for, token_keys
from .hubspot import FaultPending
from .metadata import INTROSPECT_VERSIONS, token_param
from .storage import FastPathBusy, FastPathMiss
from .token import (
    INLINE_MISSED_KEY,
    MAX_PARAM,
    TOKEN_VERSIONS,
    run_inline,
    settle_client_auth,
)
from .wire import (
    CORRELATION_HEADER,
    FORM_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    NO_STORE,
    HubSpotHTTPError,
    error_response,
    json_bytes,
    parse_pairs,
)

__all__ = ["FAST_PATHS", "Answer", "FastPath"]

# (status, raw headers, body) of a complete answer.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
FastPath = Callable[[Scope, Receive, str], Awaitable["Answer | Receive"]]

_CID = CORRELATION_HEADER.lower().encode("latin-1")
# After the correlation id, the headers `wire.json_response(..., NO_STORE)` sends, in
# Starlette's order (given headers, content-length, content-type).
_NO_STORE = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in NO_STORE.items()]
_JSON = (b"content-type", JSON_CONTENT_TYPE.encode("latin-1"))


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` as if `messages` had not been read yet."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _read_form(scope: Scope, receive: Receive, limit: int,
                     read: list[Message]) -> dict[str, str] | None:
    """The form parameters when the general route would accept them as they are (it
    would answer nothing else than parsing them); None to hand the request over. Every
    message taken from `receive` is appended to `read`."""
    if scope.get("query_string") or scope.get("root_path"):
        return None
    content_type = length = None
    for name, value in scope["headers"]:
        # The first of repeated headers, as Starlette's `Headers.get`.
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"content-length" and length is None:
            length = value
    if content_type is None or length is None:
        return None
    media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
    if media != FORM_CONTENT_TYPE:
        return None
    try:
        if int(length) > limit:
            return None
    except ValueError:
        return None
    chunks = []
    size = 0
    while True:
        message = await receive()
        read.append(message)
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        form = parse_pairs(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    except HubSpotHTTPError:
        return None
    for value in form.values():
        if len(value) > MAX_PARAM:
            return None
    return form


Call = Callable[..., dict[str, Any]]


def _token_call(hubspot: Any, form: dict[str, str]) -> Call | None:
    """The token endpoint's grant for `form` (token.py's rules), or None to hand over."""
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token":
        refresh_token = form.get("refresh_token")
        if refresh_token:
            return functools.partial(hubspot.refresh, refresh_token=refresh_token)
    elif grant_type == "authorization_code":
        code = form.get("code")
        redirect_uri = form.get("redirect_uri")
        if code and redirect_uri:
            return functools.partial(hubspot.exchange_code, code=code,
                                     redirect_uri=redirect_uri,
                                     code_verifier=form.get("code_verifier") or None)
    return None


def _introspect_call(hubspot: Any, form: dict[str, str]) -> Call | None:
    """The introspection of `form`'s token (metadata.py's rules), or None to hand over."""
    try:
        token, hint = token_param(form)
    except HubSpotHTTPError:
        return None
    return functools.partial(hubspot.introspect, token=token, token_type_hint=hint)


def _fast_path(endpoint: str, build: Callable[[Any, dict[str, str]], Call | None],
               token_use: bool) -> FastPath:
    """An endpoint that authenticates a client from the form and answers JSON: `build`
    makes its domain call (run with ``inline=True``, its fault queue `endpoint`);
    `token_use` adds ``"token_use": "access_token"`` (token endpoint after v1)."""
    async def answer(scope: Scope, receive: Receive, cid: str) -> Answer | Receive:
        state = scope["app"].state
        hubspot = state.hubspot
        read: list[Message] = []
        form = await _read_form(scope, receive, hubspot.settings.max_body_bytes, read)
        if form is None:
            return _replay(read, receive)
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        call = build(hubspot, form) if client_id and client_secret else None
        if call is None:
            return _replay(read, receive)
        guard = guard_for(state)
        client = scope.get("client")
        keys = token_keys(client_id, client[0] if client is not None else None)
        attempt = guard.try_enter(*keys)  # locked or busy: the general path answers
        if not attempt.allowed:
            return _replay(read, receive)
        with attempt:  # released on a miss (the general path enters again) or an error
            try:
                payload = await run_inline(functools.partial(
                    call, client_id=client_id, client_secret=client_secret,
                    fault_endpoint=endpoint, inline=True))
            except (FastPathBusy, FaultPending):
                return _replay(read, receive)
            except FastPathMiss:
                scope[INLINE_MISSED_KEY] = True  # the general route need not try again
                return _replay(read, receive)
            except HubSpotHTTPError as exc:
                settle_client_auth(attempt, exc)
                response = error_response(Request(scope), exc)
                return response.status_code, response.raw_headers, bytes(response.body)
            settle_client_auth(attempt, None)
        if token_use:
            payload["token_use"] = "access_token"
        body = json_bytes(payload)
        return 200, [(_CID, cid.encode("latin-1")), *_NO_STORE,
                     (b"content-length", str(len(body)).encode("latin-1")), _JSON], body

    return answer


FAST_PATHS: dict[str, FastPath] = {
    **{f"/oauth/{v}/token": _fast_path("token", _token_call, v != "v1")
       for v in TOKEN_VERSIONS},
    **{f"/oauth/{v}/token/introspect": _fast_path("introspect", _introspect_call, False)
       for v in INTROSPECT_VERSIONS},
}
