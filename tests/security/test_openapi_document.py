"""The OpenAPI document: valid OpenAPI 3, schemas copied from HubSpot's 2026-09 reference,
every endpoint of DESIGN §4 described, and served by the `openapi` route module."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from starlette.applications import Starlette

from hubspot_oauth.server import openapi

# HubSpot's published "Auth Oauth" description, version 2026-09 (a copy of shared reference data).
REFERENCE = Path(__file__).parent / "data" / "hubspot-auth-oauth-openapi-2026-09.json"
DOC = json.loads(
    (Path(openapi.__file__).parent / "openapi.json").read_text(encoding="utf-8")
)

EXPECTED = {
    ("post", "/oauth/v1/token"),
    ("post", "/oauth/v3/token"),
    ("post", "/oauth/2026-03/token"),
    ("post", "/oauth/v3/token/introspect"),
    ("post", "/oauth/2026-03/token/introspect"),
    ("post", "/oauth/v3/token/revoke"),
    ("post", "/oauth/2026-03/token/revoke"),
    ("post", "/oauth/2026-09/token"),
    ("post", "/oauth/2026-09/token/introspect"),
    ("post", "/oauth/2026-09/token/revoke"),
    ("get", "/oauth/v1/access-tokens/{token}"),
    ("get", "/oauth/v1/refresh-tokens/{token}"),
    ("delete", "/oauth/v1/refresh-tokens/{token}"),
    ("get", "/oauth/authorize"),
    ("get", "/oauth/{accountId}/authorize"),
    ("get", "/crm/v3/objects/contacts"),
    ("post", "/crm/v3/objects/contacts"),
    ("get", "/crm/v3/objects/contacts/{contactId}"),
    ("get", "/contacts/v1/lists/all/contacts/all"),
    ("get", "/account-info/v3/details"),
}


def test_document_is_openapi_3_that_schemathesis_loads() -> None:
    assert DOC["openapi"].startswith("3.0")
    schema = schemathesis.openapi.from_dict(DOC)
    operations = {
        (op.method.lower(), op.path)
        for op in (result.ok() for result in schema.get_all_operations())
    }
    assert operations >= EXPECTED


def test_every_documented_operation_has_an_error_answer() -> None:
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if path in ("/", "/openapi.json"):
                continue
            assert "default" in operation["responses"], (method, path)


def test_hubspot_schemas_are_copied_verbatim() -> None:
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    for name, schema in reference["components"]["schemas"].items():
        assert DOC["components"]["schemas"][name] == schema, name


def test_error_schema_carries_rfc_and_hubspot_fields() -> None:
    error = DOC["components"]["schemas"]["HubSpotError"]
    assert {"message", "correlationId"} <= set(error["required"])
    assert {"error", "error_description", "status", "category"} <= set(error["properties"])


@pytest.mark.anyio
async def test_route_serves_the_document_with_the_request_base_url() -> None:
    app = Starlette(routes=openapi.routes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test:8765") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["servers"] == [{"url": "http://hub.test:8765"}]
    assert body["paths"] == DOC["paths"]
