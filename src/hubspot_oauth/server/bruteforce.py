"""Brute-force protection for the login form and the token endpoint.

RFC 6749 §10.10 asks the authorization server to stop attackers from guessing credentials;
RFC 9700 §4.15 (and OWASP's authentication guidance) adds that a sign-in form must not tell
an attacker which accounts exist. This module is the pure logic: counts of failed attempts
per key, an exponential lockout, and a small store interface (`AttemptStore`) with an
in-memory implementation. The routes decide what a key is and what counts as a failure:

- login form: keys are the e-mail address (known or not) and the remote address; an
  unknown e-mail and a wrong password both count.
- token endpoints: keys are the (`client_id`, remote address) pair and the remote address;
  failed client authentication counts (unknown `client_id`, wrong `client_secret`). Never
  the `client_id` alone: it is public, so a lock on it would let anyone lock the app out of
  its own token calls.

Codes and refresh tokens carry 128 bits or more of randomness, so a wrong one is a client
bug, not a guess worth counting; counting them would lock out an app whose users
uninstalled it (every refresh then fails with ``BAD_REFRESH_TOKEN``).

Lockout rule (`Policy`): the first `free_failures` failures within `window` seconds cost
nothing; failure number ``free_failures + n`` (n ≥ 0) locks the key for
``min(max_delay, base_delay * 2**n)`` seconds. While a key is locked, the route answers
429 at once without checking the credentials, so locked attempts neither leak whether a
password was right nor cost a password hash. A success clears the keys it names. An
unknown e-mail is counted exactly like a known one, so the lockout itself reveals nothing.

Attempts in flight count: the credential check runs on a worker thread, and guesses sent
at once would otherwise all pass the check before the first failure is recorded (200
concurrent wrong secrets all got through). `BruteForceGuard.enter` reserves the attempt
(pending) until its outcome settles it; an attempt that would go ahead while the pending
ones, should they all fail, lock a key waits for them to settle first, then is judged
like a sequential one (429 once they failed; it goes ahead once they succeeded, so a
legitimate client's concurrent calls are only queued, never refused). So the guesses in
flight per key are at most what sequential guesses could make before the lockout.

Usage::

    guard = BruteForceGuard()
    attempt = await guard.enter(*keys)       # before looking at the credentials
    if not attempt.allowed: answer 429 with Retry-After: attempt.verdict.retry_after_header
    with attempt:                            # releases the reservation in any case
        ...
        attempt.failure() or attempt.success()

The clock is `time.monotonic` seconds unless another is injected (tests inject one).
Password checks themselves (argon2, a dummy hash for unknown e-mails so both cost the
same) are `hubspot.verify_password`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "DEFAULT_LOGIN_POLICY",
    "DEFAULT_TOKEN_POLICY",
    "LOCKED_LOGIN_MESSAGE",
    "Attempt",
    "AttemptRecord",
    "AttemptStore",
    "BruteForceGuard",
    "MemoryAttemptStore",
    "Policy",
    "Verdict",
    "locked_message",
    "login_keys",
    "guard_for",
    "token_keys",
]

# The login page shows one message for an unknown e-mail and a wrong password.
LOCKED_LOGIN_MESSAGE = "Too many sign-in attempts. Wait {seconds} and try again."


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """How many failures are free and how long the lockouts after them last (seconds)."""

    free_failures: int = 5
    base_delay: float = 1.0
    max_delay: float = 300.0
    window: float = 900.0

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.base_delay <= 0 or self.max_delay < self.base_delay:
            raise ValueError("Policy needs free_failures >= 0 and 0 < base_delay <= max_delay")
        if self.window <= 0:
            raise ValueError("Policy.window must be positive seconds")

    def lockout(self, failures: int) -> float:
        """Seconds a key is locked after its `failures`-th failure (0: not locked)."""
        over = failures - self.free_failures
        if over < 0:
            return 0.0
        # 2**over overflows float for huge counts; the cap makes the exact value moot.
        if over > 64:
            return self.max_delay
        return min(self.max_delay, self.base_delay * (2**over))


# Per account (e-mail) the classic five free tries; per remote address more, because
# many people may share one address (and every test shares 127.0.0.1).
DEFAULT_LOGIN_POLICY = Policy(free_failures=5)
DEFAULT_TOKEN_POLICY = Policy(free_failures=10)
REMOTE_FACTOR = 4


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What the store keeps per key: failure count, time of the last failure and the end
    of the current lockout, both in the guard's clock seconds."""

    failures: int = 0
    last_failure: float = 0.0
    locked_until: float = 0.0


class AttemptStore(Protocol):
    """Where attempt records live. Implementations must be safe across threads."""

    def load(self, key: str) -> AttemptRecord | None:
        """The record of `key`, or None."""

    def save(self, key: str, record: AttemptRecord) -> None:
        """Store `record` under `key`."""

    def clear(self, key: str) -> None:
        """Forget `key` (no error when absent)."""

    def update(
        self, key: str, change: Callable[[AttemptRecord | None], AttemptRecord | None]
    ) -> AttemptRecord | None:
        """Atomically replace the record of `key` by `change(old)` (None deletes)."""


class MemoryAttemptStore:
    """An in-process `AttemptStore`, bounded to `max_keys` (least recently used dropped), so
    a flood of made-up e-mail addresses cannot exhaust memory."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._records: OrderedDict[str, AttemptRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def load(self, key: str) -> AttemptRecord | None:
        with self._lock:
            return self._records.get(key)

    def save(self, key: str, record: AttemptRecord) -> None:
        with self._lock:
            self._put(key, record)

    def clear(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

    def update(
        self, key: str, change: Callable[[AttemptRecord | None], AttemptRecord | None]
    ) -> AttemptRecord | None:
        with self._lock:
            new = change(self._records.get(key))
            if new is None:
                self._records.pop(key, None)
            else:
                self._put(key, new)
            return new

    def clear_all(self) -> None:
        """Forget every key."""
        with self._lock:
            self._records.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def _put(self, key: str, record: AttemptRecord) -> None:
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self._max_keys:
            self._records.popitem(last=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """`allowed` False means answer 429 now; `retry_after` is seconds until the longest
    lockout among the keys ends (0.0 when allowed)."""

    allowed: bool
    retry_after: float = 0.0

    @property
    def retry_after_header(self) -> str:
        """`Retry-After` value: whole seconds, at least 1 (RFC 9110 §10.2.3)."""
        return str(max(1, math.ceil(self.retry_after)))


class Attempt:
    """One attempt admitted (or refused) by `BruteForceGuard.enter`/`try_enter`.

    `allowed` False: answer 429 with `verdict` (`busy` True when it was refused only
    because attempts in flight could lock a key: `try_enter`'s answer, or `enter`'s after
    waiting `BruteForceGuard.max_wait` seconds). An allowed attempt holds a reservation
    on its keys until `success`, `failure` or `release` (idempotent; also on leaving a
    ``with`` block, so an exception or a cancellation never leaks it)."""

    __slots__ = ("_held", "busy", "guard", "keys", "verdict")

    def __init__(self, guard: BruteForceGuard, keys: tuple[str, ...], verdict: Verdict,
                 *, held: bool = False, busy: bool = False) -> None:
        self.guard, self.keys, self.verdict = guard, keys, verdict
        self._held, self.busy = held, busy

    @property
    def allowed(self) -> bool:
        return self.verdict.allowed

    def success(self) -> None:
        """The credentials were right: clear the keys' failures, release the reservation."""
        self.guard._settle(self.keys, success=True, held=self._take())

    def failure(self) -> Verdict:
        """The credentials were wrong: count a failure, release the reservation; returns
        the verdict for the next attempt."""
        return self.guard._settle(self.keys, success=False, held=self._take())

    def release(self) -> None:
        """Neither outcome (another error, a crash, a cancelled request): just release."""
        if self._take():
            self.guard._release(self.keys)

    def _take(self) -> bool:
        held, self._held = self._held, False
        return held

    def __enter__(self) -> Attempt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class BruteForceGuard:
    """Counts failures per key and locks keys out with exponential backoff.

    **Parameters:**
    * `policy` - the default `Policy` for keys without a more specific one.
    * `policies` - *(optional)* `Policy` per key prefix (the text before the first ``:``),
      e.g. ``{"login-remote": Policy(free_failures=20)}``.
    * `store` - *(optional)* an `AttemptStore`; default a `MemoryAttemptStore`.
    * `clock` - *(optional)* seconds, monotonic; default `time.monotonic`.
    * `enabled` - False turns every check into "allowed" (for tests that flood on purpose).
    * `max_wait` - seconds `enter` waits for attempts in flight before answering 429.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        policies: dict[str, Policy] | None = None,
        store: AttemptStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        enabled: bool = True,
        max_wait: float = 10.0,
    ) -> None:
        self.policy = policy or Policy()
        self.policies = dict(policies or {})
        self.store: AttemptStore = store if store is not None else MemoryAttemptStore()
        self.clock = clock
        self.enabled = enabled
        self.max_wait = max_wait
        # Attempts in flight per key, and the coroutines waiting for one to settle. Both
        # per process, like the default store; one lock makes judge-and-reserve atomic.
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    def policy_for(self, key: str) -> Policy:
        """The policy of `key`: by its prefix, else the default."""
        return self.policies.get(key.split(":", 1)[0], self.policy)

    def pending(self, key: str) -> int:
        """Attempts in flight for `key` (admitted by `enter`, not yet settled)."""
        with self._lock:
            return self._pending.get(key, 0)

    @property
    def waiting(self) -> int:
        """Attempts `enter` holds back until attempts in flight settle."""
        with self._lock:
            return len(self._waiters)

    def try_enter(self, *keys: str) -> Attempt:
        """`enter` without waiting: `Attempt.busy` when it would have waited."""
        if not self.enabled:
            return Attempt(self, keys, Verdict(True))
        with self._lock:
            return self._judge(keys)

    async def enter(self, *keys: str) -> Attempt:
        """Admit an attempt for these keys (see the module docstring): allowed, holding a
        reservation to settle; or refused (locked, or attempts in flight still unsettled
        after `max_wait` seconds). Waits on the running asyncio loop; cancellation-safe."""
        if not self.enabled:
            return Attempt(self, keys, Verdict(True))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while True:
            with self._lock:
                attempt = self._judge(keys)
                if not attempt.busy:
                    return attempt
                waiter = (loop, loop.create_future())
                self._waiters.add(waiter)
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return attempt  # refused: the attempts in flight never settled
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(waiter[1], remaining)
            finally:
                with self._lock:
                    self._waiters.discard(waiter)

    def _judge(self, keys: tuple[str, ...]) -> Attempt:
        # Caller holds self._lock. A sequential attempt (nothing pending) is judged as
        # `check` judges it; with attempts pending it waits when they, all failing,
        # would lock a key.
        now = self.clock()
        wait = busy = 0.0
        for key in keys:
            record = self.store.load(key)
            if record is not None and record.locked_until > now:
                wait = max(wait, record.locked_until - now)
                continue
            pending = self._pending.get(key, 0)
            if pending:
                policy = self.policy_for(key)
                failures = 0
                if record is not None and now - record.last_failure <= policy.window:
                    failures = record.failures
                busy = max(busy, policy.lockout(failures + pending))
        if wait > 0:
            return Attempt(self, keys, Verdict(False, wait))
        if busy > 0:
            return Attempt(self, keys, Verdict(False, busy), busy=True)
        for key in keys:
            self._pending[key] = self._pending.get(key, 0) + 1
        return Attempt(self, keys, Verdict(True), held=True)

    def _settle(self, keys: tuple[str, ...], *, success: bool, held: bool) -> Verdict:
        # Record the outcome and release the reservation at once, so no attempt is
        # judged between the two.
        with self._lock:
            if success:
                self.success(*keys)
                verdict = Verdict(True)
            else:
                verdict = self.failure(*keys)
            if held:
                self._unreserve(keys)
        return verdict

    def _release(self, keys: tuple[str, ...]) -> None:
        with self._lock:
            self._unreserve(keys)

    def _unreserve(self, keys: tuple[str, ...]) -> None:
        # Caller holds self._lock.
        for key in keys:
            left = self._pending.get(key, 0) - 1
            if left > 0:
                self._pending[key] = left
            else:
                self._pending.pop(key, None)
        self._wake()

    def _wake(self) -> None:
        # Caller holds self._lock. Every waiter judges again (a few dict reads each).
        if not self._waiters:
            return  # the common case: no new set per settled attempt
        waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                loop.call_soon_threadsafe(_resolve, future)

    def check(self, *keys: str) -> Verdict:
        """Whether an attempt for these keys may go ahead now, ignoring attempts in flight
        (`enter` counts those). Records nothing."""
        if not self.enabled:
            return Verdict(True)
        now = self.clock()
        wait = 0.0
        for key in keys:
            record = self.store.load(key)
            if record is not None and record.locked_until > now:
                wait = max(wait, record.locked_until - now)
        return Verdict(wait <= 0, wait)

    def failure(self, *keys: str) -> Verdict:
        """Record one failed attempt for each key; returns the verdict for the next one."""
        if not self.enabled:
            return Verdict(True)
        now = self.clock()
        for key in keys:
            policy = self.policy_for(key)

            def count(old: AttemptRecord | None, policy: Policy = policy) -> AttemptRecord:
                failures = 0
                if old is not None and now - old.last_failure <= policy.window:
                    failures = old.failures
                failures += 1
                lock = policy.lockout(failures)
                return AttemptRecord(failures, now, now + lock if lock else 0.0)

            self.store.update(key, count)
        return self.check(*keys)

    def success(self, *keys: str) -> None:
        """A successful attempt: forget the failures of these keys."""
        for key in keys:
            self.store.clear(key)

    def reset(self) -> None:
        """Forget everything (the control API's reset); attempts in flight still settle."""
        clear_all = getattr(self.store, "clear_all", None)
        if clear_all is not None:
            clear_all()
        with self._lock:
            self._wake()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _digest(value: str) -> str:
    # Keys never hold an e-mail or client id in clear: stores may be dumped or logged.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def login_keys(email: str | None, remote: str | None) -> tuple[str, ...]:
    """Keys of a login attempt: the account (e-mail, case-folded) and the remote address."""
    keys = [f"login-account:{_digest((email or '').strip().casefold())}"]
    if remote:
        keys.append(f"login-remote:{remote}")
    return tuple(keys)


def token_keys(client_id: str | None, remote: str | None) -> tuple[str, ...]:
    """Keys of a token-endpoint client authentication: the `client_id` at the remote address,
    and the remote address (not the public `client_id` alone: see the module docstring)."""
    pair = f"{client_id or ''}\n{remote or ''}"
    keys = [f"token-client:{_digest(pair)}"]
    if remote:
        keys.append(f"token-remote:{remote}")
    return tuple(keys)


def default_guard(**kwargs: object) -> BruteForceGuard:
    """The server's guard: the policies of the module docstring."""
    login, token = DEFAULT_LOGIN_POLICY, DEFAULT_TOKEN_POLICY
    policies = {
        "login-account": login,
        "login-remote": dataclasses.replace(
            login, free_failures=login.free_failures * REMOTE_FACTOR
        ),
        "token-client": token,
        "token-remote": dataclasses.replace(
            token, free_failures=token.free_failures * REMOTE_FACTOR
        ),
    }
    return BruteForceGuard(login, policies=policies, **kwargs)  # type: ignore[arg-type]


def guard_for(state: object) -> BruteForceGuard:
    """The app's one guard, ``app.state.bruteforce`` (made by `default_guard` on first use),
    shared by the login form and every endpoint that authenticates clients. Tests may
    replace it, e.g. with ``BruteForceGuard(enabled=False)``."""
    guard = getattr(state, "bruteforce", None)
    if guard is None:
        guard = default_guard()
        state.bruteforce = guard  # type: ignore[attr-defined]
    return guard


def locked_message(retry_after: float) -> str:
    """The friendly text of the login page's lockout, e.g. "… Wait 8 seconds …"."""
    seconds = max(1, math.ceil(retry_after))
    unit = "second" if seconds == 1 else "seconds"
    return LOCKED_LOGIN_MESSAGE.format(seconds=f"{seconds} {unit}")
