"""Issue 7's goal table, evaluated on the medians of one run (never asserted in tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .report import Goal, figure, ratio, rps

Rows = Mapping[str, Mapping[str, Any]]


def _code_vs_refresh(rows: Rows) -> tuple[float | None, str]:
    value, text = ratio(rows, "ours-code-sqlite", "ours-refresh-sqlite")
    return value, text + " of our refresh" if value is not None else text


def _access_token_rate(rows: Rows) -> tuple[float | None, str]:
    v = figure(rows, "store-access-token", "calls_per_s")
    return v, "not measured" if v is None else f"{v:,.0f} calls/s"


def _lookup_growth(rows: Rows) -> tuple[float | None, str]:
    small = figure(rows, "store-lookup", "p50_us_10k")
    big = figure(rows, "store-lookup", "p50_us_1m")
    if small is None or big is None or small == 0:
        return None, "not measured"
    return big / small, f"p50 {big:,.1f} µs (1M) / {small:,.1f} µs (10k) = {big / small:.2f}×"


def _storm(rows: Rows) -> tuple[float | None, str]:
    grants = figure(rows, "store-storm", "grants")
    wall = figure(rows, "store-storm", "wall_s")
    row = rows.get("store-storm") or {}
    all_grants = [r.get("grants") for r in row.get("runs", [])]
    if grants is None:
        return None, "not measured"
    return float(max(abs(g - 50) for g in all_grants if g is not None)), (
        f"grants per run {all_grants}; wall time {wall:.2f} s (median)")


def _rss(rows: Rows) -> tuple[float | None, str]:
    row = rows.get("ours-refresh-sqlite") or {}
    v = (row.get("median") or {}).get("rss_peak_mb")
    return v, "not measured" if v is None else f"peak {v:.1f} MB (server process tree)"


def _ratio_of(top: str, bottom: str):
    return lambda rows: ratio(rows, top, bottom)


GOALS = [
    Goal("`refresh_token` grant, SQLite, 1 process", "≥ 2× oidc-provider refresh",
         _ratio_of("ours-refresh-sqlite", "oidc-refresh"), lambda v: v >= 2.0),
    Goal("`refresh_token` grant, SQLite, 1 process", "≥ 40 % of the bare-ASGI form POST",
         _ratio_of("ours-refresh-sqlite", "asgi-form-post"), lambda v: v >= 0.40),
    Goal("`authorization_code` exchange (codes minted beforehand)", "≥ 0.8× our refresh",
         _code_vs_refresh, lambda v: v >= 0.8),
    Goal("bearer `GET /crm/v3/objects/contacts?limit=10`", "≥ 70 % of the route without auth",
         _ratio_of("ours-api-bearer", "ours-api-noauth"), lambda v: v >= 0.70),
    Goal("introspection `/oauth/v3/token/introspect`", "≥ 2× oidc-provider introspection",
         _ratio_of("ours-introspect", "oidc-introspect"), lambda v: v >= 2.0),
    Goal("refresh on PostgreSQL, 1 and 2 processes", "2 processes ≥ 1.6× one",
         _ratio_of("ours-refresh-pg-2p", "ours-refresh-pg-1p"), lambda v: v >= 1.6),
    Goal("token store `access_token(key)`, fresh token, 1 thread", "≥ 50,000 calls/s",
         _access_token_rate, lambda v: v >= 50_000),
    Goal("token store lookup p50, 10k / 100k / 1M connections", "1M ≤ 2× 10k",
         _lookup_growth, lambda v: v <= 2.0),
    Goal("storm: 8 processes × 10 threads, 50 expired connections",
         "exactly 50 refresh grants per run", _storm, lambda v: v == 0),
    Goal("server RSS under the refresh load", "≤ 150 MB", _rss, lambda v: v <= 150),
]

__all__ = ["GOALS", "rps"]
