"""Schemathesis against the live local HubSpot (uvicorn on a loopback socket), driven by
the server's own GET /openapi.json: a bounded number of generated requests per documented
operation; 0 server errors and 0 answers that break the document (status code, content
type, headers, body schema)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle

# Per operation and generation mode (positive: valid by the document; negative: not).
EXAMPLES_PER_OPERATION = 10
# Operations whose every input is an unconstrained string: nothing can break their
# document, so Schemathesis has no negative case to make (Hypothesis: Unsatisfiable).
NO_NEGATIVE_PATHS = ("/", "/openapi.json")
NO_NEGATIVE_PARTS = ("/access-tokens/", "/refresh-tokens/", "/introspect", "/revoke")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live() -> Iterator[LocalHubSpotHandle]:
    # A generous API rate limit so the sample API is explored rather than throttled.
    with local_hubspot(serve=True, rate_limit_max=100_000) as hubspot:
        yield hubspot


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    live: LocalHubSpotHandle,
) -> None:
    document = httpx.get(f"{live.base_url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    token = live.connect()
    headers = {"Authorization": f"Bearer {token.access_token}"}
    ran: dict[str, int] = {}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    def runner(operation: object, label: str, mode: GenerationMode):  # noqa: ANN202
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))  # type: ignore[attr-defined]
        def run(case: schemathesis.Case) -> None:
            ran[label] += 1
            response = case.call(base_url=live.base_url, headers=headers, timeout=10)
            case.validate_response(response, checks=CHECKS)

        return run

    for operation in operations:
        for mode in GenerationMode:
            if mode is GenerationMode.NEGATIVE and (
                operation.path in NO_NEGATIVE_PATHS
                or any(part in operation.path for part in NO_NEGATIVE_PARTS)
            ):
                continue
            label = f"{operation.method.upper()} {operation.path} ({mode.value})"
            ran[label] = 0
            try:
                runner(operation, label, mode)()
            except Exception as exc:  # noqa: BLE001 - collect every failing operation
                failures.append(f"{label}: {str(exc)[:1500]}")

    total = sum(ran.values())
    print(f"schemathesis: {total} requests over {len(ran)} operations")
    assert not failures, "\n\n".join(failures)
    assert all(count > 0 for count in ran.values()), ran
