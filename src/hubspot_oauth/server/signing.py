"""The authorize pages' signing secret, one per database (not per process).

The pages sign their session cookie and the authorization request they carry between
forms (authorize.py). Every server process on one database uses the same secret, so a
browser sent to another process between two pages (a load balancer, a restart) carries
on. It is made by the first process that needs it and kept in ``emulator_state``: like
the rest of the local HubSpot's state, whoever can read the database owns the server.
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .models import emulator_state
from .storage import read, write

__all__ = ["shared_secret"]

_ROW = emulator_state.c.id == 1


def shared_secret(engine: Engine) -> str:
    """The database's signing secret (64 hex characters), made on first use.

    Two processes making it at once agree: the UPDATE only fills an empty column, and
    both then read the one that won. Raises SQLAlchemy's errors when the database fails.
    """
    select = sa.select(emulator_state.c.signing_secret).where(_ROW)
    with read(engine) as conn:
        found = conn.execute(select).scalar()
    if found:
        return found
    with write(engine) as conn:
        conn.execute(sa.update(emulator_state)
                     .where(_ROW, emulator_state.c.signing_secret.is_(None))
                     .values(signing_secret=secrets.token_hex(32)))
        return conn.execute(select).scalar_one()
