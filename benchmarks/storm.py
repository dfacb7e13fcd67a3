"""The refresh storm: 8 processes × 10 threads ask one token store for the access tokens of
50 connections whose access tokens have all expired. Single-flight refresh means exactly
50 refresh grants reach the server (counted by its own /_emulator/stats), and every caller
of one connection gets the same new access token.

The store is a SQLite file shared by the 8 processes; the server is our local HubSpot on
its own SQLite file. Processes are started once (spawn) and reused for every run; each run
saves the 50 connections under new keys (so no process's token cache knows them) with an
expiry in the past, then releases all 80 threads at
once (a process barrier, then a thread barrier). Every wait is bounded.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .context import Context, Scenario
from .ours import TOKEN_PATH, exchange, mint_codes, ours_server, seed_app, sqlite_url
from .process import Request, http

PROCESSES, THREADS, CONNECTIONS = 8, 10, 50


def run_keys(run: int) -> list[str]:
    """Fresh connection keys per run: no process has them in its token cache yet."""
    return [f"storm-{run}-{i}" for i in range(CONNECTIONS)]


def _worker(index: int, store_url: str, enc_key: str, base_url: str, barrier: Any,
            commands: Any, results: Any) -> None:
    """One storm process: its own TokenStore and OAuthClient, 10 threads per run."""
    from hubspot_oauth import Endpoints, OAuthClient, TokenStore

    client_id, secret, redirect = seed_app()
    client = OAuthClient(client_id=client_id, client_secret=secret, redirect_uri=redirect,
                         scopes=["crm.objects.contacts.read"],
                         endpoints=Endpoints.local(base_url))
    store = TokenStore(store_url, client=client, encryption_keys=[enc_key],
                       create_schema=False)
    results.put({"index": index, "ready": True})
    try:
        while True:
            run = commands.get(timeout=300)
            if run is None:
                return
            try:
                results.put(_one_run(store, index, run, barrier))
            except Exception as exc:  # noqa: BLE001 - reported by the parent
                results.put({"index": index, "failed": f"{type(exc).__name__}: {exc}"})
    finally:
        store.close()


def _one_run(store: Any, index: int, run: int, barrier: Any) -> dict[str, Any]:
    """10 threads, released together once every process is ready; each asks for all 50
    connections in its own order. Returns digests of what each connection answered."""
    keys = run_keys(run)
    seen: dict[str, set[str]] = {k: set() for k in keys}
    errors: list[str] = []
    lock = threading.Lock()
    start_threads = threading.Barrier(THREADS + 1, timeout=60)

    def caller(seed: int) -> None:
        order = keys[:]
        random.Random(seed).shuffle(order)
        start_threads.wait()
        for key in order:
            try:
                token = store.access_token(key)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(type(exc).__name__)
                continue
            digest = hashlib.sha256(token.encode()).hexdigest()[:16]
            with lock:
                seen[key].add(digest)

    threads = [threading.Thread(target=caller, args=(run * 1000 + index * 10 + t,))
               for t in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait(timeout=60)  # every process is ready
    started = time.time()
    start_threads.wait()
    for t in threads:
        t.join(timeout=120)
    return {"index": index, "started": started, "ended": time.time(),
            "seen": {k: sorted(v) for k, v in seen.items()}, "errors": errors}


def _collect(results: Any, procs: list, count: int, timeout: float, what: str) -> list[dict]:
    """`count` answers from the workers within `timeout` s; raises when a worker died,
    failed or the time ran out."""
    import queue

    answers: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(answers) < count:
        try:
            answer = results.get(timeout=1)
        except queue.Empty:
            dead = [p.exitcode for p in procs if not p.is_alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"storm {what}: {len(answers)}/{count} processes answered "
                                   f"(exit codes of dead ones: {dead})") from None
            continue
        if "failed" in answer:
            raise RuntimeError(f"storm {what}: process {answer['index']}: {answer['failed']}")
        answers.append(answer)
    return answers


def _refresh_grants(base_url: str) -> int:
    status, text = http(base_url, Request("/_emulator/stats", method="GET"))
    if status != 200:
        raise RuntimeError(f"GET /_emulator/stats: HTTP {status}")
    import json

    return int(json.loads(text)["token"]["refresh_token"]["ok"])


def storm(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    from cryptography.fernet import Fernet

    from hubspot_oauth import Token, TokenStore

    server_db = sqlite_url(ctx, row["name"])
    folder = ctx.work_dir(row["name"] + "-store")
    for leftover in folder.glob("tokens.db*"):
        leftover.unlink()
    store_url = f"sqlite:///{folder / 'tokens.db'}"
    enc_key = Fernet.generate_key().decode()
    codes = mint_codes(server_db, CONNECTIONS)
    runs: list[dict[str, Any]] = []
    spawn = mp.get_context("spawn")
    with ours_server(ctx, row["name"], server_db) as srv:
        tokens = [Token.from_response(exchange(srv, c)) for c in codes]
        store = TokenStore(store_url, encryption_keys=[enc_key])
        barrier = spawn.Barrier(PROCESSES, timeout=60)
        results = spawn.Queue()
        queues = [spawn.Queue() for _ in range(PROCESSES)]
        procs = [spawn.Process(target=_worker, daemon=True,
                               args=(i, store_url, enc_key, srv.base_url, barrier, queues[i],
                                     results))
                 for i in range(PROCESSES)]
        for p in procs:
            p.start()
        try:
            _collect(results, procs, PROCESSES, 120, "start")  # imports done, stores open
            for run in range(ctx.runs):
                past = datetime.now(UTC) - timedelta(hours=1)
                keys = run_keys(run)
                for key, token in zip(keys, tokens, strict=True):
                    store.save(token.replace(expires_at=past), key=key)
                before = _refresh_grants(srv.base_url)
                for q in queues:
                    q.put(run)
                answers = _collect(results, procs, PROCESSES, 120, f"run {run + 1}")
                grants = _refresh_grants(srv.base_url) - before
                wall = max(a["ended"] for a in answers) - min(a["started"] for a in answers)
                per_key: dict[str, set[str]] = {k: set() for k in keys}
                for a in answers:
                    for k, digests in a["seen"].items():
                        per_key[k].update(digests)
                errors = [e for a in answers for e in a["errors"]]
                distinct = max(len(v) for v in per_key.values())
                calls = PROCESSES * THREADS * CONNECTIONS
                runs.append({"grants": grants, "wall_s": wall, "errors": len(errors),
                             "max_distinct_tokens_per_connection": distinct,
                             "calls": calls, "calls_per_s": calls / wall})
                ctx.log(f"  storm run {run + 1}: {grants} refresh grants, {wall:.2f} s, "
                        f"{len(errors)} errors {sorted(set(errors))[:3]}, "
                        f"≤ {distinct} distinct access token(s) per connection")
        finally:
            for q in queues:
                q.put(None)
            for p in procs:
                p.join(timeout=20)
                if p.is_alive():
                    p.kill()
            store.close()
        row["server_cmd"] = srv.shown_cmd()
    row.update(
        runs=runs,
        figures=[("grants", "refresh grants at the server (must be 50)", 0),
                 ("wall_s", "wall time s, 4,000 access_token calls", 2),
                 ("errors", "caller errors", 0),
                 ("max_distinct_tokens_per_connection",
                  "distinct access tokens per connection", 0)],
        load_cmd=f"in-process: {PROCESSES} spawned processes × {THREADS} threads, each thread "
                 f"calls TokenStore(sqlite file).access_token(key) for all {CONNECTIONS} "
                 f"expired connections in its own random order; grants from "
                 f"GET /_emulator/stats ({TOKEN_PATH})",
    )
    return row


SCENARIOS = [
    Scenario("store-storm", "ours", "figures",
             "refresh storm: 8 processes × 10 threads, 50 expired connections, one store",
             storm),
]
