"""The local HubSpot counts API calls in fixed rate-limit windows aligned on its clock
(``window_start = now - now % interval``). A test that expects N calls to share one window
must start them at the beginning of a window: otherwise a boundary falling between two
calls (more likely on a loaded machine) resets the count and the expected 429 never comes."""

from __future__ import annotations

from typing import Any


def start_of_next_rate_window(clock: Any, interval_ms: int = 10_000) -> None:
    """Move the emulator `clock` (a `hubspot_oauth.server.clock.Clock`) forward to the start
    of its next rate-limit window of `interval_ms`; the calls that follow then have the
    whole window (seconds of real time) before the count resets."""
    now_ms = clock.timestamp() * 1000
    clock.advance((interval_ms - now_ms % interval_ms) / 1000)
