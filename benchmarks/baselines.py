"""Baselines measured in the same run: the bare-ASGI limit of our stack and the Node.js peers
(oidc-provider, oauth2-mock-server) installed from npm by scripts/bench-prerequisites.sh."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from .context import Context, measure_http, server
from .process import HERE, Request, free_port

NODE = HERE / "node"
# A refresh-grant-shaped form, the same size as the one our server receives.
FAKE_REFRESH_TOKEN = "na1-8649-43d7-456c-a15c-305ec7f11101"
FORM = (f"grant_type=refresh_token&client_id=7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
        f"&client_secret=7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
        f"&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Foauth-callback"
        f"&refresh_token={FAKE_REFRESH_TOKEN}")
OIDC_CLIENT = "client_id=bench-client&client_secret=bench-secret"


def node_available() -> str | None:
    """None when the peers can run, else why not."""
    if not (NODE / "node_modules" / "oidc-provider").is_dir():
        return "benchmarks/node/node_modules missing (run scripts/bench-prerequisites.sh)"
    return None


def asgi_form_post(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    port = free_port()
    srv = server(row["name"], ctx.uvicorn("benchmarks.servers.asgi_raw:form_post"), port)
    with srv:
        return measure_http(ctx, row, srv, Request("/oauth/v1/token", body=FORM,
                                                   expect='"grant_type": "refresh_token"'))


def asgi_sqlite_write(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    folder = ctx.work_dir(row["name"])
    for leftover in folder.glob("limit.db*"):
        leftover.unlink()
    srv = server(row["name"], ctx.uvicorn("benchmarks.servers.asgi_raw:form_post_sqlite_write"),
                 free_port(), {"BENCH_SQLITE_PATH": str(folder / "limit.db")})
    with srv:
        return measure_http(ctx, row, srv, Request("/oauth/v1/token", body=FORM,
                                                   expect='"access_token"'))


def _oidc_tokens(port: int) -> dict[str, Any]:
    """One real authorization-code flow through oidc-provider's dev interactions."""
    out = subprocess.run(["node", str(NODE / "get_oidc_tokens.mjs"), str(port)],
                         capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"get_oidc_tokens.mjs failed: {out.stderr[-400:]}")
    return json.loads(out.stdout)


def oidc(ctx: Context, row: dict[str, Any], what: str) -> dict[str, Any]:
    reason = node_available()
    if reason:
        raise RuntimeError(reason)
    port = free_port()
    srv = server(row["name"], ["node", str(NODE / "oidc_provider_server.mjs")], port)
    with srv:
        tokens = _oidc_tokens(port)
        if what == "refresh":
            req = Request("/token", body=f"grant_type=refresh_token&refresh_token="
                          f"{tokens['refresh_token']}&{OIDC_CLIENT}", expect='"access_token"')
        else:
            req = Request("/token/introspection",
                          body=f"token={tokens['access_token']}&{OIDC_CLIENT}",
                          expect='"active":true')
        return measure_http(ctx, row, srv, req)


def oidc_refresh(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    return oidc(ctx, row, "refresh")


def oidc_introspect(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    return oidc(ctx, row, "introspect")


def mock_refresh(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    reason = node_available()
    if reason:
        raise RuntimeError(reason)
    port = free_port()
    srv = server(row["name"], ["node", str(NODE / "mock_server.mjs")], port)
    with srv:
        return measure_http(ctx, row, srv, Request("/token", body=FORM,
                                                   expect='"refresh_token"'))
