"""The server killed with SIGKILL in the middle of code exchanges and refreshes, then
restarted on the same database (a SQLite file, and PostgreSQL; refresh-token rotation on,
so a refresh writes the most): no token the client received lacks its record, no token
pair is half issued, every code is either unused (and still works) or consumed (with its
token family), each refresh-token family has exactly one live refresh token, and a SQLite
file passes SQLite's integrity checks. Real processes (`hubspot-oauth server`), real
sockets, real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from hubspot_oauth.server import ServerSettings, create_app
from hubspot_oauth.server.hubspot import token_digest
from tests.support.components import free_port

CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"  # the default seed's app
CLIENT_SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
REDIRECT_URI = "http://localhost:3000/oauth-callback"
ROUNDS = 3
CODES_PER_ROUND = 12
PAIRS = 8

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")]


@dataclass
class Server:
    database_url: str
    logs: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        executable = Path(sys.executable).with_name("hubspot-oauth")
        self.starts += 1
        out = (self.logs / f"server-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [str(executable), "server", "--port", str(self.port),
             "--database-url", self.database_url,
             "--refresh-token-rotation", "rotate"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("server did not start within 60 s")

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        assert self.process.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    logs = tmp_path / "logs"
    logs.mkdir()
    srv = Server(database_url, logs)
    yield srv
    srv.stop()


def _issue_codes(database_url: str, n: int) -> list[str]:
    """Codes issued by another process on the same database (as the authorize pages do)."""
    app = create_app(ServerSettings(database_url=database_url))
    try:
        hub = app.state.hubspot
        return [hub.issue_code(client_id=CLIENT_ID, redirect_uri=REDIRECT_URI,
                               user_email="admin@example.com", hub_id=1234567,
                               scopes=["crm.objects.contacts.read"]) for _ in range(n)]
    finally:
        hub.close()


def _post(url: str, data: dict[str, str]) -> httpx.Response:
    return httpx.post(url, data=data, timeout=20)


def _exchange(url: str, code: str) -> httpx.Response:
    return _post(url + "/oauth/v3/token", {
        "grant_type": "authorization_code", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "code": code, "redirect_uri": REDIRECT_URI})


def _refresh(url: str, refresh_token: str) -> httpx.Response:
    return _post(url + "/oauth/v3/token", {
        "grant_type": "refresh_token", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET, "refresh_token": refresh_token})


def _introspect(url: str, token: str) -> bool:
    response = _post(url + "/oauth/v3/token/introspect", {
        "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "token": token})
    assert response.status_code == 200, response.text
    return response.json()["active"] is True


def _check_database(database_url: str) -> None:
    """Integrity and the all-or-nothing rules, read straight from the database."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as db:
            if engine.dialect.name == "sqlite":
                assert db.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert db.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            # Every code is unused (no family) or consumed together with its token family.
            for consumed_at, family in db.execute(sa.text(
                    "SELECT consumed_at, family_id FROM authorization_codes")):
                if consumed_at is None:
                    assert family is None
                    continue
                refresh = db.execute(sa.text(
                    "SELECT count(*) FROM refresh_tokens WHERE family_id = :f"),
                    {"f": family}).scalar()
                access = db.execute(sa.text(
                    "SELECT count(*) FROM access_tokens WHERE family_id = :f"),
                    {"f": family}).scalar()
                assert refresh >= 1 and access >= 1, (family, refresh, access)
            # No access token without the refresh token it came from.
            assert db.execute(sa.text(
                "SELECT count(*) FROM access_tokens a LEFT JOIN refresh_tokens r "
                "ON a.refresh_token_id = r.id "
                "WHERE a.refresh_token_id IS NOT NULL AND r.id IS NULL")).scalar() == 0
            # Rotation is atomic: each family has exactly one live refresh token.
            for family, live in db.execute(sa.text(
                    "SELECT family_id, sum(CASE WHEN retired_at IS NULL AND revoked_at IS NULL "
                    "THEN 1 ELSE 0 END) FROM refresh_tokens GROUP BY family_id")):
                assert live == 1, (family, live)
    finally:
        engine.dispose()


def _token_row(database_url: str, table: str, token: str) -> tuple | None:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as db:
            columns = "consumed_at" if table == "authorization_codes" else (
                "retired_at, revoked_at")
            row = db.execute(sa.text(f"SELECT {columns} FROM {table} "  # noqa: S608
                                     "WHERE token_digest = :d"),
                             {"d": token_digest(token)}).first()
            return tuple(row) if row is not None else None
    finally:
        engine.dispose()


def _live_refresh_token(database_url: str, refresh_token: str) -> bool:
    row = _token_row(database_url, "refresh_tokens", refresh_token)
    return row is not None and row[0] is None and row[1] is None


def test_sigkill_mid_exchange_and_refresh_leaves_consistent_data(server: Server) -> None:
    codes = _issue_codes(server.database_url, PAIRS + ROUNDS * CODES_PER_ROUND)
    server.start()
    pairs: list[str] = []  # refresh tokens whose state the client knows
    for code in codes[:PAIRS]:
        response = _exchange(server.url, code)
        assert response.status_code == 200, response.text
        pairs.append(response.json()["refresh_token"])
    received: list[dict] = []
    unknown_codes: list[str] = []
    kills = delays = 0

    for round_ in range(ROUNDS):
        batch = codes[PAIRS + round_ * CODES_PER_ROUND: PAIRS + (round_ + 1) * CODES_PER_ROUND]
        if round_ == 0:
            # Hold some requests in flight (delay fault) while the others complete.
            fault = httpx.post(server.url + "/_emulator/faults", timeout=10, json={
                "endpoint": "token", "fault": "delay", "times": 8, "delay_ms": 5000})
            assert fault.status_code == 201, fault.text
            delays += 8
        results: dict[tuple[str, str], httpx.Response | Exception] = {}
        done = threading.Event()
        work = [("code", c) for c in batch] + [("refresh", r) for r in pairs]
        threads = [threading.Thread(target=_call, args=(server.url, kind, value, results, done))
                   for kind, value in work]
        for thread in threads:
            thread.start()
        # Kill as soon as answers start coming back: the rest are mid-flight.
        done.wait(timeout=20)
        if round_ == 0:
            deadline = time.monotonic() + 10
            while len(results) < len(work) - 8 and time.monotonic() < deadline:
                time.sleep(0.01)
        server.kill()
        kills += 1
        for thread in threads:
            thread.join(timeout=30)
        server.start()
        _check_database(server.database_url)

        next_pairs = []
        for (kind, value), result in results.items():
            ok = isinstance(result, httpx.Response) and result.status_code == 200
            if ok:
                body = result.json()
                received.append(body)
                next_pairs.append(body["refresh_token"])
            elif isinstance(result, httpx.Response):
                raise AssertionError(f"{kind} answered {result.status_code}: {result.text}")
            elif kind == "code":
                unknown_codes.append(value)
            elif _live_refresh_token(server.database_url, value):
                next_pairs.append(value)  # the refresh never committed: the old one lives
        # Every pair the client received has its records and works after the restart.
        for body in received:
            assert _introspect(server.url, body["access_token"])
            assert _token_row(server.database_url, "refresh_tokens",
                              body["refresh_token"]) is not None
        for refresh_token in next_pairs:
            assert _live_refresh_token(server.database_url, refresh_token)
        pairs = next_pairs

    # A code whose answer was lost is either still unused (and works now) or was consumed
    # with its whole family (a retry is then a replay, refused and revoking it).
    unused = [c for c in unknown_codes
              if _token_row(server.database_url, "authorization_codes", c) == (None,)]
    for code in unused:
        assert _exchange(server.url, code).status_code == 200
    # The latest pairs still refresh normally.
    for refresh_token in pairs:
        response = _refresh(server.url, refresh_token)
        assert response.status_code == 200, response.text
        assert _introspect(server.url, response.json()["access_token"])
    _check_database(server.database_url)
    print(f"\nSIGKILL faults: {kills} kills, {delays} delayed requests, {len(received)} answers "
          f"received, {len(unknown_codes)} exchanges lost in flight ({len(unused)} unused)")
    assert kills == ROUNDS and received
    # The servers' stdout/stderr: no traceback, and no code or token. (The banner shows the
    # default seed's client secret by design: HubSpot's public example values.)
    log = server.log_text()
    assert "Traceback" not in log and "Local HubSpot" in log
    secrets = set(codes) | {b["access_token"] for b in received} | {
        b["refresh_token"] for b in received}
    assert not [s for s in secrets if s in log]


def _call(url: str, kind: str, value: str, results: dict, done: threading.Event) -> None:
    try:
        results[(kind, value)] = (
            _exchange(url, value) if kind == "code" else _refresh(url, value))
    except Exception as exc:  # noqa: BLE001 - a killed server: connection errors
        results[(kind, value)] = exc
    done.set()
