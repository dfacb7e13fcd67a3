"""hubspot-oauth's local HubSpot under wrk (filled in as the server lands)."""

from __future__ import annotations

SCENARIOS: list = []
