"""HubSpot's wire formats: JSON answers, error bodies, correlation ids, form parsing.

Every error answer is HubSpot's JSON error shape (reference §4.3, §7): ``message`` and
``correlationId`` always (the correlation id is also in ``X-HubSpot-Correlation-Id``);
``category`` always (so 2026-03's `Error` schema validates); token-endpoint errors add the
legacy ``status`` and the RFC 6749 §5.2 ``error``/``error_description``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "CORRELATION_HEADER",
    "FORM_BODY_KEY",
    "FORM_CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "HubSpotHTTPError",
    "OAuthError",
    "correlation_id",
    "error_response",
    "json_bytes",
    "json_response",
    "parse_form",
    "parse_json",
    "rate_limited",
    "read_body",
]

CORRELATION_HEADER = "X-HubSpot-Correlation-Id"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# The Content-Type of every JSON answer (routes, the token fast path, the middleware).
JSON_CONTENT_TYPE = "application/json;charset=utf-8"
# Where `parse_form` leaves the raw body in the ASGI scope (bounded by its `limit`).
FORM_BODY_KEY = "hubspot.form_body"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1


def correlation_id(request: Request) -> str:
    """The request's correlation id (a UUID4 string), made once per request."""
    cid = request.scope.get("hubspot.correlation_id")
    if cid is None:
        cid = str(uuid.uuid4())
        request.scope["hubspot.correlation_id"] = cid
    return cid


def json_response(
    request: Request,
    payload: Any,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Compact JSON with HubSpot's correlation header. A lone surrogate (no UTF-8 form,
    e.g. from a ``"\\ud800"`` escape stored earlier) is sent as U+FFFD, never as a 500."""
    body = json_bytes(payload)
    all_headers = {CORRELATION_HEADER: correlation_id(request)}
    if headers:
        all_headers.update(headers)
    return Response(body, status_code=status_code, headers=all_headers,
                    media_type=JSON_CONTENT_TYPE)


# json.dumps with these options builds an encoder per call; one encoder, same output.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def json_bytes(payload: Any) -> bytes:
    """`payload` as compact UTF-8 JSON, as every answer sends it (`json_response`)."""
    text = _COMPACT.encode(payload)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


class HubSpotHTTPError(Exception):
    """An error answer in HubSpot's shape.

    **Fields:** `status_code` (HTTP), `category` (e.g. ``"VALIDATION_ERROR"``), `message`,
    `status` (legacy code, default ``"error"``), `context` (str → list of str), `errors`
    (list of detail dicts), `links`, `extra` (more top-level fields), `headers`.
    """

    def __init__(
        self,
        status_code: int,
        category: str,
        message: str,
        *,
        status: str = "error",
        context: Mapping[str, Sequence[str]] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        links: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.category = category
        self.message = message
        self.status = status
        self.context = context
        self.errors = errors
        self.links = links
        self.extra = extra
        self.headers = dict(headers or {})

    def body(self, cid: str) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "message": self.message,
                                "correlationId": cid, "category": self.category}
        if self.context:
            body["context"] = {k: list(v) for k, v in self.context.items()}
        if self.errors:
            body["errors"] = [dict(e) for e in self.errors]
        if self.links:
            body["links"] = dict(self.links)
        if self.extra:
            body.update(self.extra)
        return body


class OAuthError(HubSpotHTTPError):
    """A token-endpoint error: HubSpot's `status` plus RFC 6749 §5.2's `error`.

    E.g. ``OAuthError("invalid_grant", "BAD_REFRESH_TOKEN", "missing or invalid refresh
    token")``; HTTP 400 unless `status_code` says otherwise. Answers carry
    ``Cache-Control: no-store``.
    """

    def __init__(
        self,
        error: str,
        status: str,
        message: str,
        *,
        status_code: int = 400,
        category: str = "VALIDATION_ERROR",
    ) -> None:
        super().__init__(status_code, category, message, status=status,
                         extra={"error": error, "error_description": message},
                         headers=NO_STORE)
        self.error = error


def error_response(request: Request, exc: HubSpotHTTPError) -> Response:
    """The JSON answer for `exc`."""
    return json_response(request, exc.body(correlation_id(request)), exc.status_code,
                         exc.headers)


# In a Python str a surrogate code point is always unpaired (a pair is one code point).
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_JSON_DEPTH = 32


def parse_json(raw: bytes) -> Any:
    """Decode a JSON request body (RFC 8259, UTF-8). Raises 400 VALIDATION_ERROR for bytes
    that are not UTF-8 JSON, nesting deeper than `MAX_JSON_DEPTH` (also what would exhaust
    the decoder's recursion) and strings with no UTF-8 form (lone surrogates, from
    ``\\ud800``-style escapes: RFC 8259 §8.2 leaves them unpredictable, and nothing could
    send them back)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise bad_request(f"Invalid input JSON: nested deeper than {MAX_JSON_DEPTH} "
                          "levels") from None
    except (UnicodeDecodeError, ValueError):
        raise bad_request("Invalid input JSON: the body is not valid UTF-8 JSON") from None
    pending = [(data, 1)]
    while pending:  # iterative: the depth check itself must not recurse
        value, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise bad_request(f"Invalid input JSON: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, str):
            if _LONE_SURROGATE.search(value):
                raise bad_request("Invalid input JSON: a string holds an unpaired UTF-16 "
                                  "surrogate escape, which is not text")
        elif isinstance(value, dict):
            pending.extend((k, depth + 1) for k in value)
            pending.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            pending.extend((v, depth + 1) for v in value)
    return data


def bad_request(message: str) -> HubSpotHTTPError:
    """400 VALIDATION_ERROR."""
    return HubSpotHTTPError(400, "VALIDATION_ERROR", message)


def rate_limited(retry_after_s: int, headers: Mapping[str, str] | None = None
                 ) -> HubSpotHTTPError:
    """429 RATE_LIMITS as HubSpot words its ten-secondly limit (reference §7.6): the sample
    API's and a queued ``rate_limit`` fault's."""
    return HubSpotHTTPError(
        429, "RATE_LIMITS", "You have reached your ten secondly limit.",
        extra={"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"},
        headers={"Retry-After": str(retry_after_s), **(headers or {})})


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, at most `limit` bytes; raises 413 in HubSpot's shape beyond it."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise _too_large(limit)
        except ValueError:
            raise bad_request("Content-Length is not a number") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HubSpotHTTPError:
    return HubSpotHTTPError(413, "VALIDATION_ERROR",
                            f"The request body is larger than {limit} bytes.")


async def parse_form(request: Request, limit: int) -> dict[str, str]:
    """Parse a form-encoded body (RFC 6749 §4.1.3: ``application/x-www-form-urlencoded``,
    UTF-8) into a dict. Refuses, in HubSpot's shape with `OAuthError` ``invalid_request``:
    another content type (415), a body over `limit` bytes (413), bytes that are not UTF-8,
    and a parameter sent twice (RFC 6749 §3.2: "MUST NOT be included more than once")."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    body = await read_body(request, limit)
    if media != FORM_CONTENT_TYPE:
        if not body and not media:
            return {}
        raise OAuthError(
            "invalid_request", "BAD_REQUEST",
            f"Content-Type must be {FORM_CONTENT_TYPE}, got {media or 'none'}",
            status_code=415,
        )
    request.scope[FORM_BODY_KEY] = body  # for stats of a request refused below
    return parse_pairs(body)


def parse_pairs(raw: bytes | str) -> dict[str, str]:
    """Decode ``a=1&b=2`` strictly: UTF-8 only, each name at most once."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict", max_num_fields=100)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "BAD_REQUEST",
                         "the request parameters are not valid UTF-8") from None
    except ValueError:
        raise OAuthError("invalid_request", "BAD_REQUEST",
                         "too many request parameters (at most 100)") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise OAuthError("invalid_request", "BAD_REQUEST",
                             f"parameter '{name}' was sent more than once")
        if "\x00" in value or "\x00" in name:
            raise OAuthError("invalid_request", "BAD_REQUEST",
                             f"parameter '{name}' contains a NUL character")
        found[name] = value
    return found
