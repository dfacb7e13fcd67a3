"""A hundred user tests, each a whole flow (authorize → exchange → API call → refresh), in
one pytest run: all pass, each on its own server. The wall time is measured and written to
test-artifacts/testing-kit-speed.txt for people to read; no test asserts on it."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

HUNDRED_FLOWS = '''
import httpx
import pytest


@pytest.mark.parametrize("n", range(100))
def test_flow(hubspot, n):
    client = hubspot.oauth_client()
    token = client.exchange_code(hubspot.authorize())
    with httpx.Client(base_url=hubspot.base_url, transport=hubspot.transport) as api:
        answer = api.get("/crm/v3/objects/contacts",
                         headers={"Authorization": f"Bearer {token.access_token}"})
        assert answer.status_code == 200
    refreshed = client.refresh(token.refresh_token)
    assert refreshed.access_token != token.access_token
    # Isolation: this test's server counted this test's calls only.
    assert hubspot.stats()["token"]["refresh_token"]["ok"] == 1
    assert hubspot.stats()["api"]["ok"] == 1
'''


@pytest.mark.slow
def test_hundred_full_flows(pytester: pytest.Pytester, artifacts_dir: Path) -> None:
    pytester.makepyfile(test_hundred=HUNDRED_FLOWS)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=300)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.assert_outcomes(passed=100)
    load = os.getloadavg()[0]
    report = (
        f"100 pytest tests, each authorize -> exchange -> API call -> refresh on its own "
        f"in-process local HubSpot, one `python -m pytest` process (interpreter start and "
        f"imports included): {elapsed:.1f} s wall, {cpu:.1f} s CPU; "
        f"{os.cpu_count()} CPUs, load average {load:.1f}\n"
    )
    (artifacts_dir / "testing-kit-speed.txt").write_text(report)
    print(report)
