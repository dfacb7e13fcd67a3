"""Starting and stopping servers, running wrk, and reading /proc (CPU, RSS).

Every server runs in its own process group (``start_new_session``) and is stopped by
signalling the group: SIGTERM, a bounded wait, then SIGKILL. Only 127.0.0.1 is targeted and
every wait has a bound.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .report import parse_wrk, redact

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- /proc ---------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return None
    return st[st.rindex(")") + 2:].split()


def proc_tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            fields = _stat_fields(int(d))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_ticks(pids: Sequence[int]) -> int:
    total = 0
    for p in pids:
        fields = _stat_fields(p)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def cpu_ticks_by_pid(pids: Sequence[int]) -> dict[int, int]:
    out = {}
    for p in pids:
        fields = _stat_fields(p)
        if fields:
            out[p] = int(fields[11]) + int(fields[12])
    return out


def cpu_delta(before: Mapping[int, int], after: Mapping[int, int]) -> int:
    """CPU ticks used between two snapshots by the processes alive at the second one
    (a process that exited in between is not counted: never a negative figure)."""
    return sum(max(0, t - before.get(p, 0)) for p, t in after.items())


def all_cpu_ticks() -> dict[int, int]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            t = cpu_ticks([int(d)])
            if t:
                out[int(d)] = t
    return out


def steal_ticks() -> int:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def rss_mb(pids: Sequence[int]) -> float:
    """Resident memory of the processes, summed (MB)."""
    total_kb = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total_kb += int(f.read().split()[1]) * PAGE_KB
        except OSError:
            continue
    return total_kb / 1024


class RssSampler:
    """Samples the RSS of a process tree every `interval` seconds; keeps the peak."""

    def __init__(self, root: int, interval: float = 0.25) -> None:
        self.root, self.interval, self.peak = root, interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        pids = proc_tree(self.root)
        n = 0
        while not self._stop.is_set():
            if n % 8 == 0:  # the tree rarely changes; re-walk /proc every 2 s
                pids = proc_tree(self.root)
            self.peak = max(self.peak, rss_mb(pids))
            n += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --- servers -------------------------------------------------------------------------

@dataclass
class Server:
    """A server process group on 127.0.0.1: ``with Server(...) as s:`` starts and stops it."""

    name: str
    cmd: list[str]
    port: int
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    ready_timeout: float = 60.0
    proc: subprocess.Popen | None = None
    database_pid: int | None = None  # a database server it uses (CPU reported separately)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return WORK / "logs" / f"{self.name}.log"

    def shown_cmd(self) -> str:
        return " ".join(self.cmd).replace(str(ROOT) + "/", "")

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")  # noqa: SIM115 - closed by the child's exit
        env = {**os.environ, "PORT": str(self.port), "PYTHONPATH": str(ROOT),
               "NODE_ENV": "production", **self.env}
        self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        try:
            self._wait_port()
        except BaseException:
            self.stop()
            raise

    def _wait_port(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name}: port {self.port} not ready after {self.ready_timeout}s")

    def log_tail(self, chars: int = 600) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def pids(self) -> list[int]:
        return proc_tree(self.proc.pid) if self.proc else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, wait at most `grace` s, then SIGKILL what is left."""
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the group id is the leader's pid
        tree = proc_tree(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        for pid in tree[1:]:  # a child that left the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- requests ------------------------------------------------------------------------

@dataclass
class Request:
    """One request shape that wrk replays (or, with `bodies`, walks once each)."""

    path: str
    method: str = "POST"
    body: str = ""
    authorization: str = ""
    expect: str = ""
    bodies: list[Path] = field(default_factory=list)  # one file per run: warm-up, run 1, …
    cycle: Path | None = None  # reusable bodies, one a line, sent round-robin every run

    def wrk_env(self) -> dict[str, str]:
        env = {"WRK_METHOD": self.method}
        if self.body:
            env["WRK_BODY"] = self.body
        if self.authorization:
            env["WRK_AUTHORIZATION"] = self.authorization
        return env


def http(base_url: str, req: Request, body: str | None = None,
         timeout: float = 10) -> tuple[int, str]:
    """One request with the stdlib (no load generator); returns (status, text)."""
    data = (req.body if body is None else body).encode() or None
    headers = {"Accept": "application/json"}
    if data:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if req.authorization:
        headers["Authorization"] = req.authorization
    r = urllib.request.Request(base_url + req.path, data=data, method=req.method, headers=headers)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def post_form(base_url: str, path: str, form: Mapping[str, str], timeout: float = 10) -> dict:
    """POST a form, expect 200 and JSON; raises RuntimeError with the answer otherwise."""
    from urllib.parse import urlencode

    status, text = http(base_url, Request(path, body=urlencode(form)), timeout=timeout)
    if status != 200:
        raise RuntimeError(f"POST {path}: HTTP {status} {text[:300]}")
    return json.loads(text)


def sanity(base_url: str, req: Request, body: str | None = None) -> str:
    """One request that must answer 200 with `req.expect` in it: never benchmark errors."""
    status, text = http(base_url, req, body)
    if status != 200 or req.expect not in text:
        raise RuntimeError(f"sanity check {req.method} {req.path}: HTTP {status} "
                           f"{redact(text[:300])}")
    return text


# --- wrk -----------------------------------------------------------------------------

@dataclass
class WrkSettings:
    threads: int = 2
    connections: int = 50
    timeout_s: int = 5


def wrk_command(url: str, req: Request, settings: WrkSettings, duration: int,
                bodies: Path | None = None) -> tuple[list[str], dict[str, str]]:
    if req.cycle is not None:
        bodies = req.cycle
    script = HERE / "wrk" / ("bodies.lua" if bodies else "report.lua")
    cmd = ["wrk", f"-t{settings.threads}", f"-c{settings.connections}", f"-d{duration}s",
           "--timeout", f"{settings.timeout_s}s", "-s", str(script), url]
    env = req.wrk_env()
    if bodies:
        env.pop("WRK_BODY", None)
        env["WRK_BODIES_FILE"] = str(bodies)
        env["WRK_THREADS"] = str(settings.threads)  # each wrk thread has its own Lua state
        if req.cycle is not None:
            env["WRK_CYCLE"] = "1"
    return cmd, env


def shown_wrk(cmd: Sequence[str], env: Mapping[str, str]) -> str:
    import shlex

    text = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + " ".join(cmd)
    return redact(text.replace(str(ROOT) + "/", ""))


def run_wrk(server: Server, req: Request, settings: WrkSettings, duration: int,
            bodies: Path | None = None) -> dict[str, Any]:
    """One wrk run against `server`; returns wrk's figures plus CPU shares and peak RSS."""
    cmd, env = wrk_command(server.base_url + req.path, req, settings, duration, bodies)
    pids = server.pids()
    db_pids = proc_tree(server.database_pid) if server.database_pid else []
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    all0, st0, c0, t0 = all_cpu_ticks(), steal_ticks(), cpu_ticks(pids), time.monotonic()
    d0 = cpu_ticks_by_pid(db_pids)
    with RssSampler(server.proc.pid) as rss:
        proc = subprocess.Popen(cmd, cwd=HERE, env={**os.environ, **env}, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            stdout, stderr = proc.communicate(timeout=duration + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)
            raise RuntimeError("wrk did not finish in time") from None
    wall = time.monotonic() - t0
    c1, all1, st1 = cpu_ticks(pids), all_cpu_ticks(), steal_ticks()
    if db_pids:
        db_pids = proc_tree(server.database_pid)  # backends come and go
    d1 = cpu_ticks_by_pid(db_pids)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk rc={proc.returncode}: {stdout[-300:]} {stderr[-300:]}")
    r = parse_wrk(stdout)
    mine = set(pids) | set(db_pids) | {os.getpid()}
    other = sum(t - all0.get(p, 0) for p, t in all1.items() if p not in mine)
    wrk_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
    r.update(
        lat_p50_ms=r["lat_p50_us"] / 1000, lat_p99_ms=r["lat_p99_us"] / 1000,
        rss_peak_mb=round(rss.peak, 1),
        # Of the loaded time: a single-use run (bodies.lua) spends its bodies in active_s
        # and idles for the rest of wrk's -d, which would read as a half-idle server.
        server_cpu_pct=round(100 * (c1 - c0) / CLK_TCK / (r.get("active_s") or wall), 1),
        # CPU the server spent per answered request: robust to other load on the machine
        server_cpu_ms_per_req=round(1000 * (c1 - c0) / CLK_TCK / max(1, r["requests"]), 3),
        wrk_cpu_pct=round(100 * wrk_cpu / wall, 1),
        db_cpu_pct=round(100 * cpu_delta(d0, d1) / CLK_TCK / wall, 1) if db_pids else None,
        other_cpu_pct=round(100 * other / CLK_TCK / wall, 1),
        steal_pct=round(100 * (st1 - st0) / CLK_TCK / wall, 1),
        cmd=shown_wrk(cmd, env),
    )
    return r
