"""The pure parts of the harness: wrk output parsing, medians, goals, the markdown report.

No I/O except `write_chart` (matplotlib, imported lazily). Every figure in a row's
``median`` is the median of that key over the row's measured runs, each key taken
separately (so a row's p50 and req/s may come from different runs).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WRK_PREFIX = "WRKJSON "
_REDACT = re.compile(r"\b(refresh_token|code|token|client_secret)=([^&\s']+)")
_BEARER = re.compile(r"(Bearer )\S+")
# a cut-off answer may end inside the value: up to the closing quote or the end
_JSON_SECRET = re.compile(
    r'"(access_token|refresh_token|id_token|token|code)"(\s*:\s*)"(?:[^"]*"|[^"]*$)')


class WrkOutputError(ValueError):
    """wrk printed no (or a malformed) WRKJSON line: its script did not run to the end."""


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The figures of one wrk run from the ``WRKJSON {...}`` line our Lua scripts print.

    Returns the decoded dict plus ``errors`` (the sum of every wrk error counter: connect,
    read, write, timeout and non-2xx/3xx statuses). Raises `WrkOutputError` when there is
    no such line or it is not JSON.
    """
    line = next((x for x in stdout.splitlines() if x.startswith(WRK_PREFIX)), None)
    if line is None:
        raise WrkOutputError("no WRKJSON line in wrk output")
    try:
        data = json.loads(line[len(WRK_PREFIX):])
    except json.JSONDecodeError as exc:
        raise WrkOutputError(f"bad WRKJSON line: {exc}") from exc
    if not isinstance(data, dict) or "rps" not in data:
        raise WrkOutputError("WRKJSON line lacks rps")
    data["errors"] = sum(
        int(data.get(k, 0))
        for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")
    )
    return data


def median(values: Iterable[float]) -> float:
    """The median of the values (the mean of the middle two for an even count)."""
    values = list(values)
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def summarize(runs: Sequence[Mapping[str, Any]], keys: Iterable[str]) -> dict[str, float]:
    """Per key, the median over the runs that have it (keys no run has are left out)."""
    out: dict[str, float] = {}
    for key in keys:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = median(values)
    return out


def redact(text: str) -> str:
    """A command line fit for the results file: tokens, codes and secrets replaced."""
    text = _REDACT.sub(lambda m: f"{m.group(1)}=<{m.group(1)}>", text)
    text = _JSON_SECRET.sub(lambda m: f'"{m.group(1)}"{m.group(2)}"<{m.group(1)}>"', text)
    return _BEARER.sub(r"\1<access token>", text)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


HTTP_HEADER = (
    "| scenario | what | req/s | req/s min–max | p50 ms | p99 ms | server RSS MB (peak) "
    "| server CPU ms/req | server CPU % | errors | runs |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def http_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of the HTTP scenarios: medians of the measured runs."""
    lines = [HTTP_HEADER]
    for r in rows:
        if r.get("error"):
            lines.append(f"| `{r['name']}` | {r['what']} | FAILED: {_one_line(r['error'])} "
                         "| | | | | | | | |")
            continue
        m = r["median"]
        lo, hi = r["rps_min_max"]
        lines.append(
            f"| `{r['name']}` | {r['what']} | **{_fmt(m['rps'])}** | {_fmt(lo)}–{_fmt(hi)} "
            f"| {_fmt(m['lat_p50_ms'], 2)} | {_fmt(m['lat_p99_ms'], 2)} "
            f"| {_fmt(m.get('rss_peak_mb'), 1)} | {_fmt(m.get('server_cpu_ms_per_req'), 3)} "
            f"| {_fmt(m.get('server_cpu_pct'))} | {r['errors']} | {len(r['runs'])} |"
        )
    return "\n".join(lines)


FIGURE_HEADER = ("| scenario | what | figure | median | min–max | runs |\n"
                 "|---|---|---|---:|---:|---:|")


def figure_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of in-process figures (one line per reported figure)."""
    lines = [FIGURE_HEADER]
    for r in rows:
        if r.get("error"):
            lines.append(f"| `{r['name']}` | {r['what']} | FAILED: {_one_line(r['error'])} "
                         "| | | |")
            continue
        for key, label, digits in r["figures"]:
            values = [run[key] for run in r["runs"] if run.get(key) is not None]
            if not values:
                continue
            lines.append(
                f"| `{r['name']}` | {r['what']} | {label} | **{_fmt(median(values), digits)}** "
                f"| {_fmt(min(values), digits)}–{_fmt(max(values), digits)} | {len(values)} |"
            )
    return "\n".join(lines)


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Goal:
    """One line of issue 7's goal table, evaluated on the medians of one run.

    `measure` gets every row by name and returns ``(measured, text)``: the measured ratio or
    value (None when a row it needs is missing) and how it was computed.
    """

    scenario: str
    target: str
    measure: Callable[[Mapping[str, Mapping[str, Any]]], tuple[float | None, str]]
    ok: Callable[[float], bool]


def rps(rows: Mapping[str, Mapping[str, Any]], name: str) -> float | None:
    row = rows.get(name)
    if not row or row.get("error") or "median" not in row:
        return None
    return row["median"].get("rps")


def figure(rows: Mapping[str, Mapping[str, Any]], name: str, key: str) -> float | None:
    row = rows.get(name)
    if not row or row.get("error"):
        return None
    values = [r[key] for r in row.get("runs", []) if r.get(key) is not None]
    return median(values) if values else None


def ratio(
    rows: Mapping[str, Mapping[str, Any]], top: str, bottom: str
) -> tuple[float | None, str]:
    """``top``'s median req/s over ``bottom``'s, with the figures spelled out."""
    a, b = rps(rows, top), rps(rows, bottom)
    if a is None or b is None or b == 0:
        return None, f"`{top}` / `{bottom}`: not measured"
    return a / b, f"{a:,.0f} / {b:,.0f} req/s = {a / b:.2f}×"


def goals_table(goals: Sequence[Goal], rows: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| scenario | goal | measured | met |", "|---|---|---|:-:|"]
    for g in goals:
        value, text = g.measure(rows)
        verdict = "–" if value is None else ("yes" if g.ok(value) else "**no**")
        lines.append(f"| {g.scenario} | {g.target} | {text} | {verdict} |")
    return "\n".join(lines)


def write_chart(path: str, http_rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """A PNG with three panels per HTTP scenario: median req/s, p99 latency, and server CPU
    per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in http_rows if not r.get("error") and "median" in r]
    if not rows:
        return
    names = [r["name"] for r in rows]
    colors = {"limit": "#7f7f7f", "peer": "#1f77b4", "ours": "#ff7f0e"}
    col = [colors.get(r.get("group", ""), "#2ca02c") for r in rows]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 0.45 * len(rows) + 1.8),
                                        sharey=True)
    y = range(len(rows))
    ax1.set_yticks(list(y), names, fontsize=9)
    ax1.invert_yaxis()
    panels = [
        (ax1, [r["median"]["rps"] for r in rows], "requests/s (median; higher is better)",
         "{:,.0f}"),
        (ax2, [r["median"]["lat_p99_ms"] for r in rows], "p99 latency ms (lower is better)",
         "{:,.0f}"),
        (ax3, [r["median"].get("server_cpu_ms_per_req") or 0 for r in rows],
         "server CPU ms per request (lower is better)", "{:.3f}"),
    ]
    for ax, values, label, fmt in panels:
        ax.barh(y, values, color=col)
        for i, v in enumerate(values):
            ax.text(v, i, " " + fmt.format(v), va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.set_xlim(0, (max(values) or 1) * 1.25)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
    ax1.legend(handles, ["baseline (stack limit)", "peer (Node.js)", "hubspot-oauth"],
               loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
