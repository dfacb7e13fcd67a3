"""The emulator clock: real UTC time plus an offset kept in the database, so moving it
expires codes and access tokens for every process that shares the database."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .models import emulator_state
from .storage import read, write

__all__ = ["Clock"]

_OFFSET = sa.select(emulator_state.c.clock_offset).where(emulator_state.c.id == 1)


class Clock:
    """`now()` (aware UTC), `advance(seconds)`, `set(datetime)`, `reset()` (back to real
    time). Every answer is read from the database: no process caches the offset."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def offset(self) -> float:
        """Seconds the emulator clock is ahead of real time (may be negative). (The token
        endpoints read it inside their own transaction: `LocalHubSpot._state`.)"""
        with read(self._engine) as conn:
            return float(conn.execute(_OFFSET).scalar() or 0.0)

    def timestamp(self) -> float:
        """Emulator time as UTC epoch seconds."""
        return time.time() + self.offset()

    def now(self) -> datetime:
        """Emulator time, aware UTC."""
        return datetime.fromtimestamp(self.timestamp(), UTC)

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds` (negative moves it back); returns the new now.
        Raises `ValueError` for a non-finite or absurd value (more than 100 years)."""
        seconds = _finite(seconds)
        with write(self._engine) as conn:
            conn.execute(sa.update(emulator_state).where(emulator_state.c.id == 1)
                         .values(clock_offset=emulator_state.c.clock_offset + seconds))
        return self.now()

    def set(self, when: datetime) -> datetime:
        """Make `when` (aware; naive means UTC) the current emulator time."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        offset = _finite(when.timestamp() - time.time())
        with write(self._engine) as conn:
            conn.execute(sa.update(emulator_state).where(emulator_state.c.id == 1)
                         .values(clock_offset=offset))
        return self.now()

    def reset(self) -> datetime:
        """Back to real time."""
        with write(self._engine) as conn:
            conn.execute(sa.update(emulator_state).where(emulator_state.c.id == 1)
                         .values(clock_offset=0.0))
        return self.now()


_LIMIT = 100 * 366 * 86400.0


def _finite(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("clock seconds must be a number")
    value = float(value)
    if value != value or abs(value) > _LIMIT:  # NaN or beyond 100 years
        raise ValueError("clock seconds must be finite and within 100 years")
    return value
