"""A throwaway PostgreSQL cluster for the test run: initdb in a temporary folder, a free
port on 127.0.0.1, removed afterwards. Runs as an unprivileged user when we are root."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .components import free_port, postgres_bin, unavailable


class PostgresCluster:
    def __init__(self) -> None:
        self.initdb = postgres_bin("initdb")
        self.pg_ctl = postgres_bin("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            raise RuntimeError("initdb/pg_ctl not found (apt-get install postgresql)")
        self.root = Path(tempfile.mkdtemp(prefix="hubspot-oauth-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = "postgres"
        self._run_as: str | None = None
        if os.geteuid() == 0:
            # initdb refuses to run as root: use the `postgres` system user, or `nobody`.
            for candidate in ("postgres", "nobody"):
                try:
                    entry = pwd.getpwnam(candidate)
                except KeyError:
                    continue
                self._run_as = candidate
                os.chown(self.root, entry.pw_uid, entry.pw_gid)
                break
            else:
                raise RuntimeError("running as root and no unprivileged user for PostgreSQL")
        os.chmod(self.root, 0o755)

    def _cmd(self, *args: str) -> list[str]:
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *args]
        return list(args)

    def start(self) -> None:
        subprocess.run(
            self._cmd(self.initdb, "-D", str(self.data), "-U", self.user, "-A", "trust",
                      "--no-sync", "-E", "UTF8"),
            check=True, capture_output=True, timeout=120,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
            f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=300 "
            f"-c unix_socket_directories={self.root}"
        )
        subprocess.run(
            self._cmd(self.pg_ctl, "-D", str(self.data), "-o", options, "-l",
                      str(self.root / "log"), "-w", "-t", "60", "start"),
            check=True, capture_output=True, timeout=90,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            self._cmd(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"),
            capture_output=True, timeout=90,
        )

    def restart_start_only(self) -> None:
        """Start again after `stop()` (same data, same port)."""
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c fsync=off "
            f"-c synchronous_commit=off -c max_connections=300 "
            f"-c unix_socket_directories={self.root}"
        )
        subprocess.run(
            self._cmd(self.pg_ctl, "-D", str(self.data), "-o", options, "-l",
                      str(self.root / "log"), "-w", "-t", "60", "start"),
            check=True, capture_output=True, timeout=90,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        import psycopg

        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        time.sleep(0.2)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_cluster() -> Iterator[PostgresCluster]:
    """A started cluster, destroyed on exit; PostgreSQL that cannot start here is
    `unavailable` (a skip, a failure under CI=true)."""
    try:
        cluster = PostgresCluster()
        cluster.start()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        unavailable("PostgreSQL", str(exc)[:300])
    try:
        yield cluster
    finally:
        cluster.destroy()
