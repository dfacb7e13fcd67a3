"""The benchmark harness's pure parts: wrk output parsing, medians, redaction, the tables
and the goal verdicts. No server, no load, no timing assertions (issue 7)."""

from __future__ import annotations

import pytest
from benchmarks.goals import GOALS
from benchmarks.report import (
    WrkOutputError,
    figure_table,
    goals_table,
    http_table,
    median,
    parse_wrk,
    redact,
    summarize,
)

WRK_STDOUT = """Running 2s test @ http://127.0.0.1:8001/token
  2 threads and 50 connections
WRKJSON {"requests":2000,"duration_s":2.000,"bytes":1,"rps":1000.00,"lat_mean_us":1.0,\
"lat_stdev_us":1.0,"lat_p50_us":1500,"lat_p90_us":2000,"lat_p99_us":9000,"lat_max_us":1,\
"err_connect":1,"err_read":2,"err_write":0,"err_status":3,"err_timeout":4}
"""


def test_parse_wrk_reads_the_json_line_and_sums_every_error_counter():
    r = parse_wrk(WRK_STDOUT)
    assert r["rps"] == 1000.0
    assert r["lat_p99_us"] == 9000
    assert r["errors"] == 10


@pytest.mark.parametrize("stdout", ["", "Running 2s test\n", "WRKJSON {not json",
                                    'WRKJSON {"requests": 1}'])
def test_parse_wrk_rejects_output_without_a_usable_line(stdout):
    with pytest.raises(WrkOutputError):
        parse_wrk(stdout)


def test_median_and_summarize_take_each_key_separately():
    assert median([3, 1, 2]) == 2
    assert median([4, 1, 2, 3]) == 2.5
    with pytest.raises(ValueError):
        median([])
    runs = [{"rps": 10, "p": 5}, {"rps": 30, "p": 1}, {"rps": 20, "p": None}]
    assert summarize(runs, ["rps", "p", "absent"]) == {"rps": 20, "p": 3}


def test_redact_hides_tokens_codes_secrets_and_bearer_values():
    text = redact("WRK_BODY='grant_type=refresh_token&refresh_token=na1-abc&code=xyz"
                  "&client_secret=s3cret&token=Cabc' WRK_AUTHORIZATION='Bearer Cdef'")
    for secret in ("na1-abc", "xyz", "s3cret", "Cabc", "Cdef"):
        assert secret not in text
    assert "grant_type=refresh_token" in text
    assert "Bearer <access token>" in text


def test_redact_hides_tokens_in_json_answers():
    text = redact('{"access_token": "Cabc", "refresh_token":"na1-x", "expires_in": 1800}')
    assert "Cabc" not in text and "na1-x" not in text
    assert '"expires_in": 1800' in text and '"access_token": "<access_token>"' in text
    assert "eyJhbGci" not in redact('{"id_token": "eyJhbGci')  # an answer cut off mid-token


def _http_row(name, rps_values, group="ours"):
    runs = [{"rps": v, "lat_p50_ms": 1.0, "lat_p99_ms": 2.0, "rss_peak_mb": 40.0, "errors": 0}
            for v in rps_values]
    return {"name": name, "group": group, "kind": "http", "what": name, "runs": runs,
            "median": summarize(runs, ["rps", "lat_p50_ms", "lat_p99_ms", "rss_peak_mb"]),
            "rps_min_max": [min(rps_values), max(rps_values)], "errors": 0}


def test_http_table_shows_the_median_the_spread_and_failures():
    rows = [_http_row("ours-refresh-sqlite", [900, 1100, 1000]),
            {"name": "oidc-refresh", "what": "x", "error": "RuntimeError: no node | here"}]
    table = http_table(rows).splitlines()
    assert table[2].startswith("| `ours-refresh-sqlite` |")
    assert "**1,000**" in table[2] and "900–1,100" in table[2] and "| 3 |" in table[2]
    assert "FAILED: RuntimeError: no node / here" in table[3]


def test_figure_table_lists_each_figure_with_its_median():
    row = {"name": "store-lookup", "what": "lookups", "kind": "figures",
           "figures": [("p50_us_10k", "p50 µs, 10k", 1), ("absent", "never measured", 0)],
           "runs": [{"p50_us_10k": 10.0}, {"p50_us_10k": 30.0}, {"p50_us_10k": 20.0}]}
    table = figure_table([row])
    assert "**20.0**" in table and "10.0–30.0" in table
    assert "never measured" not in table


def test_goals_compare_ratios_from_the_same_run():
    rows = {
        "ours-refresh-sqlite": _http_row("ours-refresh-sqlite", [5000]),
        "oidc-refresh": _http_row("oidc-refresh", [2000], "peer"),
        "asgi-form-post": _http_row("asgi-form-post", [20000], "limit"),
    }
    lines = goals_table(GOALS, rows).splitlines()
    refresh_vs_oidc = next(x for x in lines if "oidc-provider refresh" in x)
    assert "2.50×" in refresh_vs_oidc and refresh_vs_oidc.endswith("| yes |")
    refresh_vs_asgi = next(x for x in lines if "bare-ASGI" in x)
    assert "0.25×" in refresh_vs_asgi and refresh_vs_asgi.endswith("| **no** |")
    unmeasured = next(x for x in lines if "introspection" in x)
    assert unmeasured.endswith("| – |")


def test_cpu_delta_never_counts_an_exited_process_negatively():
    from benchmarks.process import cpu_delta

    assert cpu_delta({1: 10, 2: 5}, {1: 15, 3: 4}) == 9  # 2 exited, 3 is new
    assert cpu_delta({1: 10}, {1: 10}) == 0
