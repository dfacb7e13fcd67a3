"""The local HubSpot's emulator clock is real time plus an offset. A test that checks a
message counting seconds ("expired 1 second(s) ago") freezes the real part, so the time a
slow run spends between issuing a code or token and using it never shows in the answer."""

from __future__ import annotations

import time
from typing import Any

import pytest


class _StoppedTime:
    """The `time` module as the local HubSpot sees it, with `time()` standing still."""

    def __init__(self, at: float) -> None:
        self._at = at

    def time(self) -> float:
        return self._at

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def freeze_emulator_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stop real time under the emulator clock (in-process servers only) until the test
    ends; `clock.advance`/`set`/`reset` still move it."""
    from hubspot_oauth.server import clock, hubspot

    stopped = _StoppedTime(time.time())
    for module in (clock, hubspot):
        monkeypatch.setattr(module, "time", stopped)
