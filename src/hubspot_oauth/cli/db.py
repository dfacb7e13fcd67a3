"""`hubspot-oauth db upgrade`: apply the Alembic migrations of the token store and/or the
local HubSpot (each keeps its own version table, so both may share one database)."""

from __future__ import annotations

from typing import Any

import click
import sqlalchemy as sa

from ..client.config import ClientConfig
from .common import check_database_url, console, emit_json, json_option


@click.group(epilog="\b\nExamples:\n  hubspot-oauth db upgrade\n"
             "  hubspot-oauth db upgrade --for all --database-url "
             "postgresql+psycopg://app@db/hubspot")
def db() -> None:
    """Database schema commands: `db upgrade` applies the migrations of the token store
    and/or the local HubSpot."""


@db.command(epilog="\b\nExamples:\n"
            "  hubspot-oauth db upgrade --database-url postgresql+psycopg://app@db/hubspot\n"
            "  hubspot-oauth db upgrade --for server --database-url sqlite:///local-hubspot.db")
@click.option("--database-url", default=None, metavar="URL",
              help="Database to upgrade [default: HUBSPOT_OAUTH_DATABASE_URL, else the token "
              "store's SQLite file]. Env: HUBSPOT_OAUTH_DATABASE_URL.")
@click.option("--for", "target", type=click.Choice(["store", "server", "all"]),
              default="store", show_default=True,
              help="store: the token store and state tables; server: the local HubSpot's "
              "tables; all: both.")
@json_option
def upgrade(database_url: str | None, target: str, as_json: bool, **_: Any) -> None:
    """Bring a database's schema to this version's (run after upgrading hubspot-oauth)."""
    url = ClientConfig.from_env(database_url=database_url).default_database_url()
    check_database_url(url)
    shown = sa.make_url(url).render_as_string(hide_password=True)
    done: dict[str, str] = {}
    if target in ("store", "all"):
        from ..client.migrations import upgrade as upgrade_store

        done["store"] = upgrade_store(url)
    if target in ("server", "all"):
        from ..server.storage import upgrade as upgrade_server

        done["server"] = upgrade_server(url)
    if as_json:
        emit_json({"database_url": shown, "revisions": done})
        return
    for name, revision in done.items():
        what = "token store" if name == "store" else "local HubSpot"
        console().print(f"{what} schema of {shown} is at revision {revision}")
