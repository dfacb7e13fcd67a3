"""Where a server scenario's time goes: `python -m benchmarks.profile SCENARIO`.

Starts our server the way the scenario does, loads it with wrk, and records the busiest
server process with py-spy (``pip install py-spy``; not a project dependency) for the
measured seconds. Prints wrk's figures and the share of *busy* samples (threads waiting
for work are left out; threads waiting for a lock or the database are kept) per function,
inclusive. SCENARIO: refresh, refresh-pg-2p, introspect, api; or ``store``: where one
`TokenStore.access_token(key)` call on a fresh token spends its time (in-process, no
py-spy needed; best of 3 × 20,000 calls per step).
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

from .context import Context
from .ours import (
    API_PATH,
    INTROSPECT_PATH,
    TOKEN_PATH,
    _refresh_request,
    code_form,
    exchange,
    mint_codes,
    ours_server,
    seed_app,
    sqlite_url,
)
from .process import WORK, Request, cpu_ticks, run_wrk

IDLE_LEAVES = ("Condition.wait (threading.py:327)", "Runner.run (asyncio/runners.py",
               "select (selectors.py", "Event.wait", "Thread.join",
               "_ConnectionBase.recv", "Connection._recv")


def busy_table(raw: Path, limit: int = 45) -> str:
    """Inclusive share of busy samples per function from py-spy's raw output."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = stack.split(";")
        if any(frames[-1].startswith(leaf) for leaf in IDLE_LEAVES) or any(
                "always_pong" in f for f in frames):
            continue
        n = int(count)
        total += n
        for name in {re.sub(r":\d+\)", ")", f) for f in frames if not f.startswith("thread")}:
            inclusive[name] += n
    rows = [f"{100 * n / total:5.1f}%  {name[:150]}"
            for name, n in inclusive.most_common(limit)] if total else []
    return f"busy samples: {total}\n" + "\n".join(rows)


def store_breakdown() -> str:
    """Microseconds per step of `access_token(key)` on a fresh token, and the floor."""
    import sqlite3
    import tempfile
    import timeit

    from cryptography.fernet import Fernet

    from hubspot_oauth.client.store import TokenStore

    from .store import _token

    folder = tempfile.mkdtemp(prefix="bench-store-", dir=WORK)
    store = TokenStore(f"sqlite:///{folder}/tokens.db",
                       encryption_keys=[Fernet.generate_key().decode()])
    try:
        key = store.save(_token())
        for _ in range(2000):
            store.access_token(key)
        row = store._read(key)
        token = store._decrypt(row)
        raw = sqlite3.connect(f"{folder}/tokens.db")
        query = ("SELECT key, version, status, status_reason, refreshing_until, refresh_owner, "
                 "token_ciphertext, key_id FROM hubspot_oauth_connections WHERE key = ?")

        def checkout() -> None:
            with store.engine.connect():
                pass

        steps = [
            ("access_token(key), whole call", lambda: store.access_token(key)),
            ("  _read: pool checkout + SQLAlchemy SELECT + fetch", lambda: store._read(key)),
            ("    engine.connect() checkout and return", checkout),
            ("    raw sqlite3 SELECT of the same row (floor)",
             lambda: raw.execute(query, (key,)).fetchone()),
            ("  _decrypt: Fernet + JSON + Token", lambda: store._decrypt(row)),
            ("    Fernet decrypt only",
             lambda: store.key_ring.decrypt(row.ciphertext, what="bench")),
            ("  expiry check (_due)", lambda: store._due(token)),
        ]
        lines = []
        for label, step in steps:
            best = min(timeit.repeat(step, number=20_000, repeat=3)) / 20_000 * 1e6
            lines.append(f"{best:8.1f} µs  {label}")
        raw.close()
        return "\n".join(lines)
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario",
                    choices=["refresh", "refresh-pg-2p", "introspect", "api", "code", "store"])
    ap.add_argument("--seconds", type=int, default=6)
    args = ap.parse_args(argv)
    if args.scenario == "store":
        WORK.mkdir(parents=True, exist_ok=True)
        print(store_breakdown())
        return 0
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is missing: pip install py-spy", file=sys.stderr)
        return 2
    ctx = Context()
    try:
        pg = args.scenario == "refresh-pg-2p"
        url = ctx.postgres().create_database() if pg else sqlite_url(ctx, "profile")
        codes = mint_codes(url, 100 if pg else (6000 if args.scenario == "code" else 1))
        srv = ours_server(ctx, "profile", url, workers=2 if pg else 1)
        if pg:
            srv.database_pid = ctx.postgres_pid()
        with srv:
            if args.scenario == "code":  # each code once: wrk walks a file of bodies
                req = Request(TOKEN_PATH, cycle=None)
                req.bodies = []
                for i, chunk in enumerate((codes[:3000], codes[3000:])):
                    path = WORK / f"profile-codes-{i}.txt"
                    path.write_text("".join(urlencode(code_form(c)) + "\n" for c in chunk))
                    req.bodies.append(path)
                codes = codes[:0]
            tokens = [exchange(srv, c) for c in codes]
            client_id, secret, _ = seed_app()
            if args.scenario == "code":
                pass
            elif args.scenario.startswith("refresh"):
                req = _refresh_request(tokens[0])
                if pg:
                    req.cycle = WORK / "profile-bodies.txt"
                    req.cycle.write_text("".join(_refresh_request(t).body + "\n"
                                                 for t in tokens))
                    req.body = ""
            elif args.scenario == "introspect":
                req = Request(INTROSPECT_PATH, body=urlencode(
                    {"client_id": client_id, "client_secret": secret,
                     "token": tokens[0]["access_token"]}))
            else:
                req = Request(API_PATH, method="GET",
                              authorization=f"Bearer {tokens[0]['access_token']}")
            warm_bodies = req.bodies[0] if req.bodies else None
            run_wrk(srv, req, ctx.wrk, 3, warm_bodies)  # warm-up
            workers = [p for p in srv.pids() if p != srv.proc.pid] or [srv.proc.pid]
            target = max(workers + [srv.proc.pid], key=lambda p: cpu_ticks([p]))
            raw = WORK / f"profile-{args.scenario}.txt"
            recorder = subprocess.Popen(
                [spy, "record", "-p", str(target), "-d", str(args.seconds), "-r", "200",
                 "-f", "raw", "-o", str(raw), "--threads"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = run_wrk(srv, req, ctx.wrk, args.seconds, req.bodies[1] if req.bodies else None)
            recorder.wait(timeout=args.seconds + 30)
        print(f"{args.scenario}: {r['rps']:,.0f} req/s, p99 {r['lat_p99_ms']:.0f} ms, server "
              f"CPU {r['server_cpu_ms_per_req']:.3f} ms/req ({r['server_cpu_pct']:.0f} % of a "
              f"core), other processes {r['other_cpu_pct']:.0f} %"
              + (f", database {r['db_cpu_pct']:.0f} %" if r.get("db_cpu_pct") is not None
                 else ""))
        print(f"py-spy raw samples: {raw}")
        print(busy_table(raw))
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
