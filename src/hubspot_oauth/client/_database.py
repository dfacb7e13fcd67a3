"""What the token store and the state store share about their SQL database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

__all__ = ["UNREACHABLE", "guarded"]

# The database cannot be reached now (down, restarting, pool exhausted): worth a retry.
UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)


def guarded(operation: Callable[[], Any], unavailable: Callable[[str], Exception]) -> Any:
    """`operation()`'s result; when the database cannot be reached, raises
    `unavailable(reason)` instead (`reason`: the driver error's class name). The driver's
    error is not chained: its text may carry the database URL with its password."""
    try:
        return operation()
    except UNREACHABLE as exc:
        raise unavailable(type(getattr(exc, "orig", exc)).__name__) from None
