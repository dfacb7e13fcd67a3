"""`hubspot-oauth db upgrade`: apply the Alembic migrations of the token store and/or the
local HubSpot (each keeps its own version table, so both may share one database)."""

from __future__ import annotations

from typing import Any

import click
import sqlalchemy as sa

from ..client.config import ClientConfig, data_dir
from .common import (
    LOCAL_HUBSPOT_DB,
    check_database_url,
    console,
    emit_json,
    json_option,
    store_url,
)


@click.group(epilog="\b\nExamples:\n  hubspot-oauth db upgrade\n"
             "  hubspot-oauth db upgrade --for all --database-url "
             "postgresql+psycopg://app@db/hubspot")
def db() -> None:
    """Database schema commands: `db upgrade` applies the migrations of the token store
    and/or the local HubSpot."""


@db.command(epilog="\b\nExamples:\n"
            "  hubspot-oauth db upgrade --database-url postgresql+psycopg://app@db/hubspot\n"
            "  hubspot-oauth db upgrade --for server   # the local HubSpot of `server`/`make run`")
@click.option("--database-url", default=None, metavar="URL",
              help="Database to upgrade [default: the token store's, as `tokens` uses it "
              "(HUBSPOT_OAUTH_DATABASE_URL, else tokens.db in the data directory, "
              "local-hubspot-tokens.db with HUBSPOT_BASE_URL); for --for server the local "
              "HubSpot's local-hubspot.db in the data directory].")
@click.option("--for", "target", type=click.Choice(["store", "server", "all"]),
              default="store", show_default=True,
              help="store: the token store and state tables; server: the local HubSpot's "
              "tables; all: both.")
@json_option
def upgrade(database_url: str | None, target: str, as_json: bool, **_: Any) -> None:
    """Bring a database's schema to this version's (run after upgrading hubspot-oauth)."""
    # Each side defaults to the database its own commands use: the token store's is
    # `tokens`'s, the local HubSpot's is `server`'s and the quickstart's local-hubspot.db
    # (HUBSPOT_OAUTH_DATABASE_URL names the token store, never the local HubSpot).
    urls: dict[str, str] = {}
    if target in ("store", "all"):
        urls["store"] = store_url(ClientConfig.from_env(database_url=database_url),
                                  create_dir=True)
    if target in ("server", "all"):
        if database_url:
            check_database_url(database_url)
        urls["server"] = database_url or f"sqlite:///{data_dir() / LOCAL_HUBSPOT_DB}"
    shown = {name: sa.make_url(url).render_as_string(hide_password=True)
             for name, url in urls.items()}
    done: dict[str, str] = {}
    if "store" in urls:
        from ..client.migrations import upgrade as upgrade_store

        done["store"] = upgrade_store(urls["store"])
    if "server" in urls:
        from ..server.storage import upgrade as upgrade_server

        done["server"] = upgrade_server(urls["server"])
    if as_json:
        # database_url: the first one upgraded (kept for scripts written for one URL).
        emit_json({"database_url": next(iter(shown.values())), "databases": shown,
                   "revisions": done})
        return
    for name, revision in done.items():
        what = "token store" if name == "store" else "local HubSpot"
        console().print(f"{what} schema of {shown[name]} is at revision {revision}")
