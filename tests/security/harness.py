"""Shared helpers of the security tests: a local HubSpot per test, a snapshot of its
domain tables (to prove a rejected request changed nothing), and HubSpot's error shape."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

# The tables that hold what the server knows. Bookkeeping tables (call statistics, the
# fault queue, API rate windows) change on every call by design and are left out.
DOMAIN_TABLES = (
    "apps", "portals", "users", "portal_users", "installs", "authorization_codes",
    "refresh_tokens", "access_tokens", "contacts", "emulator_state",
)


def sqlite_path(database_url: str) -> Path:
    """The file of a ``sqlite:///…`` URL."""
    url = sa.make_url(database_url)
    assert url.get_backend_name() == "sqlite" and url.database
    return Path(url.database.removeprefix("file:"))


def snapshot(database_url: str) -> dict[str, tuple[int, str]]:
    """Per domain table: (row count, SHA-256 of every row in primary-key order)."""
    conn = sqlite3.connect(f"file:{sqlite_path(database_url)}?mode=ro", uri=True)
    try:
        result = {}
        for table in DOMAIN_TABLES:
            rows = conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
            digest = hashlib.sha256(repr(rows).encode()).hexdigest()
            result[table] = (len(rows), digest)
        return result
    finally:
        conn.close()


def changed_tables(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [t for t in before if before[t] != after.get(t)]


def is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/html")


def hubspot_error_problems(response: httpx.Response) -> list[str]:
    """What is wrong with an error answer against HubSpot's JSON error shape (reference
    §4.3, §7): JSON object with `message` and `correlationId` (equal to the header), and
    `status` or `category`; token-style `error` values come with `error_description`.
    Empty list: the shape is right."""
    problems = []
    if not response.headers.get("content-type", "").startswith("application/json"):
        problems.append(f"content-type {response.headers.get('content-type')!r}")
        return problems
    try:
        body = json.loads(response.content)
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    if not isinstance(body.get("message"), str) or not body["message"]:
        problems.append("no message")
    cid = body.get("correlationId")
    if not isinstance(cid, str) or not cid:
        problems.append("no correlationId")
    elif response.headers.get("x-hubspot-correlation-id") != cid:
        problems.append("correlationId differs from X-HubSpot-Correlation-Id")
    if not isinstance(body.get("status"), str) and not isinstance(body.get("category"), str):
        problems.append("neither status nor category")
    if "error" in body and not isinstance(body.get("error_description"), str):
        problems.append("error without error_description")
    return problems


def assert_hubspot_error(response: httpx.Response, status_code: int | None = None) -> dict:
    """Assert `response` is an error in HubSpot's shape; returns the body."""
    if status_code is not None:
        assert response.status_code == status_code, (response.status_code, response.text[:300])
    assert response.status_code >= 400, response.status_code
    problems = hubspot_error_problems(response)
    assert not problems, (problems, response.status_code, response.text[:300])
    return response.json()


def form(**fields: str) -> dict[str, Any]:
    """httpx keyword arguments for a form-encoded POST body."""
    return {"data": fields}
