"""The token store in-process (filled in as the client library lands)."""

from __future__ import annotations

SCENARIOS: list = []
