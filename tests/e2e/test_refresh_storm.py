"""Refresh storms: many threads and OS processes ask for the same expired tokens at once.

Single-flight means exactly one refresh grant per connection (counted by the local
HubSpot's /_emulator/stats), every caller gets a working access token, and with the
server's rotation switch no caller ever sees BAD_REFRESH_TOKEN. A process SIGKILLed in the
middle of a refresh leaves the store readable and the next call succeeds.

Worker processes run this file as a script (`python test_refresh_storm.py SPEC.json`):
each opens its own TokenStore and OAuthClient, waits for a common start signal, then runs
its threads. Every wait is bounded; no test asserts on timings (wall times are printed).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0
RUN_TIMEOUT = 90.0


# -- the worker process ------------------------------------------------------------------


def worker_main(spec_path: str) -> int:
    """One OS process of a storm: `threads` threads call access_token on every key."""
    from hubspot_oauth import Endpoints, OAuthClient, TokenStore

    spec = json.loads(Path(spec_path).read_text())
    client = OAuthClient(
        client_id=spec["client_id"],
        client_secret=spec["client_secret"],
        redirect_uri=spec["redirect_uri"],
        endpoints=Endpoints.local(spec["base_url"]),
    )
    store = TokenStore(
        spec["database_url"],
        client=client,
        create_schema=False,
        refresh_lease=spec.get("refresh_lease", 60.0),
    )
    keys: list[str] = spec["keys"]
    Path(spec["ready"]).touch()
    deadline = time.monotonic() + READY_TIMEOUT
    while not Path(spec["go"]).exists():
        if time.monotonic() > deadline:
            return 3
        time.sleep(0.005)
    threads = int(spec["threads"])
    barrier = threading.Barrier(threads)
    results: list[list[Any]] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait(timeout=30)
        order = list(keys)
        random.Random(index * 7919 + os.getpid()).shuffle(order)
        for key in order:
            try:
                outcome = [key, store.access_token(key), None]
            except Exception as exc:  # noqa: BLE001 - reported to the test
                outcome = [key, None, f"{type(exc).__name__}: {exc}"]
            with lock:
                results.append(outcome)

    started = time.time()
    pool = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=RUN_TIMEOUT)
    finished = time.time()
    hung = sum(thread.is_alive() for thread in pool)
    with lock:
        Path(spec["out"]).write_text(json.dumps({
            "results": results, "hung": hung, "started": started, "finished": finished,
        }))
    store.close()
    client.close()
    return 0 if hung == 0 else 4


def single_call_main(spec_path: str) -> int:
    """A process that makes one access_token call (killed mid-refresh by the test)."""
    from hubspot_oauth import Endpoints, OAuthClient, TokenStore

    spec = json.loads(Path(spec_path).read_text())
    client = OAuthClient(client_id=spec["client_id"], client_secret=spec["client_secret"],
                         redirect_uri=spec["redirect_uri"],
                         endpoints=Endpoints.local(spec["base_url"]))
    store = TokenStore(spec["database_url"], client=client, create_schema=False,
                       refresh_lease=spec["refresh_lease"])
    store.access_token(spec["keys"][0])
    return 0


if __name__ == "__main__":
    sys.exit({"storm": worker_main, "single": single_call_main}[sys.argv[1]](sys.argv[2]))


# -- the test side ------------------------------------------------------------------------

import httpx  # noqa: E402 - the worker above needs none of the test imports
import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from hubspot_oauth import TokenStore  # noqa: E402
from hubspot_oauth.client.crypto import KeyRing  # noqa: E402


@dataclass
class StormResult:
    processes: int
    threads: int
    keys: list[str]
    results: list[list[Any]] = field(default_factory=list)
    hung: int = 0
    wall_seconds: float = 0.0
    startup_seconds: float = 0.0
    exited_seconds: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)
    stderr: str = ""

    @property
    def errors(self) -> list[str]:
        return [error for _, _, error in self.results if error]

    def tokens_by_key(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for key, token, _ in self.results:
            if token:
                found.setdefault(key, set()).add(token)
        return found


def worker_env(encryption_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBSPOT_")}
    env["HUBSPOT_OAUTH_ENCRYPTION_KEYS"] = encryption_key
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(ROOT)]))
    return env


def start_worker(
    mode: str, spec: dict[str, Any], workdir: Path, name: str, encryption_key: str
) -> tuple[subprocess.Popen[bytes], Path]:
    spec_path = workdir / f"{name}.json"
    spec_path.write_text(json.dumps(spec))
    log = workdir / f"{name}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, __file__, mode, str(spec_path)],
            stdout=subprocess.DEVNULL, stderr=stderr, env=worker_env(encryption_key),
            cwd=ROOT,
        )
    return process, log


def run_storm(
    hubspot: Any,
    database_url: str,
    encryption_key: str,
    keys: list[str],
    *,
    processes: int,
    threads: int,
    workdir: Path,
) -> StormResult:
    """Start `processes` workers, release them together, collect what each caller got."""
    workdir.mkdir(parents=True, exist_ok=True)
    go = workdir / "go"
    common = {
        "base_url": hubspot.base_url,
        "client_id": hubspot.client_id,
        "client_secret": hubspot.client_secret,
        "redirect_uri": hubspot.redirect_uri,
        "database_url": database_url,
        "keys": keys,
        "threads": threads,
        "go": str(go),
    }
    workers: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
    result = StormResult(processes=processes, threads=threads, keys=keys)
    launched = time.monotonic()
    try:
        for index in range(processes):
            ready, out = workdir / f"ready-{index}", workdir / f"out-{index}.json"
            process, log = start_worker(
                "storm", {**common, "ready": str(ready), "out": str(out)}, workdir,
                f"worker-{index}", encryption_key,
            )
            workers.append((process, ready, out))
        deadline = time.monotonic() + READY_TIMEOUT
        while not all(ready.exists() for _, ready, _ in workers):
            failed = [p.returncode for p, _, _ in workers if p.poll() is not None]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        ready_at = time.monotonic()
        result.startup_seconds = ready_at - launched
        go.touch()
        deadline = time.monotonic() + RUN_TIMEOUT
        for process, _, _ in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        result.exited_seconds = time.monotonic() - ready_at
    finally:
        for process, _, _ in workers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    starts, ends = [], []
    for index, (process, _, out) in enumerate(workers):
        result.exit_codes.append(process.returncode)
        if out.exists():
            data = json.loads(out.read_text())
            result.results.extend(data["results"])
            result.hung += data["hung"]
            starts.append(data["started"])
            ends.append(data["finished"])
        else:
            result.stderr += (workdir / f"worker-{index}.log").read_text()[-2000:]
    if starts:
        result.wall_seconds = max(ends) - min(starts)
    return result


def expired_connections(
    hubspot: Any, store: TokenStore, count: int, prefix: str = "conn"
) -> list[str]:
    """`count` connections (one install each) whose access tokens have expired on both
    clocks: HubSpot's moves ahead 1900 s, the stored expiry moves back as much."""
    keys = []
    client = hubspot.oauth_client()
    for index in range(count):
        token = client.exchange_code(hubspot.authorize())
        key = f"{prefix}-{index}"
        store.save(token.replace(expires_at=token.expires_at - timedelta(seconds=1900)), key=key)
        keys.append(key)
    hubspot.advance(1900)
    return keys


def assert_every_token_works(hubspot: Any, tokens: dict[str, set[str]]) -> None:
    with httpx.Client(base_url=hubspot.base_url, timeout=10) as http:
        for key, found in tokens.items():
            for token in found:
                response = http.get("/account-info/v3/details",
                                    headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 200, (key, response.status_code)


def check_storm(hubspot: Any, storm: StormResult, store: TokenStore) -> None:
    assert storm.exit_codes == [0] * storm.processes, storm.stderr
    assert storm.hung == 0
    assert storm.errors == []
    calls = storm.processes * storm.threads * len(storm.keys)
    assert len(storm.results) == calls
    tokens = storm.tokens_by_key()
    assert sorted(tokens) == sorted(storm.keys)
    # One refresh per connection: every caller of a key got the same new token.
    assert all(len(found) == 1 for found in tokens.values()), {
        k: len(v) for k, v in tokens.items() if len(v) != 1
    }
    assert hubspot.refresh_count() == len(storm.keys)
    assert hubspot.refresh_count("error") == 0
    assert_every_token_works(hubspot, tokens)
    for key in storm.keys:
        assert {store.get(key).access_token} == tokens[key]
        assert store.connection(key).status == "active"


@pytest.fixture
def encryption_key() -> str:
    return KeyRing.generate_key()


@pytest.fixture
def served_hubspot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The local HubSpot on a loopback port; `rotation` from indirect parametrization."""
    from hubspot_oauth.testing import local_hubspot

    rotation = getattr(request, "param", "off")
    with local_hubspot(serve=True, directory=tmp_path / "hubspot",
                       refresh_token_rotation=rotation, rate_limit_max=10_000) as hubspot:
        yield hubspot


def report(request: pytest.FixtureRequest, line: str) -> None:
    """Show a measured figure in the test run's output (never asserted)."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}", flush=True)


# -- the tests ------------------------------------------------------------------------------


def test_fifty_threads_on_one_expired_connection_make_one_refresh(
    hubspot: Any, database_url: str, encryption_key: str
) -> None:
    store = TokenStore(database_url, client=hubspot.oauth_client(),
                       encryption_keys=[encryption_key], clock=hubspot.now)
    try:
        key = store.save(hubspot.connect())
        hubspot.advance(1800)
        barrier = threading.Barrier(50)
        got: list[str] = []
        errors: list[BaseException] = []

        def call() -> None:
            try:
                barrier.wait(timeout=30)
                got.append(store.access_token(key))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=call) for _ in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
        assert len(got) == 50 and len(set(got)) == 1
        assert hubspot.refresh_count() == 1
    finally:
        store.close()


@pytest.mark.parametrize("served_hubspot", ["off", "rotate"], indirect=True)
def test_four_processes_share_one_sqlite_file(
    served_hubspot: Any, tmp_path: Path, encryption_key: str, request: pytest.FixtureRequest
) -> None:
    hubspot = served_hubspot
    database_url = f"sqlite:///{tmp_path / 'tokens.db'}"
    store = TokenStore(database_url, client=hubspot.oauth_client(),
                       encryption_keys=[encryption_key])
    try:
        keys = expired_connections(hubspot, store, 5)
        before = {key: store.get(key).refresh_token for key in keys}
        storm = run_storm(hubspot, database_url, encryption_key, keys,
                          processes=4, threads=10, workdir=tmp_path / "storm")
        check_storm(hubspot, storm, store)
        rotation = hubspot.settings.refresh_token_rotation
        if rotation == "rotate":  # the rotated refresh tokens were kept, and they work
            assert all(store.get(k).refresh_token != before[k] for k in keys)
        for key in keys:
            store.refresh(key)
        assert hubspot.refresh_count("error") == 0
        report(request, f"refresh storm sqlite 4x10 on 5 connections (rotation {rotation}): "
                        f"{storm.wall_seconds:.2f} s wall")
    finally:
        store.close()


def test_a_process_killed_mid_refresh_leaves_a_lease_that_expires(
    hubspot_server: Any, database_url: str, tmp_path: Path, encryption_key: str
) -> None:
    hubspot = hubspot_server
    store = TokenStore(database_url, client=hubspot.oauth_client(),
                       encryption_keys=[encryption_key])
    try:
        keys = expired_connections(hubspot, store, 1)
        original = store.get(keys[0])
        hubspot.fail_next("token", "delay", delay_ms=3000)  # keep its refresh in flight
        spec = {
            "base_url": hubspot.base_url, "client_id": hubspot.client_id,
            "client_secret": hubspot.client_secret, "redirect_uri": hubspot.redirect_uri,
            "database_url": database_url, "keys": keys, "refresh_lease": 2.0,
        }
        process, _ = start_worker("single", spec, tmp_path, "victim", encryption_key)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            leased = False
            while time.monotonic() < deadline and process.poll() is None:
                with store.engine.connect() as connection:
                    leased = connection.execute(sa.text(
                        "SELECT refreshing_until FROM hubspot_oauth_connections"
                    )).scalar() is not None
                if leased:
                    break
                time.sleep(0.02)
            assert leased, "the worker never started its refresh"
            while hubspot.server.faults.pending():  # until its request waits at HubSpot
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.02)
            process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=10) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

        # The store is readable and unchanged; the lease is still there.
        assert store.get(keys[0]) == original
        assert store.connection(keys[0]).status == "active"
        if database_url.startswith("sqlite"):
            with store.engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        # The next call waits out the dead process's lease (2 s) and refreshes.
        fresh = store.access_token(keys[0])
        assert fresh != original.access_token
        assert_every_token_works(hubspot, {keys[0]: {fresh}})
        # The killed process's request may still complete at HubSpot after its delay.
        assert 1 <= hubspot.refresh_count() <= 2
        assert hubspot.refresh_count("error") == 0
    finally:
        store.close()
