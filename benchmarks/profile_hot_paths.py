"""CPU per request of the local HubSpot's hot paths, in-process and deterministic:

    python -m benchmarks.profile_hot_paths [-n 2000] [--repeat 3] [--postgres URL]
                                           [--profile ROUTE] [--inline]

Builds the app with `create_app` on a fresh temporary SQLite file (and, with
``--postgres URL``, on that PostgreSQL database too: it must be empty or hold this seed's
data), then drives each route N times, one request after another, straight through the
ASGI callable (no socket, no uvicorn), and prints CPU microseconds per request
(`time.process_time`, every thread of the process, so the thread-pool hop and the worker
thread's database work are counted). CPU time barely moves with the load of a shared
machine; wall time does, and is printed only for reference. Each figure is the median of
``--repeat`` runs after a warm-up.

Routes: ``bare`` (the bare-ASGI form POST of the benchmarks, the stack's limit),
``bare+sqlite`` (the same plus one INSERT + COMMIT with sqlite3: the floor of a grant that
stores what it issues), ``refresh`` (POST /oauth/v3/token, refresh_token grant), ``code``
(the same endpoint, authorization_code grant: codes minted beforehand with
`LocalHubSpot.issue_code`, each sent once; minting is not measured),
``introspect`` (POST /oauth/v3/token/introspect of an access token), ``api`` (GET
/crm/v3/objects/contacts?limit=10 with a bearer token) and ``api-noauth`` (the same route
with `api_auth=False`). Every answer is checked (status and a marker in the body); a
wrong answer stops the run.

``--profile ROUTE`` also records that route with pyinstrument into
``benchmarks/results/profiles/ROUTE[-pg].{txt,html}``. pyinstrument samples one thread,
so while profiling the database work runs inline on the event loop thread instead of the
server's thread pool (the CPU table is measured without that change). ``--inline`` runs
the whole measurement that way too: the difference from the normal run is the cost of
the thread hop (`LocalHubSpot.call`).

Settings as the benchmark servers use them (benchmarks/servers/ours.py): the API rate
limit raised out of the way (its bookkeeping still runs on every call).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

PROFILES = Path(__file__).resolve().parent / "results" / "profiles"
HUB_ID = 1234567
USER = "admin@example.com"
ROUTES = ("bare", "bare+sqlite", "refresh", "code", "introspect", "api", "api-noauth")

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]],
                   Awaitable[None]]


class Call:
    """One request to replay: method, path, query, headers, body, and what a good answer
    contains. With `bodies` (an iterator), each request takes the next body instead:
    single-use requests such as code exchanges."""

    def __init__(self, method: str, path: str, *, query: str = "", body: bytes = b"",
                 headers: list[tuple[bytes, bytes]] | None = None, expect: bytes = b"",
                 bodies: Iterator[bytes] | None = None) -> None:
        self.method = method
        self.path = path
        self.query = query.encode()
        self.body = body
        self.bodies = bodies
        self.headers = [(b"host", b"127.0.0.1:8000"), *(headers or [])]
        self.expect = expect

    def next_body(self) -> bytes:
        if self.bodies is None:
            return self.body
        body = next(self.bodies, None)
        if body is None:
            raise SystemExit(f"{self.method} {self.path}: out of single-use bodies")
        return body

    def scope(self, body: bytes) -> dict[str, Any]:
        headers = list(self.headers)
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1", "method": self.method, "scheme": "http",
                "path": self.path, "raw_path": self.path.encode(), "query_string": self.query,
                "root_path": "", "headers": headers,
                "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


async def request(app: ASGIApp, call: Call) -> tuple[int, bytes]:
    """Run `call` through `app`; returns (status, body)."""
    sent = False
    status = 0
    chunks: list[bytes] = []
    body = call.next_body()

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(call.scope(body), receive, send)
    return status, b"".join(chunks)


async def drive(app: ASGIApp, call: Call, n: int) -> None:
    for _ in range(n):
        status, body = await request(app, call)
        if status != 200 or call.expect not in body:
            raise SystemExit(f"{call.method} {call.path}: unexpected answer {status} "
                             f"{body[:300]!r}")


def warmup_count(n: int) -> int:
    return max(50, n // 10)


def measure(loop: asyncio.AbstractEventLoop, app: ASGIApp, call: Call, n: int,
            repeat: int) -> tuple[float, float]:
    """(CPU µs per request, wall µs per request), medians of `repeat` runs of `n`."""
    loop.run_until_complete(drive(app, call, warmup_count(n)))
    cpu, wall = [], []
    for _ in range(repeat):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        loop.run_until_complete(drive(app, call, n))
        cpu.append((time.process_time() - c0) / n * 1e6)
        wall.append((time.perf_counter() - w0) / n * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def profile(loop: asyncio.AbstractEventLoop, app: ASGIApp, call: Call, n: int,
            name: str) -> Path:
    from pyinstrument import Profiler

    PROFILES.mkdir(parents=True, exist_ok=True)
    profiler = Profiler(interval=0.0002, async_mode="disabled")
    profiler.start()
    loop.run_until_complete(drive(app, call, n))
    profiler.stop()
    (PROFILES / f"{name}.html").write_text(profiler.output_html())
    text = PROFILES / f"{name}.txt"
    text.write_text(profiler.output_text(unicode=True, show_all=False))
    return text


def _inline(hubspot: Any) -> None:
    """Run `LocalHubSpot.call`'s work on the event loop thread (profiling only)."""
    async def call(func: Any, *args: Any) -> Any:
        return func(*args)

    hubspot.call = call


def _form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


def build(database_url: str, api_auth: bool = True) -> Any:
    from hubspot_oauth.server import ServerSettings, create_app

    return create_app(ServerSettings(database_url=database_url, rate_limit_max=1_000_000_000,
                                     control_api=True, api_auth=api_auth))


def mint_code(app: Any) -> str:
    """A code of the seed app in portal 1234567, from the consent rules (no pages)."""
    from hubspot_oauth.server.seed import default_seed

    seed_app = default_seed().apps[0]
    return app.state.hubspot.issue_code(
        client_id=seed_app.client_id, redirect_uri=seed_app.redirect_urls[0],
        user_email=USER, hub_id=HUB_ID, scopes=["crm.objects.contacts.read"])


def code_body(code: str) -> bytes:
    """The form body exchanging `code`, as the seed app sends it."""
    from hubspot_oauth.server.seed import default_seed

    seed_app = default_seed().apps[0]
    return _form({"grant_type": "authorization_code", "client_id": seed_app.client_id,
                  "client_secret": seed_app.client_secret,
                  "redirect_uri": seed_app.redirect_urls[0], "code": code})


def code_call(app: Any, count: int) -> Call:
    """The ``code`` route: `count` codes minted now, each exchanged once."""
    bodies = [code_body(mint_code(app)) for _ in range(count)]
    return Call("POST", "/oauth/v3/token", headers=FORM, expect=b'"refresh_token"',
                bodies=iter(bodies))


def tokens(loop: asyncio.AbstractEventLoop, app: Any) -> tuple[str, str]:
    """A refresh and an access token of the seed app in portal 1234567, obtained the way
    a client does (a code from the consent rules, exchanged over the token endpoint)."""
    import json

    body = code_body(mint_code(app))
    status, answer = loop.run_until_complete(
        request(app, Call("POST", "/oauth/v3/token", body=body, headers=FORM)))
    if status != 200:
        raise SystemExit(f"code exchange failed: {status} {answer[:300]!r}")
    data = json.loads(answer)
    return data["refresh_token"], data["access_token"]


def calls(refresh_token: str, access_token: str) -> dict[str, Call]:
    from hubspot_oauth.server.seed import default_seed

    seed_app = default_seed().apps[0]
    creds = {"client_id": seed_app.client_id, "client_secret": seed_app.client_secret}
    bearer = [(b"authorization", f"Bearer {access_token}".encode())]
    return {
        "refresh": Call("POST", "/oauth/v3/token", headers=FORM, expect=b'"access_token"',
                        body=_form({"grant_type": "refresh_token", **creds,
                                    "refresh_token": refresh_token})),
        "introspect": Call("POST", "/oauth/v3/token/introspect", headers=FORM,
                           expect=b'"active":true',
                           body=_form({**creds, "token": access_token,
                                       "token_type_hint": "access_token"})),
        "api": Call("GET", "/crm/v3/objects/contacts", query="limit=10", headers=bearer,
                    expect=b'"results"'),
        "api-noauth": Call("GET", "/crm/v3/objects/contacts", query="limit=10",
                           expect=b'"results"'),
    }


def run(database: str, label: str, args: argparse.Namespace,
        loop: asyncio.AbstractEventLoop) -> list[tuple[str, float, float]]:
    from benchmarks.servers import asgi_raw

    rows: list[tuple[str, float, float]] = []
    wanted = args.routes
    app = build(database)
    noauth = build(database, api_auth=False) if "api-noauth" in wanted else None
    try:
        if args.inline:
            _inline(app.state.hubspot)
            if noauth is not None:
                _inline(noauth.state.hubspot)
        refresh_token, access_token = tokens(loop, app)
        by_name = calls(refresh_token, access_token)
        if "code" in wanted or args.profile == "code":
            needed = ((warmup_count(args.n) + args.repeat * args.n if "code" in wanted else 0)
                      + (args.n if args.profile == "code" else 0))
            by_name["code"] = code_call(app, needed)
        bare = Call("POST", "/oauth/v3/token", headers=FORM, expect=b'"ok"',
                    body=by_name["refresh"].body)
        for name in wanted:
            if name == "bare":
                target, call = asgi_raw.form_post, bare
            elif name == "bare+sqlite":
                if label != "sqlite":
                    continue
                target = asgi_raw.form_post_sqlite_write
                call = Call("POST", "/oauth/v3/token", headers=FORM,
                            expect=b'"access_token"', body=bare.body)
            elif name == "api-noauth":
                target, call = noauth, by_name[name]
            else:
                target, call = app, by_name[name]
            cpu, wall = measure(loop, target, call, args.n, args.repeat)
            rows.append((name, cpu, wall))
            print(f"  {label:7} {name:12} {cpu:9.1f} µs CPU/request   "
                  f"({wall:8.1f} µs wall)", flush=True)
        if args.profile:
            target = noauth if args.profile == "api-noauth" else app
            hub = target.state.hubspot
            saved = hub.call
            _inline(hub)
            try:
                path = profile(loop, target, by_name[args.profile], args.n,
                               args.profile + ("" if label == "sqlite" else "-" + label))
            finally:
                hub.call = saved
            print(f"  profile: {path}")
    finally:
        app.state.hubspot.close()
        if noauth is not None:
            noauth.state.hubspot.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_hot_paths",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="requests per run (default 2000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per route (median)")
    parser.add_argument("--routes", default=",".join(ROUTES),
                        help=f"comma-separated subset of {', '.join(ROUTES)}")
    parser.add_argument("--postgres", metavar="URL", help="also measure on this database")
    parser.add_argument("--profile", choices=[r for r in ROUTES if not r.startswith("bare")],
                        help="write a pyinstrument profile of this route")
    parser.add_argument("--inline", action="store_true",
                        help="database work on the event loop thread (no thread hop)")
    args = parser.parse_args(argv)
    args.routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = set(args.routes) - set(ROUTES)
    if unknown or args.n < 1 or args.repeat < 1:
        parser.error(f"unknown route(s) {', '.join(sorted(unknown))}" if unknown
                     else "-n and --repeat must be positive")
    loop = asyncio.new_event_loop()
    print(f"CPU per request, median of {args.repeat} x {args.n} requests, in-process ASGI"
          f"{' (database work inline, no thread hop)' if args.inline else ''}; "
          f"python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="hot-paths-") as tmp:
        os.environ["BENCH_SQLITE_PATH"] = str(Path(tmp) / "bare.db")
        run(f"sqlite:///{Path(tmp) / 'hubspot.db'}", "sqlite", args, loop)
        if args.postgres:
            run(args.postgres, "pg", args, loop)
    loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
