"""`python -m benchmarks`: run the scenarios, print the tables, write the results file.

    python -m benchmarks                 # everything, 3 measured runs each (≤ 10 min)
    python -m benchmarks --quick         # 1 short run each (smoke check)
    python -m benchmarks --only asgi-form-post,ours-refresh-sqlite
    python -m benchmarks --list
    python -m benchmarks --render benchmarks/results/<date>.json --notes analysis.md

A full run writes benchmarks/results/<date>.md, .png and .json (raw runs); a run with
--quick or --only writes to benchmarks/.work/results/ unless --output is given.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import baselines, ours, store, storm
from .context import Context, Scenario
from .goals import GOALS
from .process import HERE, WORK, WrkSettings
from .report import figure_table, goals_table, http_table, redact, write_chart

SCENARIOS = [
    Scenario("asgi-form-post", "limit", "http",
             "bare ASGI on uvicorn: read + parse the same form POST, JSON answer",
             baselines.asgi_form_post),
    Scenario("asgi-sqlite-write", "limit", "http",
             "the same + one INSERT of a token digest + COMMIT (sqlite3, WAL, sync=NORMAL)",
             baselines.asgi_sqlite_write),
    Scenario("oidc-refresh", "peer", "http",
             "oidc-provider refresh_token grant (opaque AT, no rotation, in-memory)",
             baselines.oidc_refresh),
    Scenario("oidc-introspect", "peer", "http",
             "oidc-provider RFC 7662 introspection of an opaque access token",
             baselines.oidc_introspect),
    Scenario("mock-refresh", "peer", "http",
             "oauth2-mock-server refresh_token (signs 2 RS256 JWTs, no client auth, no storage)",
             baselines.mock_refresh),
    *ours.SCENARIOS,
    *store.SCENARIOS,
    *storm.SCENARIOS,
]
BY_NAME = {s.name: s for s in SCENARIOS}


def _cmd(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "n/a"


def environment() -> dict[str, Any]:
    import importlib.metadata as md
    import sqlite3

    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pkgs = []
    for name in ("hubspot-oauth", "uvicorn", "uvloop", "httptools", "starlette", "sqlalchemy",
                 "psycopg", "cryptography", "httpx"):
        with contextlib.suppress(md.PackageNotFoundError):
            pkgs.append(f"{name} {md.version(name)}")
    node_pkgs = []
    for name in ("oidc-provider", "oauth2-mock-server"):
        try:
            data = json.loads((HERE / "node" / "node_modules" / name / "package.json").read_text())
            node_pkgs.append(f"{name} {data['version']}")
        except (OSError, ValueError, KeyError):
            node_pkgs.append(f"{name} missing")
    sys.path.insert(0, str(HERE.parent))
    try:
        from tests.support.components import postgres_bin

        pg = _cmd([postgres_bin("postgres") or "postgres", "--version"])
    except Exception:  # noqa: BLE001 - only for the report
        pg = "n/a"
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "python_packages": ", ".join(pkgs), "sqlite": sqlite3.sqlite_version, "postgres": pg,
        "node": _cmd(["node", "--version"]), "node_packages": ", ".join(node_pkgs),
        "wrk": _cmd(["sh", "-c", "wrk --version 2>&1 | head -1"]).split(" Copyright")[0],
    }


def render(env: dict[str, Any], ctx: Context, rows: list[dict[str, Any]], chart: str | None,
           elapsed: float, command: str) -> str:
    http_rows = [r for r in rows if r["kind"] == "http"]
    fig_rows = [r for r in rows if r["kind"] == "figures"]
    by_name = {r["name"]: r for r in rows}
    out = [f"# Benchmarks — {env['date'][:10]}", ""]
    out.append(f"Produced by `{command}` in {elapsed / 60:.1f} min (started {env['date']}). "
               f"Each figure is the median of {ctx.runs} measured run(s)"
               + (f" of {ctx.duration} s after a {ctx.warmup} s warm-up" if ctx.warmup else "")
               + "; raw runs are in the JSON file beside this one.")
    out += ["", "## Machine", "",
            f"- {env['cores']} cores: {env['cpu']}; {env['memory_gib']} GiB RAM; "
            f"Linux {env['kernel']}.",
            "- **The load generator (wrk, or the Python driver) and every server share these "
            f"{env['cores']} cores**, and other work on the machine may run at the same time "
            "(see `other CPU %` per run in the JSON). Compare figures within this run only.",
            f"- Python {env['python']}: {env['python_packages']}; SQLite {env['sqlite']}; "
            f"{env['postgres']}.",
            f"- Node {env['node']}: {env['node_packages']}; {env['wrk']}.",
            f"- wrk `-t{ctx.wrk.threads} -c{ctx.wrk.connections} --timeout "
            f"{ctx.wrk.timeout_s}s` with `benchmarks/wrk/report.lua` (one request replayed) or "
            "`benchmarks/wrk/bodies.lua` (single-use bodies, each sent once).", ""]
    out += ["## Goals (issue 7; ratios from this run)", "", goals_table(GOALS, by_name), ""]
    if http_rows:
        out += ["## HTTP servers", "", http_table(http_rows), ""]
        if chart:
            out += [f"![req/s and p99 per scenario]({chart})", ""]
    if fig_rows:
        out += ["## Token store (in-process) and the refresh storm", "", figure_table(fig_rows), ""]
    notes = [n for r in rows for n in r.get("notes", [])]
    if notes:
        out += ["## Notes from this run", ""] + [f"- {n}" for n in notes] + [""]
    out += ["## Commands", "", "| scenario | server | load |", "|---|---|---|"]
    for r in rows:
        out.append(f"| `{r['name']}` | `{r.get('server_cmd', '–')}` | `{r.get('load_cmd', '–')}` |")
    out.append("")
    return "\n".join(out)


def write_results(out_dir: Path, env: dict[str, Any], ctx: Context, rows: list[dict[str, Any]],
                  elapsed: float, command: str, notes: Path | None) -> None:
    """<date>.md, .png and .json in `out_dir` (the JSON alone can re-render the rest)."""
    stamp = env["date"][:10]
    for row in rows:  # also cleans the JSON of a run written before redaction grew
        if row.get("sample_response"):
            row["sample_response"] = redact(row["sample_response"])
    chart = None
    http_rows = [r for r in rows if r["kind"] == "http"]
    if any("median" in r for r in http_rows):
        chart = f"{stamp}.png"
        write_chart(str(out_dir / chart), http_rows,
                    f"hubspot-oauth benchmarks {stamp}: {env['cores']} cores ({env['cpu']}), "
                    "load generator on the same cores")
    text = render(env, ctx, rows, chart, elapsed, command)
    if notes:
        text += "\n## Analysis\n\n" + notes.read_text().strip() + "\n"
    (out_dir / f"{stamp}.md").write_text(text)
    raw = {"environment": env, "command": command, "elapsed_s": round(elapsed, 1),
           "settings": {"runs": ctx.runs, "duration": ctx.duration, "warmup": ctx.warmup,
                        "wrk": vars(ctx.wrk)}, "rows": rows}
    (out_dir / f"{stamp}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    print()
    print(text)
    print(f"written: {out_dir / (stamp + '.md')} ({elapsed:.0f} s)")


def rerender(path: Path, notes: Path | None) -> int:
    """Re-write the .md and .png beside an earlier run's JSON (e.g. to add --notes)."""
    raw = json.loads(path.read_text())
    settings = raw["settings"]
    ctx = Context(runs=settings["runs"], duration=settings["duration"],
                  warmup=settings["warmup"], wrk=WrkSettings(**settings["wrk"]))
    write_results(path.parent, raw["environment"], ctx, raw["rows"],
                  raw.get("elapsed_s", 0.0), raw.get("command", "python -m benchmarks"), notes)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated scenario names (see --list)")
    ap.add_argument("--quick", action="store_true", help="1 short run each, no retries")
    ap.add_argument("--runs", type=int, help="measured runs per scenario (default 3)")
    ap.add_argument("--duration", type=int, help="seconds per wrk run (default 5)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up (default 3)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--output", type=Path, help="folder for <date>.md/.png/.json")
    ap.add_argument("--notes", type=Path,
                    help="a markdown file appended to the results as '## Analysis'")
    ap.add_argument("--render", type=Path, metavar="JSON",
                    help="re-write the .md/.png of an earlier run from its JSON; no measuring")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)

    if args.render:
        return rerender(args.render, args.notes)
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:28s} {s.group:6s} {s.what}")
        return 0
    chosen = SCENARIOS
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(BY_NAME))
        if unknown:
            print(f"unknown scenario(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
            return 2
        chosen = [s for s in SCENARIOS if s.name in names]

    ctx = Context(wrk=WrkSettings(threads=min(2, os.cpu_count() or 2),
                                  connections=args.connections))
    if args.quick:
        ctx.runs, ctx.duration, ctx.warmup, ctx.quick, ctx.noisy_retries = 1, 2, 1, True, 0
    for name in ("runs", "duration", "warmup"):
        if getattr(args, name) is not None:
            setattr(ctx, name, getattr(args, name))
    if ctx.runs < 1 or not 1 <= ctx.duration <= 60 or ctx.warmup < 0:
        print("--runs ≥ 1, 1 ≤ --duration ≤ 60, --warmup ≥ 0", file=sys.stderr)
        return 2

    full = not (args.quick or args.only or args.runs or args.duration)
    out_dir = args.output or (HERE / "results" if full else WORK / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    stamp = env["date"][:10]
    ctx.log(f"{len(chosen)} scenario(s); {ctx.runs} run(s) of {ctx.duration} s; "
            f"results -> {out_dir}/{stamp}.md")
    rows: list[dict[str, Any]] = []
    try:
        for s in chosen:
            row: dict[str, Any] = {"name": s.name, "group": s.group, "kind": s.kind,
                                   "what": s.what}
            ctx.log(f"== {s.name}")
            t0 = time.monotonic()
            try:
                row = s.run(ctx, row)
            except Exception as exc:  # noqa: BLE001 - record it and go on with the next one
                row["error"] = f"{type(exc).__name__}: {exc}"
                row["traceback"] = traceback.format_exc()[-2000:]
                ctx.log(f"  FAILED: {row['error'][:300]}")
            row["seconds"] = round(time.monotonic() - t0, 1)
            rows.append(row)
    except KeyboardInterrupt:
        ctx.log("interrupted: writing what was measured")
    finally:
        ctx.close()
    elapsed = time.monotonic() - ctx.started
    command = "make bench" if full and not args.output else \
        "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    write_results(out_dir, env, ctx, rows, elapsed, command, args.notes)
    return 0 if all("error" not in r for r in rows) else 1
