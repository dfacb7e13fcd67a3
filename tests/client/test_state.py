"""StateStore on memory, SQLite and PostgreSQL: single use, expiry, concurrency, digests."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from hubspot_oauth import (
    ConfigurationError,
    StateExpiredError,
    StateMismatchError,
    StateStore,
)
from hubspot_oauth.client.state import State


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'states.db'}"
    return request.getfixturevalue("postgres_url")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_issue_then_consume_returns_the_payload_and_verifier_once(state_url):
    with StateStore(state_url) as states:
        nonce = states.issue({"user": 42, "return_to": "/settings"}, code_verifier="v" * 50)
        assert len(nonce) >= 43  # 256 bits, URL-safe
        state = states.consume(nonce)
        assert isinstance(state, State)
        assert state == {"user": 42, "return_to": "/settings"}
        assert state.code_verifier == "v" * 50
        assert state.expires_at - state.issued_at == timedelta(seconds=600)
        assert "v" * 50 not in repr(state)
        with pytest.raises(StateMismatchError, match="already used"):
            states.consume(nonce)


def test_nonces_are_unique(state_url):
    with StateStore(state_url) as states:
        nonces = {states.issue({}) for _ in range(50)}
    assert len(nonces) == 50


@pytest.mark.parametrize("bad", [None, "", "forged-state", "x" * 10_000, 42])
def test_missing_forged_or_malformed_states_are_mismatches(state_url, bad):
    with StateStore(state_url) as states:
        states.issue({"user": 1})
        with pytest.raises(StateMismatchError):
            states.consume(bad)


def test_expired_state_has_its_own_error_and_is_gone_afterwards(state_url):
    clock = Clock()
    with StateStore(state_url, now=clock) as states:
        nonce = states.issue({"user": 1}, ttl=60)
        clock.now += timedelta(seconds=59)
        fresh = states.issue({"user": 2}, ttl=60)
        clock.now += timedelta(seconds=1)
        with pytest.raises(StateExpiredError):
            states.consume(nonce)
        with pytest.raises(StateMismatchError):
            states.consume(nonce)
        assert states.consume(fresh) == {"user": 2}


def test_c6_two_tabs_finish_in_either_order(state_url):
    """Case C6: two installs started in one browser; the second tab finishes first."""
    with StateStore(state_url) as states:
        first = states.issue({"tab": 1})
        second = states.issue({"tab": 2})
        assert states.consume(second) == {"tab": 2}
        assert states.consume(first) == {"tab": 1}


def race(states: StateStore, nonce: str, threads: int) -> tuple[list[dict], list[Exception]]:
    """`threads` threads consume `nonce` at the same moment."""
    barrier = threading.Barrier(threads, timeout=30)
    wins: list[dict] = []
    losses: list[Exception] = []

    def consume() -> None:
        barrier.wait()
        try:
            wins.append(states.consume(nonce))
        except StateMismatchError as exc:
            losses.append(exc)

    workers = [threading.Thread(target=consume) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return wins, losses


def test_concurrent_consumers_exactly_one_wins(state_url):
    with StateStore(state_url) as states:
        for round_ in range(3):
            wins, losses = race(states, states.issue({"round": round_}), 8)
            assert wins == [{"round": round_}]
            assert len(losses) == 7


@pytest.mark.parametrize(
    "payload, ttl, message",
    [
        ({"when": datetime.now(UTC)}, 600, "JSON"),
        ([("a", 1)], 600, "mapping"),
        ({"a": 1}, 0, "ttl"),
        ({"a": 1}, -5, "ttl"),
        ({"a": float("nan")}, 600, "JSON"),
    ],
)
def test_bad_issue_arguments_are_configuration_errors(payload, ttl, message):
    with StateStore() as states, pytest.raises(ConfigurationError, match=message):
        states.issue(payload, ttl=ttl)


@pytest.mark.parametrize("ttl", [10**12, float("inf"), float("nan"), 30 * 86400 + 1])
def test_a_ttl_beyond_thirty_days_is_a_configuration_error_and_issues_nothing(tmp_path, ttl):
    """A ttl too large for a datetime once raised a raw OverflowError (adversarial review)."""
    url = f"sqlite:///{tmp_path / 'states.db'}"
    with StateStore(url) as states:
        with pytest.raises(ConfigurationError, match="ttl"):
            states.issue({"a": 1}, ttl=ttl)
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            tables = sa.inspect(connection).get_table_names()
            rows = [connection.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                    for t in tables if "state" in t]
        engine.dispose()
        assert rows == [] or set(rows) == {0}
        assert states.issue({"a": 1}, ttl=30 * 86400)  # the largest allowed still works


def test_sql_keeps_only_a_digest_of_the_nonce_and_shares_states_across_instances(tmp_path):
    url = f"sqlite:///{tmp_path / 'states.db'}"
    with StateStore(url) as one:
        nonce = one.issue({"user": 7}, code_verifier="w" * 60)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT * FROM hubspot_oauth_states").fetchall()
    engine.dispose()
    assert len(rows) == 1
    assert nonce not in repr(rows[0])
    assert rows[0][0] == hashlib.sha256(nonce.encode()).hexdigest()
    raw = (tmp_path / "states.db").read_bytes()
    assert nonce.encode() not in raw
    with StateStore(url) as other:  # another process would see the same
        state = other.consume(nonce)
    assert state == {"user": 7} and state.code_verifier == "w" * 60


def test_purge_expired_removes_old_states(state_url):
    clock = Clock()
    with StateStore(state_url, now=clock) as states:
        old = states.issue({}, ttl=60)
        clock.now += timedelta(days=2)
        keep = states.issue({}, ttl=60)
        assert states.purge_expired() == 1
        with pytest.raises(StateMismatchError):
            states.consume(old)
        assert states.consume(keep) == {}


def test_bad_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="memory://"):
        StateStore("not a url")
    with pytest.raises(ConfigurationError):
        StateStore("nosuchdialect://x")


def test_a_shared_engine_is_used_and_left_open(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    with StateStore(engine) as states:
        nonce = states.issue({"via": "engine"})
    with StateStore(engine) as again:  # closing the first did not dispose the engine
        assert again.consume(nonce) == {"via": "engine"}
    engine.dispose()


@pytest.mark.postgres
def test_plain_postgresql_urls_use_psycopg_3(postgres_url):
    plain = "postgresql://" + postgres_url.split("://", 1)[1]
    with StateStore(plain) as states:
        assert states.consume(states.issue({"a": 1})) == {"a": 1}
        assert "psycopg" in states.url and "password" not in states.url.lower()


json_payloads = st.dictionaries(
    st.text(max_size=10),
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=10,
    ),
    max_size=5,
)


@settings(max_examples=100, deadline=None)
@given(json_payloads)
def test_any_json_payload_comes_back_unchanged(payload):
    with StateStore() as states:
        assert states.consume(states.issue(payload)) == payload
