"""GET /openapi.json: the OpenAPI 3 description of the local HubSpot's OAuth endpoints, its
authorize pages and its sample API (the file ``openapi.json`` beside this module).

The token and introspection schemas are copied from HubSpot's published ``Auth Oauth``
OpenAPI description (version 2026-09); see ``docs/security.md`` for how the tests use it
(Schemathesis against a live server). `servers` is rewritten to the URL the request came
in on, so a client can point its tooling at ``<base>/openapi.json`` and go.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["openapi_document", "routes"]


@functools.cache
def _document() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("openapi.json").read_text("utf-8")
    return json.loads(text)


def openapi_document(base_url: str | None = None) -> dict[str, Any]:
    """The document as a dict (a copy); `servers` set to `base_url` when given."""
    doc = copy.deepcopy(_document())
    if base_url:
        doc["servers"] = [{"url": base_url.rstrip("/")}]
    return doc


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(
        openapi_document(str(request.base_url)), headers={"Cache-Control": "no-cache"}
    )


routes = [Route("/openapi.json", openapi_json, methods=["GET"], name="openapi")]
