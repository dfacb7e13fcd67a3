"""Hypothesis fuzzing of every endpoint of the local HubSpot, in-process through
`httpx.ASGITransport`: arbitrary and malformed form fields, query strings, headers, paths
and encodings (non-UTF-8 escapes, huge values, repeated parameters, NUL bytes, unicode
scopes, wrong content types and lengths), mixed with real credentials, codes and tokens
so the fuzzer reaches the grant logic too.

Invariants, for every request (no fault is queued: each example clears the queue):
- never a 5xx;
- an error from a JSON endpoint is HubSpot's error shape (`hubspot_error_problems`), an
  error from an authorize page is an HTML page;
- a redirect goes to a page of the server or to a registered redirect URI (no open
  redirector, RFC 6749 §10.15);
- a rejected request (4xx) changes no row of the domain tables (`harness.snapshot`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import anyio.from_thread
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspot_oauth.server.bruteforce import BruteForceGuard
from hubspot_oauth.testing import local_hubspot
from hubspot_oauth.testing.local import LocalHubSpotHandle
from tests.security.harness import (
    changed_tables,
    hubspot_error_problems,
    is_html,
    snapshot,
)

# HUBSPOT_OAUTH_FUZZ_EXAMPLES raises it for a longer hunt; the suite keeps the default.
EXAMPLES = int(os.environ.get("HUBSPOT_OAUTH_FUZZ_EXAMPLES", "500"))

# (method, path template, kind): "json" endpoints answer errors in HubSpot's JSON shape,
# "html" ones (the authorize pages) with an HTML page.
ENDPOINTS: list[tuple[str, str, str]] = [
    ("POST", "/oauth/v1/token", "json"),
    ("POST", "/oauth/v3/token", "json"),
    ("POST", "/oauth/2026-03/token", "json"),
    ("POST", "/oauth/2026-09/token", "json"),
    ("POST", "/oauth/v3/token/introspect", "json"),
    ("POST", "/oauth/2026-03/token/introspect", "json"),
    ("POST", "/oauth/v3/token/revoke", "json"),
    ("POST", "/oauth/2026-03/token/revoke", "json"),
    ("POST", "/oauth/2026-09/token/introspect", "json"),
    ("POST", "/oauth/2026-09/token/revoke", "json"),
    ("GET", "/oauth/v1/access-tokens/{access}", "json"),
    ("GET", "/oauth/v1/refresh-tokens/{refresh}", "json"),
    ("DELETE", "/oauth/v1/refresh-tokens/{refresh}", "json"),
    ("GET", "/crm/v3/objects/contacts", "json"),
    ("POST", "/crm/v3/objects/contacts", "json"),
    ("GET", "/crm/v3/objects/contacts/{id}", "json"),
    ("GET", "/contacts/v1/lists/all/contacts/all", "json"),
    ("GET", "/account-info/v3/details", "json"),
    ("GET", "/", "json"),
    ("GET", "/openapi.json", "json"),
    ("GET", "/_emulator/clock", "json"),
    ("POST", "/_emulator/clock", "json"),
    ("GET", "/_emulator/faults", "json"),
    ("POST", "/_emulator/faults", "json"),
    ("DELETE", "/_emulator/faults", "json"),
    ("GET", "/_emulator/stats", "json"),
    ("GET", "/_emulator/installs", "json"),
    ("POST", "/_emulator/installs/{id}/{id}/uninstall", "json"),
    ("GET", "/oauth/authorize", "html"),
    ("GET", "/oauth/{id}/authorize", "html"),
    ("GET", "/oauth/authorize/continue", "html"),
    ("POST", "/oauth/authorize/login", "html"),
    ("POST", "/oauth/authorize/account", "html"),
    ("POST", "/oauth/authorize/decision", "html"),
    ("POST", "/oauth/authorize/logout", "html"),
    ("GET", "/oauth/assets/authorize.css", "css"),
    ("PUT", "/oauth/v3/token", "json"),  # wrong method
    ("GET", "/oauth/v3/token", "json"),  # wrong method
    ("PATCH", "/crm/v3/objects/contacts", "json"),  # wrong method
    ("GET", "/no/such/{id}", "json"),  # unknown path
    ("POST", "/oauth/v3/token/", "json"),  # trailing slash
    # (/_emulator/reset is left out: it would delete the app whose real values we mix in)
]

PARAM_NAMES = [
    "grant_type", "client_id", "client_secret", "code", "redirect_uri", "refresh_token",
    "code_verifier", "scope", "optional_scope", "state", "token", "token_type_hint",
    "access_token", "limit", "after", "properties", "count", "vidOffset", "response_type",
    "code_challenge", "code_challenge_method", "csrf_token", "authorization", "email",
    "password", "hub_id", "decision", "advance", "now", "endpoint", "fault", "times",
]

# Markers replaced when the request is built (so Hypothesis's reports stay small).
HUGE = "<HUGE>"
HUGE_VALUE = "A" * 30_000
MAX_URL = 60_000  # httpx refuses longer URLs before sending


@dataclass
class World:
    """The live instance and the real values the fuzzer mixes in."""

    hubspot: LocalHubSpotHandle
    portal: anyio.from_thread.BlockingPortal
    client: httpx.AsyncClient
    access: str = ""
    refresh: str = ""
    examples: int = 0
    maybe_revoked: bool = False
    statuses: dict[int, int] = field(default_factory=dict)
    outcomes: set[tuple[str, str, int]] = field(default_factory=set)

    def renew_tokens(self) -> None:
        token = self.hubspot.connect()
        self.access, self.refresh = token.access_token, token.refresh_token or ""

    def real(self, name: str) -> str:
        h = self.hubspot
        if name == "code":
            return h.authorize()  # a fresh, unused code each time
        values = {
            "client_id": h.client_id,
            "client_secret": h.client_secret,
            "redirect_uri": h.redirect_uri,
            "refresh": self.refresh,
            "access": self.access,
        }
        return values[name]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with ExitStack() as stack:
        hubspot = stack.enter_context(local_hubspot(rate_limit_max=1_000_000))
        # The fuzzer floods wrong secrets on purpose; lockouts have their own tests.
        hubspot.app.state.bruteforce = BruteForceGuard(enabled=False)
        portal = stack.enter_context(anyio.from_thread.start_blocking_portal())
        transport = httpx.ASGITransport(app=hubspot.app, raise_app_exceptions=False)
        client = httpx.AsyncClient(transport=transport, base_url="http://local-hubspot.test")
        stack.callback(portal.call, client.aclose)
        state = World(hubspot, portal, client)
        state.renew_tokens()
        # The authorize pages make their signing secret on first use (one write, once per
        # database): make it now, so that first use is not taken for a change.
        from hubspot_oauth.server.signing import shared_secret

        shared_secret(hubspot.server.engine)
        yield state
        print(f"\nserver fuzz: {state.examples} requests, "
              f"statuses {sorted(state.statuses.items())}")
        print(f"distinct (method, endpoint, status): {len(state.outcomes)}")


# --- strategies ---------------------------------------------------------------------------

REAL = st.sampled_from(["client_id", "client_secret", "redirect_uri", "refresh", "access",
                        "code"]).map(lambda name: ("real", name))
junk_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from([
        "", " ", "\x00", "a\x00b", "%", "%zz", "&", "=", "+", "C" * 300, HUGE,
        "crm.objects.contacts.read ✓ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "automation", "oauth", "crm.objects.contacts.read",
        "authorization_code", "refresh_token", "password", "client_credentials", "S256", "plain",
        "-1", "0", "1", "100", "101", "99999999999999999999", "1e9", "NaN", "true", "null",
        "admin@example.com", "ADMIN@example.com", "javascript:alert(1)", "<script>x</script>",
        "https://evil.example/cb", "http://localhost:3000/oauth-callback/", "grant", "cancel",
        "\u202e", "\ud7ff", "é" * 5000,
    ]),
)
value_strategy = st.one_of(REAL, junk_text.map(lambda v: ("text", v)),
                           st.binary(max_size=24).map(lambda b: ("bytes", b)))
name_strategy = st.one_of(st.sampled_from(PARAM_NAMES), st.text(max_size=8))
pairs_strategy = st.lists(st.tuples(name_strategy, value_strategy), max_size=8)
encoding_strategy = st.sampled_from(["utf8", "raw", "latin1"])


def _encode_value(world: World, value: tuple[str, Any], encoding: str) -> str:
    kind, item = value
    if kind == "real":
        item = world.real(item)
    if item == HUGE:
        item = HUGE_VALUE
    if kind == "bytes":
        return "".join(f"%{b:02X}" for b in item)  # arbitrary bytes, often not UTF-8
    if encoding == "utf8":
        return quote_plus(item)
    if encoding == "latin1":
        return quote(item.encode("latin-1", "replace"), safe="")
    # "raw": only what would break the URL itself is escaped; `%`, `&`, `=` go through.
    return "".join(c if c.isascii() and c.isprintable() and c not in "# " else quote(c)
                   for c in item.encode("utf-8", "replace").decode("utf-8"))


def _encode_pairs(world: World, pairs: list, encoding: str) -> str:
    return "&".join(
        f"{quote_plus(name)}={_encode_value(world, value, encoding)}" for name, value in pairs
    )


path_segment = st.one_of(
    st.just(("real", "refresh")), st.just(("real", "access")), st.just(("real", "code")),
    st.sampled_from(["1", "1234567", "7654321", "0", "-5", "99999999999999999999", "abc"])
    .map(lambda v: ("text", v)),
    junk_text.map(lambda v: ("text", v)),
    st.binary(min_size=1, max_size=12).map(lambda b: ("bytes", b)),
)

CONTENT_TYPES = [
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
    "application/json", "multipart/form-data; boundary=xyz", "text/plain", "", "%%%",
    "application/x-www-form-urlencoded\x7f",
]
header_strategy = st.dictionaries(
    st.sampled_from(["authorization", "cookie", "x-forwarded-for", "accept",
                     "content-length", "x-hubspot-correlation-id", "origin", "user-agent"]),
    st.one_of(
        st.sampled_from(["Bearer ", "Bearer x", "Basic Zm9vOmJhcg==", "Bearer C" + "x" * 5000,
                         "hubspot_local_session=garbage", "-1", "abc", "99999999999",
                         "0", "*/*", "127.0.0.1, 10.0.0.1", "x" * 20_000]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        st.just("BEARER_REAL"),
    ),
    max_size=3,
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    method, template, kind = draw(st.sampled_from(ENDPOINTS))
    if draw(st.integers(0, 9)) == 0:  # now and then, any method on a real path
        method = draw(st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH",
                                       "OPTIONS", "TRACE"]))
    segments = [draw(path_segment) for _ in range(template.count("{"))]
    query = draw(pairs_strategy) if draw(st.booleans()) else []
    body_kind = draw(st.sampled_from(["form", "form", "form", "json", "bytes", "huge", "none"]))
    body: Any = None
    if body_kind == "form":
        body = draw(pairs_strategy)
    elif body_kind == "json":
        body = draw(st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(["properties", "advance", "now", "endpoint",
                                               "fault", "times", "delay_ms", "email"])
                              | st.text(max_size=5), inner, max_size=4),
            max_leaves=10))
    elif body_kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif body_kind == "huge":
        body = b"a=" + b"b" * draw(st.sampled_from([70_000, 300_000]))
    return {
        "method": method, "template": template, "kind": kind, "segments": segments,
        "query": query, "encoding": draw(encoding_strategy), "body_kind": body_kind,
        "body": body, "content_type": draw(st.sampled_from(CONTENT_TYPES)),
        "headers": draw(header_strategy),
    }


def _build(world: World, spec: dict[str, Any]) -> httpx.Request:
    path = spec["template"]
    for segment in spec["segments"]:
        kind, item = segment
        if kind == "real":
            text = quote(world.real(item), safe="")
        elif kind == "bytes":
            text = "".join(f"%{b:02X}" for b in item)
        else:
            text = quote((HUGE_VALUE if item == HUGE else item).encode("utf-8", "replace"), safe="")
        path = path.replace("{" + path.split("{", 1)[1].split("}", 1)[0] + "}", text, 1)
    url = path
    if spec["query"]:
        url += "?" + _encode_pairs(world, spec["query"], spec["encoding"])
    if len(url) > MAX_URL:
        url = url[:MAX_URL]
    headers: dict[str, str] = {}
    for name, value in spec["headers"].items():
        headers[name] = f"Bearer {world.access}" if value == "BEARER_REAL" else value
    content: bytes | None = None
    if spec["body_kind"] == "form":
        content = _encode_pairs(world, spec["body"], spec["encoding"]).encode("ascii", "replace")
    elif spec["body_kind"] == "json":
        content = json.dumps(spec["body"]).encode()
    elif spec["body_kind"] in ("bytes", "huge"):
        content = spec["body"]
    if content is not None and spec["content_type"]:
        headers.setdefault("content-type", spec["content_type"])
    return world.client.build_request(spec["method"], url, content=content, headers=headers)


def _location_ok(world: World, location: str) -> bool:
    """A page of this server (relative, or absolute on its own origin, e.g. Starlette's
    trailing-slash redirect) or the app's registered redirect URI."""
    origin = str(world.client.base_url).rstrip("/")
    if location.startswith(origin + "/"):
        return True
    if location.startswith("/") and not location.startswith("//"):
        return True
    return location.startswith(world.hubspot.redirect_uri + "?")


def _authorize_page(spec: dict[str, Any]) -> bool:
    return spec["kind"] == "html" and spec["method"] == (
        "GET" if not spec["template"].endswith(("/login", "/account", "/decision", "/logout"))
        else "POST"
    )


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(spec=requests())
def test_every_endpoint_survives_arbitrary_requests(world: World, spec: dict[str, Any]) -> None:
    hubspot = world.hubspot
    hubspot.server.faults.clear()
    if world.maybe_revoked and hubspot.server.refresh_token_info(world.refresh) is None:
        world.renew_tokens()  # a fuzzed revoke/delete killed it: keep real values alive
    world.maybe_revoked = spec["method"] == "DELETE" or "/revoke" in spec["template"] or (
        "uninstall" in spec["template"])
    request = _build(world, spec)
    before = snapshot(hubspot.database_url)
    response = world.portal.call(world.client.send, request)
    world.examples += 1
    world.statuses[response.status_code] = world.statuses.get(response.status_code, 0) + 1
    world.outcomes.add((spec["method"], spec["template"], response.status_code))
    label = f"{request.method} {str(request.url)[:200]}"

    assert response.status_code < 500, (label, response.status_code, response.text[:500])
    if 300 <= response.status_code < 400:
        location = response.headers.get("location", "")
        assert _location_ok(world, location), (label, location)
    if response.status_code >= 400:
        if _authorize_page(spec) and response.status_code not in (404, 405, 431):
            # 404/405 come from routing (e.g. an empty account id) and 431 from the header
            # limit before it: JSON like any route.
            assert is_html(response), (label, response.status_code, response.text[:300])
        elif request.method == "HEAD":  # no body by definition (RFC 9110 §9.3.2)
            assert response.content == b"", label
        elif spec["kind"] != "css" or response.status_code != 200:
            problems = hubspot_error_problems(response)
            assert not problems, (label, response.status_code, problems, response.text[:300])
        after = snapshot(hubspot.database_url)
        assert not changed_tables(before, after), (label, response.status_code,
                                                   changed_tables(before, after))
