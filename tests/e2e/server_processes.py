"""Real `hubspot-oauth server` processes for the PostgreSQL end-to-end tests.

Each one is the venv's console script on a free loopback port, with its own data
directory and no HUBSPOT_* settings from the developer's environment. Every wait is
bounded; `stop()` sends SIGTERM (the server's clean Ctrl-C path) and kills after 15 s.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from tests.support.components import free_port
from tests.support.race import race  # noqa: F401 - the e2e tests import it from here

CONSOLE_SCRIPT = Path(sys.executable).with_name("hubspot-oauth")
START_TIMEOUT = 60.0  # seconds: a cold start seeds the database (argon2 hashes) on 2 busy cores
STOP_TIMEOUT = 15.0

CLIENT_ID = "7fff1e36-2d40-4ae1-bbb1-5266d59564fb"
CLIENT_SECRET = "7c3ce02c-0f0c-4c9f-9700-92440c9bdf2d"
REDIRECT_URI = "http://localhost:3000/oauth-callback"
ADMIN = "admin@example.com"
ACME = 1234567
SCOPE = "crm.objects.contacts.read"
CONTACTS = "/crm/v3/objects/contacts"


def cli_env(workdir: Path) -> dict[str, str]:
    """The environment of a CLI subprocess: ours minus HubSpot settings, its own data dir."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HUBSPOT_") and k not in {"CLIENT_ID", "CLIENT_SECRET", "SCOPE"}}
    env["XDG_DATA_HOME"] = str(workdir / "data")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(args: Sequence[str], workdir: Path, timeout: float = 120.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``hubspot-oauth ARGS`` to completion (bounded); stdout and stderr as text.
    `env` adds variables to `cli_env`."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(CONSOLE_SCRIPT), *args], env={**cli_env(workdir), **(env or {})},
                          cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          check=False)


class ServerProcess:
    """``hubspot-oauth server --database-url URL --port <free> EXTRA…`` in a subprocess."""

    def __init__(self, database_url: str, workdir: Path, *extra: str) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.extra = list(extra)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        """What the process printed so far (stdout, then stderr)."""
        parts = []
        for name in ("stdout", "stderr"):
            path = self.workdir / f"server-{self.port}.{name}"
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    def start(self) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a free port may be taken before the child binds it: retry
            self.port = free_port()
            out = open(self.workdir / f"server-{self.port}.stdout", "wb")  # noqa: SIM115
            err = open(self.workdir / f"server-{self.port}.stderr", "wb")  # noqa: SIM115
            with out, err:
                self.process = subprocess.Popen(
                    [str(CONSOLE_SCRIPT), "server", "--host", "127.0.0.1", "--port",
                     str(self.port), "--database-url", self.database_url, *self.extra],
                    env=cli_env(self.workdir), cwd=self.workdir, stdout=out, stderr=err)
            if self._wait_ready():
                return self
            if "already in use" not in self.output():
                break
        raise AssertionError(f"hubspot-oauth server did not start:\n{self.output()[-3000:]}")

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/", timeout=2.0).status_code == 200:
                    return True
            time.sleep(0.1)
        self.stop()
        return False

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after `STOP_TIMEOUT`; returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def servers(database_url: str, workdir: Path, count: int, *extra: str
            ) -> Iterator[list[ServerProcess]]:
    """`count` servers on one database, started one after the other (the first seeds it)."""
    started: list[ServerProcess] = []
    try:
        for i in range(count):
            started.append(ServerProcess(database_url, workdir / f"server{i}", *extra).start())
        yield started
    finally:
        for server in started:
            server.stop()


def issue_code(server: ServerProcess) -> str:
    """A code from the server's authorize page (--auto-approve: one 302, no pages)."""
    query = urlencode({"client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI, "scope": SCOPE,
                       "state": "s1"})
    response = httpx.get(f"{server.base_url}/oauth/authorize?{query}", timeout=30)
    assert response.status_code == 302, response.text
    found = parse_qs(urlsplit(response.headers["location"]).query)
    assert found["state"] == ["s1"]
    return found["code"][0]


def api_status(server: ServerProcess, access_token: str) -> tuple[int, str | None]:
    response = httpx.get(server.base_url + CONTACTS, timeout=30,
                         headers={"Authorization": f"Bearer {access_token}"})
    category = response.json().get("category") if response.status_code != 200 else None
    return response.status_code, category
