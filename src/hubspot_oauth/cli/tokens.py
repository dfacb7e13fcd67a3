"""`hubspot-oauth tokens …`: look at and fix the stored connections (issue 8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ..client.config import ClientConfig
from ..client.oauth import OAuthClient
from ..client.store import Connection, TokenStore
from ..errors import ConnectionNotFoundError, HubSpotOAuthError, ReauthorizationRequiredError
from ..tokens import mask
from .common import (
    EXIT_FAILED,
    EXIT_USAGE,
    build_config,
    client_options,
    console,
    describe,
    emit_json,
    err_console,
    fail,
    humanize_seconds,
    json_option,
    seconds_until,
    shown_url,
    store_url,
)


def _open_store(config: ClientConfig, *, need_client: bool) -> TokenStore | None:
    """The existing token store, or None when it holds no connection.

    These commands only read or update what is stored, so they create nothing: no
    directory, no database, no schema, no key file. A missing store is one line (exit 1).
    """
    if need_client:
        config.require_credentials()  # a usage error comes first (exit 2)
    url = store_url(config)
    shown = shown_url(url)
    import sqlalchemy as sa

    from ..client.migrations import ensure_schema
    from ..client.migrations.tables import connections
    from ..client.store import create_store_engine

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:"):
            fail(f"no token store at {shown} (an in-memory database holds nothing here)")
        if not database.startswith("file:") and not Path(database).expanduser().is_file():
            fail(f"no token store at {Path(database).expanduser()}; connect a HubSpot "
                 "account first (hubspot-oauth login), or pass --database-url")
    engine = create_store_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(connections.name):
                fail(f"no token store at {shown} (the database has no hubspot-oauth tables; "
                     "hubspot-oauth login or db upgrade creates them)")
        # A schema behind or ahead is refused before anything is read (SchemaOutdatedError).
        ensure_schema(engine, create_if_empty=False)
        with engine.connect() as conn:
            empty = conn.execute(sa.select(connections.c.key).limit(1)).first() is None
    except BaseException:
        engine.dispose()
        raise
    if empty:  # nothing to read, so no key needed: never generate a key file here
        engine.dispose()
        return None
    client = OAuthClient.from_config(config) if need_client or config.has_credentials else None
    return TokenStore(engine=engine, client=client, create_schema=False,
                      encryption_keys=list(config.encryption_keys) or None)


def _connection_data(connection: Connection) -> dict[str, Any]:
    left = seconds_until(connection.expires_at)
    return {
        "key": connection.key,
        "hub_id": connection.hub_id,
        "hub_domain": connection.hub_domain,
        "user": connection.user,
        "user_id": connection.user_id,
        "scopes": list(connection.scopes),
        "expires_at": connection.expires_at,
        "expires_in": int(left) if left is not None else None,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "updated_at": connection.updated_at,
    }


def _status_text(connection: Connection) -> str:
    if connection.needs_reauthorization:
        reason = f" ({connection.status_reason})" if connection.status_reason else ""
        return f"[red]needs re-install{escape(reason)}[/]"
    return "[green]active[/]"


@click.group(epilog="\b\nExamples:\n  hubspot-oauth tokens list\n"
             "  hubspot-oauth tokens show 1234567\n"
             "  hubspot-oauth tokens refresh --all\n"
             "  HUBSPOT_BASE_URL=http://localhost:8765 hubspot-oauth tokens list"
             "   # the local HubSpot's connections")
def tokens() -> None:
    """List, show, refresh, revoke and introspect the stored HubSpot connections.

    The token store is HUBSPOT_OAUTH_DATABASE_URL (or --database-url), by default the
    SQLite file tokens.db in the data directory (local-hubspot-tokens.db when
    HUBSPOT_BASE_URL names a local HubSpot). These commands never create a store: a
    missing one is an error.
    """


@tokens.command("list", epilog="\b\nExamples:\n  hubspot-oauth tokens list\n"
                "  hubspot-oauth tokens list --json | jq '.[].key'")
@client_options
@json_option
def list_(as_json: bool, **flags: Any) -> None:
    """A table of every stored connection: key, hub_id, domain, user, scopes, expires in,
    status."""
    config = build_config(**flags)
    store = _open_store(config, need_client=False)
    connections = store.connections() if store is not None else []
    if as_json:
        emit_json([_connection_data(c) for c in connections])
        return
    out = console()
    if not connections:
        out.print(f"No connections in {escape(shown_url(store_url(config)))}. Connect one "
                  "with: hubspot-oauth login")
        return
    from rich.table import Table

    table = Table(title=f"{len(connections)} HubSpot connection(s)", title_justify="left")
    for column in ("key", "hub_id", "domain", "user", "scopes", "expires in", "status"):
        table.add_column(column, overflow="fold")
    for c in connections:
        left = seconds_until(c.expires_at)
        table.add_row(
            escape(c.key), str(c.hub_id or "—"), escape(c.hub_domain or "—"),
            escape(c.user or "—"), escape(" ".join(c.scopes)),
            humanize_seconds(left) if left is not None else "—", _status_text(c),
        )
    out.print(table)


@tokens.command(epilog="\b\nExamples:\n  hubspot-oauth tokens show 1234567\n"
                "  curl -H \"Authorization: Bearer $(hubspot-oauth tokens show 1234567 "
                "--reveal)\" https://api.hubapi.com/crm/v3/objects/contacts")
@click.argument("key")
@click.option("--reveal", is_flag=True,
              help="Print only a valid access token (refreshed if due), for piping.")
@client_options
@json_option
def show(key: str, reveal: bool, as_json: bool, **flags: Any) -> None:
    """One connection, secrets masked (--reveal prints only the access token)."""
    config = build_config(**flags)
    store = _open_store(config, need_client=False)
    if store is None:
        raise ConnectionNotFoundError(key)
    if reveal:
        if store.client is not None:
            access = store.access_token(key)
        else:
            token = store.get(key)
            if token.expires_within(0):
                fail("the stored access token has expired and no client credentials are "
                     "configured to refresh it (set HUBSPOT_CLIENT_ID and "
                     "HUBSPOT_CLIENT_SECRET)")
            access = token.access_token
        if as_json:
            emit_json({"key": key, "access_token": access})
        else:
            click.echo(access)
        return
    connection = store.connection(key)
    token = store.get(key)
    data = _connection_data(connection)
    data["access_token"] = mask(token.access_token)
    data["refresh_token"] = mask(token.refresh_token)
    if as_json:
        emit_json(data)
        return
    _print_fields(data, title=f"Connection {key}")


def _print_fields(data: dict[str, Any], title: str) -> None:
    from rich.table import Table

    table = Table(title=escape(title), title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in data.items():
        if isinstance(value, list | tuple):
            value = " ".join(str(v) for v in value)
        elif name == "expires_in" and isinstance(value, int):
            value = humanize_seconds(value)
        table.add_row(name, escape("—" if value is None or value == "" else str(value)))
    console().print(table)


@tokens.command(epilog="\b\nExamples:\n  hubspot-oauth tokens refresh 1234567\n"
                "  hubspot-oauth tokens refresh --all")
@click.argument("key", required=False)
@click.option("--all", "all_", is_flag=True, help="Refresh every stored connection.")
@client_options
@json_option
def refresh(key: str | None, all_: bool, as_json: bool, **flags: Any) -> None:
    """Refresh one connection's access token now, or every one with --all.

    With --all a failure does not stop the others; the exit code is 1 when any failed.
    """
    if bool(key) == all_:
        fail("give either a connection KEY or --all", EXIT_USAGE)
    config = build_config(**flags)
    store = _open_store(config, need_client=True)
    if store is None:
        if key:
            raise ConnectionNotFoundError(key)
        if as_json:
            emit_json({"refreshed": 0, "failed": 0, "results": []})
        else:
            console().print("No connections to refresh.")
        return
    if key:
        token = store.refresh(key)
        data = {"key": key, "refreshed": True, "expires_at": token.expires_at,
                "expires_in": int(token.seconds_left())}
        if as_json:
            emit_json(data)
        else:
            console().print(f"Refreshed {escape(key)}: the new access token expires in "
                            f"{humanize_seconds(token.seconds_left())}.")
        return
    _refresh_all(store, as_json)


def _refresh_all(store: TokenStore, as_json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    connections = store.connections()
    results: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("Refreshing"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[current]}"), console=err_console(), transient=True,
    )
    with progress:
        task = progress.add_task("refresh", total=len(connections), current="")
        for connection in connections:
            progress.update(task, current=connection.key)
            try:
                token = store.refresh(connection.key)
                results.append({"key": connection.key, "ok": True,
                                 "expires_at": token.expires_at})
            except HubSpotOAuthError as exc:
                results.append({"key": connection.key, "ok": False, "error": describe(exc),
                                "reauthorization_required":
                                    isinstance(exc, ReauthorizationRequiredError)})
            progress.advance(task)
    failed = [r for r in results if not r["ok"]]
    summary = f"{len(results) - len(failed)} refreshed, {len(failed)} failed"
    if as_json:
        emit_json({"refreshed": len(results) - len(failed), "failed": len(failed),
                   "results": results})
    else:
        out = console()
        for r in failed:
            out.print(f"[red]failed[/] {escape(r['key'])}: {escape(r['error'])}")
        out.print(summary if results else "No connections to refresh.")
    if failed:
        raise click.exceptions.Exit(EXIT_FAILED)


@tokens.command(epilog="\b\nExample:\n  hubspot-oauth tokens revoke 1234567")
@click.argument("key")
@client_options
@json_option
def revoke(key: str, as_json: bool, **flags: Any) -> None:
    """Revoke the connection's refresh token at HubSpot, then delete it from the store."""
    config = build_config(**flags)
    store = _open_store(config, need_client=True)
    if store is None:
        raise ConnectionNotFoundError(key)
    token = store.get(key)
    already_invalid = False
    if token.refresh_token:
        assert store.client is not None
        try:
            store.client.revoke(token.refresh_token)  # type: ignore[attr-defined]
        except ReauthorizationRequiredError:
            already_invalid = True  # HubSpot no longer knows it: only our copy is left
    store.delete(key)
    if as_json:
        emit_json({"key": key, "revoked": True, "deleted": True,
                   "already_invalid": already_invalid})
    else:
        note = " (HubSpot had already invalidated it)" if already_invalid else ""
        console().print(f"Revoked the refresh token of {escape(key)}{note} and deleted the "
                        "connection.")


@tokens.command(epilog="\b\nExamples:\n  hubspot-oauth tokens introspect 1234567\n"
                "  hubspot-oauth tokens introspect 1234567 --refresh-token --json")
@click.argument("key")
@click.option("--refresh-token", "use_refresh", is_flag=True,
              help="Introspect the refresh token instead of the access token.")
@client_options
@json_option
def introspect(key: str, use_refresh: bool, as_json: bool, **flags: Any) -> None:
    """Ask HubSpot what it knows about the connection's token (hub, user, app, scopes,
    expiry)."""
    config = build_config(**flags)
    store = _open_store(config, need_client=True)
    if store is None:
        raise ConnectionNotFoundError(key)
    token = store.get(key)
    value = token.refresh_token if use_refresh else token.access_token
    if not value:
        fail(f"connection {key!r} has no refresh token")
    assert store.client is not None
    info = store.client.introspect(  # type: ignore[attr-defined]
        value, token_type_hint="refresh_token" if use_refresh else "access_token")
    data = {
        "key": key, "active": info.active, "token_use": info.token_use,
        "hub_id": info.hub_id, "hub_domain": info.hub_domain, "user": info.user,
        "user_id": info.user_id, "app_id": info.app_id, "scopes": list(info.scopes),
        "expires_in": info.expires_in, "hublet": info.hublet,
    }
    if as_json:
        emit_json(data)
        return
    _print_fields(data, title=f"What HubSpot says about {key}'s "
                  f"{'refresh' if use_refresh else 'access'} token")
