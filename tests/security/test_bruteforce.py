"""The brute-force guard's rules (pure logic, injected clock): free failures, exponential
lockout with a cap, per-key independence, the window, success clearing, bounded memory.
The routes' use of it is in test_bruteforce_routes.py."""

from __future__ import annotations

import pytest

from hubspot_oauth.server import bruteforce
from hubspot_oauth.server.bruteforce import (
    BruteForceGuard,
    MemoryAttemptStore,
    Policy,
    login_keys,
    token_keys,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_free_failures_then_exponential_lockout_capped(clock: FakeClock) -> None:
    guard = BruteForceGuard(Policy(free_failures=3, base_delay=2, max_delay=16), clock=clock)
    key = "login-account:x"
    for _ in range(2):
        assert guard.failure(key).allowed
    verdicts = []
    for _ in range(6):
        verdict = guard.failure(key)
        verdicts.append(verdict.retry_after)
        assert not verdict.allowed
        clock.now += verdict.retry_after  # wait out each lockout exactly
        assert guard.check(key).allowed
    assert verdicts == [2, 4, 8, 16, 16, 16]


def test_locked_key_is_refused_until_its_time(clock: FakeClock) -> None:
    guard = BruteForceGuard(Policy(free_failures=1, base_delay=10, max_delay=10), clock=clock)
    guard.failure("k")
    verdict = guard.check("k")
    assert not verdict.allowed and verdict.retry_after == 10
    assert verdict.retry_after_header == "10"
    clock.now += 9.5
    assert not guard.check("k").allowed
    assert guard.check("k").retry_after_header == "1"
    clock.now += 0.5
    assert guard.check("k").allowed


def test_keys_are_independent_and_the_longest_lock_wins(clock: FakeClock) -> None:
    guard = BruteForceGuard(Policy(free_failures=1, base_delay=5, max_delay=100), clock=clock)
    guard.failure("a")
    guard.failure("a")  # a: 10 s
    guard.failure("b")  # b: 5 s
    assert guard.check("c").allowed
    assert guard.check("b", "c").retry_after == 5
    assert guard.check("a", "b").retry_after == 10


def test_failures_older_than_the_window_are_forgotten(clock: FakeClock) -> None:
    guard = BruteForceGuard(Policy(free_failures=3, window=60), clock=clock)
    guard.failure("k")
    guard.failure("k")
    clock.now += 61
    assert guard.failure("k").allowed  # counts as the first again
    assert guard.failure("k").allowed
    assert not guard.failure("k").allowed


def test_success_clears_only_the_named_keys(clock: FakeClock) -> None:
    guard = BruteForceGuard(Policy(free_failures=1), clock=clock)
    guard.failure("a", "b")
    assert not guard.check("a").allowed and not guard.check("b").allowed
    guard.success("a")
    assert guard.check("a").allowed
    assert not guard.check("b").allowed


def test_per_prefix_policies(clock: FakeClock) -> None:
    guard = BruteForceGuard(
        Policy(free_failures=1),
        policies={"login-remote": Policy(free_failures=3)},
        clock=clock,
    )
    assert not guard.failure("login-account:x").allowed
    assert guard.failure("login-remote:1.2.3.4").allowed
    assert guard.failure("login-remote:1.2.3.4").allowed
    assert not guard.failure("login-remote:1.2.3.4").allowed


def test_default_guard_locks_an_account_after_five_failures(clock: FakeClock) -> None:
    guard = bruteforce.default_guard(clock=clock)
    keys = login_keys("Admin@Example.com", "127.0.0.1")
    results = [guard.failure(*keys).allowed for _ in range(5)]
    assert results == [True, True, True, True, False]
    # another account from the same address is still allowed (remote allows 20)
    assert guard.check(*login_keys("other@example.com", "127.0.0.1")).allowed


def test_disabled_guard_allows_everything(clock: FakeClock) -> None:
    guard = BruteForceGuard(Policy(free_failures=0), clock=clock, enabled=False)
    for _ in range(10):
        assert guard.failure("k").allowed
    assert guard.check("k").allowed


def test_huge_failure_counts_stay_at_the_cap() -> None:
    policy = Policy(free_failures=0, base_delay=1, max_delay=300)
    assert policy.lockout(10_000) == 300
    assert policy.lockout(0) == 1
    with pytest.raises(ValueError):
        Policy(base_delay=0)


def test_memory_store_is_bounded() -> None:
    store = MemoryAttemptStore(max_keys=100)
    guard = BruteForceGuard(Policy(), store=store)
    for n in range(1000):
        guard.failure(f"login-account:{n}")
    assert len(store) == 100
    guard.reset()
    assert len(store) == 0


def test_keys_never_hold_the_email_or_client_id_in_clear() -> None:
    keys = login_keys("admin@example.com", "10.0.0.1") + token_keys("my-client-id", None)
    text = " ".join(keys)
    assert "admin@example.com" not in text and "my-client-id" not in text
    assert login_keys("ADMIN@example.com ", None) == login_keys("admin@example.com", None)
    assert token_keys("a", None) != token_keys("b", None)


def test_locked_message_is_friendly() -> None:
    assert bruteforce.locked_message(0.2) == (
        "Too many sign-in attempts. Wait 1 second and try again."
    )
    assert "Wait 8 seconds" in bruteforce.locked_message(7.01)
