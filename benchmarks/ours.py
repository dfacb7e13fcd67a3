"""hubspot-oauth's local HubSpot under wrk: refresh, code exchange, introspection, the
bearer-protected API (with and without auth), and refresh on PostgreSQL with 1 and 2
processes. Every server is the uvicorn factory `benchmarks.servers.ours:app` on the same
stack as the bare-ASGI baseline (uvloop, httptools, no access log).

Tokens come from the server itself: codes are minted with `LocalHubSpot.issue_code` on the
scenario's database before the server starts (as the consent page would), and one is
exchanged over HTTP for the refresh and access token the scenario replays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .context import Context, Scenario, measure_http, server
from .process import Request, Server, free_port, post_form

HUB_ID = 1234567
USER = "admin@example.com"
TOKEN_PATH = "/oauth/v3/token"
INTROSPECT_PATH = "/oauth/v3/token/introspect"
API_PATH = "/crm/v3/objects/contacts?limit=10"


def seed_app() -> tuple[str, str, str]:
    """client_id, client_secret and first redirect URL of the default seed's app."""
    from hubspot_oauth.server.seed import default_seed

    app = default_seed().apps[0]
    return app.client_id, app.client_secret, app.redirect_urls[0]


def sqlite_url(ctx: Context, name: str) -> str:
    folder = ctx.work_dir(name)
    for leftover in folder.glob("hubspot.db*"):
        leftover.unlink()
    return f"sqlite:///{folder / 'hubspot.db'}"


def mint_codes(database_url: str, count: int) -> list[str]:
    """`count` codes for the seed app in portal 1234567, on `database_url` (creates and
    seeds the database when empty). Same checks as the consent page."""
    from hubspot_oauth.server import ServerSettings
    from hubspot_oauth.server.hubspot import LocalHubSpot

    client_id, _, redirect = seed_app()
    hubspot = LocalHubSpot(ServerSettings(database_url=database_url, code_ttl=3600))
    try:
        return [hubspot.issue_code(client_id=client_id, redirect_uri=redirect, user_email=USER,
                                   hub_id=HUB_ID, scopes=["crm.objects.contacts.read"])
                for _ in range(count)]
    finally:
        hubspot.close()


def code_form(code: str) -> dict[str, str]:
    client_id, secret, redirect = seed_app()
    return {"grant_type": "authorization_code", "client_id": client_id,
            "client_secret": secret, "redirect_uri": redirect, "code": code}


def exchange(srv: Server, code: str) -> dict[str, Any]:
    return post_form(srv.base_url, TOKEN_PATH, code_form(code))


def ours_server(ctx: Context, name: str, database_url: str, workers: int = 1,
                env: dict[str, str] | None = None) -> Server:
    cmd = ctx.uvicorn("benchmarks.servers.ours:app", workers=workers, factory=True)
    return server(name, cmd, free_port(), {"BENCH_DATABASE_URL": database_url, **(env or {})})


def _refresh_request(tokens: dict[str, Any]) -> Request:
    client_id, secret, _ = seed_app()
    body = urlencode({"grant_type": "refresh_token", "client_id": client_id,
                      "client_secret": secret, "refresh_token": tokens["refresh_token"]})
    return Request(TOKEN_PATH, body=body, expect='"access_token"')


def _refresh(ctx: Context, row: dict[str, Any], database_url: str, workers: int = 1,
             connections: int = 1):
    """The refresh grant replayed by wrk: one refresh token (the peers' shape), or with
    `connections` > 1 the refresh tokens of that many installs, round-robin."""
    codes = mint_codes(database_url, connections)
    srv = ours_server(ctx, row["name"], database_url, workers)
    if database_url.startswith("postgresql"):
        srv.database_pid = ctx.postgres_pid()
    with srv:
        requests = [_refresh_request(exchange(srv, code)) for code in codes]
        req = requests[0]
        if connections > 1:
            req.cycle = ctx.work_dir(row["name"]) / "refresh-bodies.txt"
            req.cycle.write_text("".join(r.body + "\n" for r in requests))
            req.body = ""
        return measure_http(ctx, row, srv, req)


def refresh_sqlite(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    return _refresh(ctx, row, sqlite_url(ctx, row["name"]))


PG_CONNECTIONS = 100


def refresh_pg(workers: int, connections: int = PG_CONNECTIONS):
    def run(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
        url = ctx.postgres().create_database()
        row.setdefault("notes", []).append(
            f"{row['name']}: PostgreSQL {_pg_note()}; refresh tokens of {connections} installs "
            "round-robin (one replayed token would serialize every request on its row lock)")
        return _refresh(ctx, row, url, workers, connections)

    return run


def _pg_note() -> str:
    return ("is a throwaway cluster started by tests/support/postgres.py on the same 2 cores "
            "(fsync=off, synchronous_commit=off: durability traded for test speed)")


def codes_per_run(ctx: Context) -> int:
    # Enough for ~1.5 s of load at the fast path's ~4,000 exchanges/s (1,500 lasted
    # ~0.4 s: the ramp-up of 50 connections was most of it); minting costs ~0.7 ms each.
    return 2000 if ctx.quick else 6000


def code_exchange(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    """Each code is used once: wrk walks a file of bodies per run (benchmarks/wrk/bodies.lua)."""
    import time

    url = sqlite_url(ctx, row["name"])
    per_run = codes_per_run(ctx)
    warm = per_run // 3 if ctx.warmup else 0
    t0 = time.monotonic()
    codes = mint_codes(url, 1 + warm + ctx.runs * per_run)
    minted = time.monotonic() - t0
    ctx.log(f"  minted {len(codes):,} codes with LocalHubSpot.issue_code in {minted:.1f} s")
    row.setdefault("notes", []).append(
        f"ours-code-sqlite: {len(codes):,} codes minted with `LocalHubSpot.issue_code` before "
        f"the server started ({minted:.1f} s, {1e3 * minted / len(codes):.2f} ms per code); "
        f"{per_run:,} codes per measured run, each sent once")
    folder = ctx.work_dir(row["name"])
    files: list[Path] = []
    chunks = [codes[:1], codes[1:1 + warm]]
    chunks += [codes[1 + warm + i * per_run: 1 + warm + (i + 1) * per_run]
               for i in range(ctx.runs)]
    for i, chunk in enumerate(chunks):
        path = folder / f"bodies-{i}.txt"
        path.write_text("".join(urlencode(code_form(c)) + "\n" for c in chunk))
        files.append(path)
    req = Request(TOKEN_PATH, expect='"refresh_token"', bodies=files)
    with ours_server(ctx, row["name"], url) as srv:
        return measure_http(ctx, row, srv, req)


def introspect(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    url = sqlite_url(ctx, row["name"])
    code = mint_codes(url, 1)[0]
    client_id, secret, _ = seed_app()
    with ours_server(ctx, row["name"], url) as srv:
        tokens = exchange(srv, code)
        body = urlencode({"client_id": client_id, "client_secret": secret,
                          "token": tokens["access_token"]})
        return measure_http(ctx, row, srv, Request(INTROSPECT_PATH, body=body,
                                                   expect='"active":true'))


def api_bearer(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    url = sqlite_url(ctx, row["name"])
    code = mint_codes(url, 1)[0]
    with ours_server(ctx, row["name"], url) as srv:
        tokens = exchange(srv, code)
        req = Request(API_PATH, method="GET", authorization=f"Bearer {tokens['access_token']}",
                      expect='"results"')
        return measure_http(ctx, row, srv, req)


def api_noauth(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    url = sqlite_url(ctx, row["name"])
    mint_codes(url, 0)  # create and seed the database the same way
    with ours_server(ctx, row["name"], url, env={"BENCH_API_AUTH": "off"}) as srv:
        return measure_http(ctx, row, srv, Request(API_PATH, method="GET", expect='"results"'))


SCENARIOS = [
    Scenario("ours-refresh-sqlite", "ours", "http",
             "hubspot-oauth refresh_token grant, SQLite, 1 process", refresh_sqlite),
    Scenario("ours-code-sqlite", "ours", "http",
             "hubspot-oauth authorization_code exchange, codes minted beforehand, each used once",
             code_exchange),
    Scenario("ours-introspect", "ours", "http",
             "hubspot-oauth POST /oauth/v3/token/introspect of an access token, SQLite",
             introspect),
    Scenario("ours-api-bearer", "ours", "http",
             "hubspot-oauth GET /crm/v3/objects/contacts?limit=10 with a bearer token",
             api_bearer),
    Scenario("ours-api-noauth", "ours", "http",
             "the same route with api_auth=False (no token lookup)", api_noauth),
    Scenario("ours-refresh-pg-1p", "ours", "http",
             "hubspot-oauth refresh_token grant, PostgreSQL, 1 process, 100 installs' refresh "
             "tokens round-robin", refresh_pg(1)),
    Scenario("ours-refresh-pg-2p", "ours", "http",
             "the same, 2 processes (uvicorn --workers 2)",
             refresh_pg(2)),
    Scenario("ours-refresh-pg-2p-1token", "ours", "http",
             "as ours-refresh-pg-2p but every request replays one refresh token (peers' shape)",
             refresh_pg(2, connections=1)),
]
