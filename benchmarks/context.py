"""What every scenario shares: run settings, the time budget, the PostgreSQL cluster, and
`measure_http` (sanity request, warm-up, measured wrk runs, medians)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .process import ROOT, WORK, Request, Server, WrkSettings, redact, run_wrk, sanity
from .report import summarize

HTTP_KEYS = ("rps", "lat_p50_ms", "lat_p99_ms", "rss_peak_mb", "server_cpu_pct",
             "server_cpu_ms_per_req",
             "wrk_cpu_pct", "db_cpu_pct", "other_cpu_pct", "steal_pct")


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str  # "limit" | "peer" | "ours"
    kind: str  # "http" (wrk) | "figures" (in-process)
    what: str
    run: Callable[[Context, dict[str, Any]], dict[str, Any]]


@dataclass
class Context:
    runs: int = 3
    duration: int = 5
    warmup: int = 3
    quick: bool = False
    wrk: WrkSettings = field(default_factory=WrkSettings)
    noise_threshold: float = 15.0  # % of a core used by other processes during a run
    noisy_retries: int = 1
    budget_s: float = 540.0  # retries stop once this much time has gone
    started: float = field(default_factory=time.monotonic)
    _postgres: Any = None

    @property
    def python(self) -> str:
        return sys.executable

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.budget_s

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", flush=True)

    def work_dir(self, name: str) -> Path:
        path = WORK / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def uvicorn(self, app: str, workers: int = 1, factory: bool = False) -> list[str]:
        """Our server stack, the same for the baseline and for hubspot-oauth."""
        cmd = [self.python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
               "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]
        if factory:
            cmd.append("--factory")
        if workers > 1:
            cmd += ["--workers", str(workers)]
        return cmd

    def postgres_pid(self) -> int | None:
        """The postmaster's pid (its backends are its children), for CPU accounting."""
        try:
            return int((self.postgres().data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postgres(self):
        """A throwaway PostgreSQL cluster (tests/support/postgres.py), started once."""
        if self._postgres is None:
            if str(ROOT) not in sys.path:
                sys.path.insert(0, str(ROOT))
            from tests.support.postgres import PostgresCluster

            cluster = PostgresCluster()
            cluster.start()
            self._postgres = cluster
        return self._postgres

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.destroy()
            self._postgres = None


def server(name: str, cmd: list[str], port: int, env: dict[str, str] | None = None) -> Server:
    return Server(name=name, cmd=[c.replace("{port}", str(port)) for c in cmd], port=port,
                  env=env or {})


def measure_http(ctx: Context, row: dict[str, Any], srv: Server, req: Request) -> dict[str, Any]:
    """Sanity request, warm-up, then `ctx.runs` measured wrk runs; fills `row`.

    With `req.bodies` (single-use codes) file 0 is the warm-up and files 1..runs the measured
    runs, and a noisy run is kept (its codes are spent). Otherwise a run during which other
    processes used more than `ctx.noise_threshold` % of a core is replaced once, while the
    time budget lasts.
    """
    if req.bodies:
        first = req.bodies[0].read_text().splitlines()[0]
        sample = sanity(srv.base_url, req, body=first)
    elif req.cycle is not None:
        sample = sanity(srv.base_url, req, body=req.cycle.read_text().splitlines()[0])
    else:
        sample = sanity(srv.base_url, req)
    row["sample_response"] = redact(sample[:300])
    row["server_cmd"] = srv.shown_cmd()
    bound = 30  # seconds wrk may run through one file of single-use bodies
    if ctx.warmup > 0:
        warm = run_wrk(srv, req, ctx.wrk, ctx.warmup,
                       req.bodies[1] if req.bodies else None)
        row["warmup"] = {k: warm[k] for k in ("rps", "requests", "errors")}
        if req.bodies and warm["rps"] > 0:
            # wrk always runs for -d: size it to the bodies of one run at the warm-up's pace
            per_run = max(len(p.read_text().splitlines()) for p in req.bodies[2:])
            bound = max(2, min(60, math.ceil(1.5 * per_run / warm["rps"]) + 1))
    runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    retries = 0 if req.bodies else ctx.noisy_retries
    while len(runs) < ctx.runs:
        bodies = req.bodies[2 + len(runs)] if req.bodies else None
        r = run_wrk(srv, req, ctx.wrk, bound if bodies else ctx.duration, bodies)
        noisy = r["other_cpu_pct"] > ctx.noise_threshold
        ctx.log(f"  {row['name']}: {r['rps']:,.0f} req/s p50 {r['lat_p50_ms']:.2f} ms "
                f"p99 {r['lat_p99_ms']:.2f} ms errors {r['errors']} rss {r['rss_peak_mb']} MB "
                f"cpu server {r['server_cpu_pct']}% wrk {r['wrk_cpu_pct']}% "
                + (f"database {r['db_cpu_pct']}% " if r.get("db_cpu_pct") is not None else "")
                + f"other {r['other_cpu_pct']}% steal {r['steal_pct']}%"
                + (" (noisy)" if noisy else ""))
        if noisy and retries > 0 and not ctx.over_budget():
            retries -= 1
            discarded.append(r)
            continue
        r["noisy"] = noisy
        runs.append(r)
        if not srv.alive():
            raise RuntimeError(f"server died: {srv.log_tail()}")
    row["runs"] = runs
    row["discarded_noisy_runs"] = discarded
    row["median"] = summarize(runs, HTTP_KEYS)
    row["rps_min_max"] = [min(r["rps"] for r in runs), max(r["rps"] for r in runs)]
    row["errors"] = sum(r["errors"] for r in runs)
    row["load_cmd"] = runs[0]["cmd"]
    return row
