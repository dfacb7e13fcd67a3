"""The token store measured in-process (no HTTP): `access_token(key)` on a fresh token, the
lookup p50 as the number of connections grows, and the refresh storm (see `storm.py`).

Every loop is bounded by a call count and a time limit. The database is a temporary SQLite
file under benchmarks/.work/; rows for the lookup scenario are copied in bulk with SQL
from one row the store itself wrote (same ciphertext, distinct keys), so every lookup still
reads, decrypts and parses a real record.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from .context import Context, Scenario


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def _token(hub_id: int = 1234567, expires_in: int = 1800):
    from hubspot_oauth.tokens import Token, new_access_token, new_refresh_token

    now = datetime.now(UTC)
    return Token(access_token=new_access_token(), refresh_token=new_refresh_token(),
                 expires_in=expires_in, expires_at=now + timedelta(seconds=expires_in),
                 hub_id=hub_id, user_id=1, scopes=("oauth", "crm.objects.contacts.read"),
                 user="admin@example.com", hub_domain="acme.example.com")


def _fresh_store(ctx: Context, name: str, **options: Any):
    import inspect

    from hubspot_oauth.client.store import TokenStore

    folder = ctx.work_dir(name)
    for leftover in folder.glob("tokens.db*"):
        leftover.unlink()
    url = f"sqlite:///{folder / 'tokens.db'}"
    accepted = inspect.signature(TokenStore).parameters
    options = {k: v for k, v in options.items() if k in accepted}
    return TokenStore(url, encryption_keys=[_fernet_key()], **options), folder / "tokens.db"


def access_token_rate(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    """Calls/s of `store.access_token(key)` on one thread, token far from expiry."""
    store, _ = _fresh_store(ctx, "store-access-token")
    try:
        key = store.save(_token())
        for _ in range(200):  # warm-up: pool, statement cache
            store.access_token(key)
        seconds = 0.5 if ctx.quick else 1.5
        runs = []
        for _ in range(ctx.runs):
            calls, t0 = 0, time.perf_counter()
            deadline = t0 + seconds
            while calls < 1_000_000:
                for _ in range(100):
                    store.access_token(key)
                calls += 100
                if time.perf_counter() >= deadline:
                    break
            elapsed = time.perf_counter() - t0
            runs.append({"calls_per_s": calls / elapsed, "us_per_call": 1e6 * elapsed / calls,
                         "calls": calls})
            ctx.log(f"  store-access-token: {calls / elapsed:,.0f} calls/s "
                    f"({1e6 * elapsed / calls:.1f} µs/call)")
    finally:
        store.close()
    row.update(runs=runs, figures=[("calls_per_s", "calls/s, 1 thread", 0),
                                   ("us_per_call", "µs per call", 1)],
               load_cmd=f"in-process: TokenStore(sqlite file).access_token(key), "
                        f"{seconds} s per run, 1 thread")
    return row


LOOKUP_SIZES = (10_000, 100_000, 1_000_000)


def _grow(db_path: str, template_key: str, start: int, stop: int) -> float:
    """Copy the template row to keys conn-<start>..conn-<stop-1> with one INSERT … SELECT."""
    import sqlite3

    from hubspot_oauth.client.migrations.tables import TOKEN_TABLE

    t0 = time.perf_counter()
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({TOKEN_TABLE})")]
        rest = [c for c in columns if c != "key"]
        quoted = ", ".join(f'"{c}"' for c in rest)
        conn.execute(
            f"""WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?)
            INSERT INTO {TOKEN_TABLE} ("key", {quoted})
            SELECT 'conn-' || n.i, {", ".join(f't."{c}"' for c in rest)}
            FROM n, {TOKEN_TABLE} AS t WHERE t."key" = ?""",
            (start, stop - 1, template_key),
        )
        conn.commit()
    finally:
        conn.close()
    return time.perf_counter() - t0


def lookup_scaling(ctx: Context, row: dict[str, Any]) -> dict[str, Any]:
    """p50 of `store.access_token(key)` for random keys among 10k, 100k and 1M connections,
    with the store's in-process token cache off: every call reads and decrypts its row."""
    store, db_path = _fresh_store(ctx, "store-lookup", cache_ttl=0)
    sizes = LOOKUP_SIZES
    lookups = 500 if ctx.quick else 2000
    runs: list[dict[str, Any]] = [{} for _ in range(ctx.runs)]
    seeded = 0
    notes = []
    try:
        template = store.save(_token(), key="template")
        for size in sizes:
            free_gb = shutil.disk_usage(db_path.parent).free / 2**30
            if free_gb < 3:
                notes.append(f"store-lookup: stopped before {size:,} rows, {free_gb:.1f} GB free")
                break
            took = _grow(str(db_path), template, seeded, size)
            seeded = size
            label = _label(size)
            mb = os.path.getsize(db_path) / 2**20
            ctx.log(f"  store-lookup: seeded {size:,} rows in {took:.1f} s ({mb:,.0f} MB)")
            for run in runs:
                run[f"seed_s_{label}"] = took
            keys = [f"conn-{random.randrange(size)}" for _ in range(lookups)]
            for key in keys[:200]:  # warm the OS page cache the same way for every size
                store.access_token(key)
            for run in runs:
                random.shuffle(keys)
                times = []
                deadline = time.perf_counter() + 20
                for key in keys:
                    t0 = time.perf_counter()
                    store.access_token(key)
                    times.append(time.perf_counter() - t0)
                    if t0 > deadline:
                        break
                times.sort()
                run[f"p50_us_{label}"] = 1e6 * times[len(times) // 2]
                run[f"p99_us_{label}"] = 1e6 * times[int(len(times) * 0.99)]
            ctx.log(f"  store-lookup {label}: p50 "
                    + ", ".join(f"{r[f'p50_us_{label}']:.1f}" for r in runs) + " µs")
    finally:
        store.close()
        for leftover in db_path.parent.glob("tokens.db*"):
            leftover.unlink()
    figures = []
    for size in sizes:
        label = _label(size)
        figures += [(f"p50_us_{label}", f"lookup p50 µs, {size:,} connections", 1),
                    (f"p99_us_{label}", f"lookup p99 µs, {size:,} connections", 1),
                    (f"seed_s_{label}", f"seconds to seed up to {size:,} rows (SQL)", 1)]
    row.update(runs=runs, figures=figures, notes=notes,
               load_cmd=f"in-process: TokenStore(sqlite file, cache_ttl=0)"
                        f".access_token(random key), "
                        f"{lookups} lookups per size per run, 1 thread")
    return row


def _label(size: int) -> str:
    return f"{size // 1_000_000}m" if size >= 1_000_000 else f"{size // 1000}k"


SCENARIOS = [
    Scenario("store-access-token", "ours", "figures",
             "TokenStore.access_token(key) on a fresh token, SQLite, in-process (default "
             "settings: served from the store's token cache)",
             access_token_rate),
    Scenario("store-lookup", "ours", "figures",
             "TokenStore.access_token(random key), cache off (every call reads its row), "
             "10k / 100k / 1M stored connections",
             lookup_scaling),
]
