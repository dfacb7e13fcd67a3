"""When to try a transient failure again, and how long to wait first (no I/O here).

Only `RetryableError`s are retried (network failures, timeouts, 5xx, 429 and bodies that
are not HubSpot's JSON); a 4xx such as ``invalid_grant`` never is, since sending the same
request again cannot succeed. HubSpot asks clients to back off on 429 and honour
``Retry-After`` (reference §7.5-7.6).
"""

from __future__ import annotations

import dataclasses
import logging
import random

from ..errors import ConfigurationError, RetryableError

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "RetryPolicy", "Sleep", "Tries"]

_log = logging.getLogger("hubspot_oauth.client")


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff.

    **Parameters:**
    * `attempts` - total tries, first one included (default 3; 1 disables retries).
    * `backoff` - seconds before the second try (default 0.5); doubled each time.
    * `max_delay` - cap on one computed wait, in seconds (default 8).
    * `max_total_wait` - cap on the sum of waits in one call, in seconds (default 30). A
      ``Retry-After`` longer than what is left ends the retries: the error is raised with
      its `retry_after` so the caller can schedule the next try.
    * `jitter` - spread each computed wait over [50 %, 100 %] so many clients do not
      retry in step (default True). ``Retry-After`` values are used as given.
    * `retry_unanswered_refresh` - also resend a refresh whose request may have reached
      HubSpot but whose answer was lost (read timeout, connection dropped after sending).
      Default False: with refresh-token rotation and reuse detection (RFC 9700 §4.14.2)
      the resend revokes the whole grant, and whether HubSpot rotates is UNCONFIRMED
      (reference §4.5). Set True only for a server that never rotates refresh tokens.
      Failures before sending (connect errors) and 5xx/429 answers are always retried.
    """

    attempts: int = 3
    backoff: float = 0.5
    max_delay: float = 8.0
    max_total_wait: float = 30.0
    jitter: bool = True
    retry_unanswered_refresh: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ConfigurationError("RetryPolicy.attempts must be an integer >= 1")
        for name in ("backoff", "max_delay", "max_total_wait"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value < 0:
                raise ConfigurationError(f"RetryPolicy.{name} must be a number >= 0 (seconds)")

    def delay(self, attempt: int, error: BaseException, waited: float = 0.0) -> float | None:
        """Seconds to wait before try `attempt` + 1, or None to give up and raise `error`.

        `attempt` counts from 1 (the try that just failed); `waited` is the seconds already
        spent waiting in this call.
        """
        if not isinstance(error, RetryableError) or attempt >= self.attempts:
            return None
        retry_after = error.retry_after
        if retry_after is not None:
            wait = max(0.0, float(retry_after))
        else:
            wait = min(self.max_delay, self.backoff * (2 ** (attempt - 1)))
            if self.jitter:
                wait *= 0.5 + random.random() / 2
        if waited + wait > self.max_total_wait:
            return None
        return wait


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(attempts=1)


@dataclasses.dataclass(frozen=True, slots=True)
class Sleep:
    """Wait `seconds`, then send the same request again."""

    seconds: float


class Tries:
    """The retry decisions of one call under a `RetryPolicy` (no I/O: the caller sends and
    sleeps, so the sync and async clients share every rule).

    After each failed try, `after_failure` says `Sleep(seconds)` (wait, then send again) or
    None (raise the error). `enabled=False` tries once (``exchange_code``: a code is single
    use, RFC 6749 §4.1.2).
    """

    __slots__ = ("attempt", "enabled", "operation", "policy", "waited")

    def __init__(self, policy: RetryPolicy, operation: str, *, enabled: bool = True) -> None:
        self.policy = policy
        self.operation = operation
        self.enabled = enabled
        self.attempt = 0
        self.waited = 0.0

    def after_failure(self, error: BaseException, *, may_have_reached_server: bool) -> Sleep | None:
        """`error` ended the latest try; `may_have_reached_server` is True when the request
        may have been received but its answer was lost (not for an answer, nor a failure
        before sending)."""
        self.attempt += 1
        if not self.enabled:
            return None
        if (
            self.operation == "refresh_token"
            and not self.policy.retry_unanswered_refresh
            and may_have_reached_server
        ):
            # HubSpot may have used the refresh token: with rotation and reuse detection
            # (RFC 9700 §4.14.2) sending it again revokes the grant. The caller keeps its
            # token and tries later (adversarial review: strict rotation + a slow answer).
            return None
        delay = self.policy.delay(self.attempt, error, self.waited)
        if delay is None:
            return None
        _log.info("HubSpot %s failed (%s); retrying in %.1f s", self.operation, error, delay)
        self.waited += delay
        return Sleep(delay)
