"""The parsers never raise anything but the documented errors, whatever they are given."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from hubspot_oauth.client import protocol
from hubspot_oauth.errors import HubSpotAPIError

SECRET = "na1-8649-43d7-456c-a15c-305ec7f11101"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "status",
                    "error",
                    "category",
                    "message",
                    "context",
                    "errors",
                    "access_token",
                    "expires_in",
                    "refresh_token",
                    "scopes",
                    "hub_id",
                    "active",
                    "token_use",
                    "correlationId",
                    "subCategory",
                    "error_description",
                    "signed_access_token",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
statuses = st.one_of(st.integers(min_value=0, max_value=999), st.sampled_from([200, 401, 429, 502]))
headers = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "X-HubSpot-Correlation-Id", "x"]),
    st.text(max_size=40),
    max_size=3,
)
operations = st.sampled_from(["authorization_code", "refresh_token", "introspect", "revoke", "api"])


@settings(max_examples=300, deadline=None)
@given(statuses, headers, bodies, operations)
def test_error_from_response_always_returns_a_typed_error(status, hdrs, data, operation):
    exc = protocol.error_from_response(status, hdrs, data, operation=operation, secrets=[SECRET])
    assert isinstance(exc, HubSpotAPIError)
    str(exc), repr(exc)
    assert exc.body_excerpt is None or len(exc.body_excerpt) <= 200


@settings(max_examples=300, deadline=None)
@given(statuses, headers, bodies)
def test_response_parsers_raise_only_documented_errors(status, hdrs, data):
    for parse in (
        lambda: protocol.parse_token_response(status, hdrs, data, secrets=[SECRET]),
        lambda: protocol.parse_token_response(status, hdrs, data, grant_type="authorization_code"),
        lambda: protocol.parse_introspection(status, hdrs, data, token=SECRET),
        lambda: protocol.parse_revoke_response(status, hdrs, data),
    ):
        try:
            parse()
        except HubSpotAPIError as exc:
            assert SECRET not in str(exc)


scope_names = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="._-"),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(scope_names, min_size=1, max_size=5, unique=True),
    st.lists(scope_names, max_size=5, unique=True),
    st.text(min_size=1, max_size=60).filter(lambda s: s.strip()),
)
def test_authorization_url_round_trips_any_scopes_and_state(required, optional, state):
    from urllib.parse import parse_qs, urlsplit

    from hubspot_oauth import Endpoints

    try:
        state.encode("utf-8")
    except UnicodeEncodeError:
        return
    optional = [s for s in optional if s not in required]
    url = protocol.authorization_url(
        Endpoints(),
        client_id="id",
        redirect_uri="https://example.com/cb",
        scopes=required,
        optional_scopes=optional,
        state=state,
    )
    raw = urlsplit(url).query
    assert " " not in raw and "+" not in raw
    query = parse_qs(raw, keep_blank_values=True)
    assert query["state"] == [state]
    assert query["scope"][0].split(" ") == required
    if optional:
        assert query["optional_scope"][0].split(" ") == optional
    else:
        assert "optional_scope" not in query
