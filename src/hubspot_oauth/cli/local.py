"""`hubspot-oauth quickstart` and `hubspot-oauth server`: the long-running commands.

`quickstart` with no HubSpot credentials runs the local HubSpot (port 8765) and the
quickstart (port 3000) as two uvicorn servers in one asyncio loop of one process; Ctrl-C
stops both. With credentials it runs only the quickstart, against real HubSpot.
Ports are bound before anything starts, so a taken port is one line and exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..client.config import ClientConfig, data_dir
from .common import (
    EXIT_USAGE,
    LOCAL_HUBSPOT_DB,
    LOCAL_TOKENS_DB,
    check_database_url,
    emit_json,
    fail,
    json_option,
    store_url,
)

DEFAULT_QUICKSTART_PORT = 3000
DEFAULT_HUBSPOT_PORT = 8765
# Copies of server.settings' MIN_ADMIN_TOKEN and ROTATION_MODES (importing server/ here
# would cost every command ~70 ms); tests/cli/test_commands.py checks that they agree.
MIN_ADMIN_TOKEN = 8
ROTATION_MODES = ("off", "rotate", "strict")


# -- sockets and servers -------------------------------------------------------------------

def bind_port(host: str, port: int, what: str, hint: str = "") -> socket.socket:
    """A listening socket on host:port, or one line naming the port (exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # SO_REUSEADDR lets a restart reuse a port in TIME_WAIT; Linux still refuses a port
    # another socket listens on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"port {port} ({what}) is already in use by another program{hint}")
        fail(f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}")
    sock.setblocking(False)
    return sock


@dataclass
class _Served:
    name: str
    app: Any
    sock: socket.socket


def serve_apps(served: Sequence[_Served]) -> None:
    """Run ASGI apps on their sockets in one asyncio loop until Ctrl-C or SIGTERM.

    uvicorn's own signal capture is per server (the last one installed wins), so this
    installs one handler that asks every server to stop; a second Ctrl-C forces it.
    """
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    servers = [
        _Server(uvicorn.Config(s.app, log_level="warning", access_log=False,
                               lifespan="on", timeout_graceful_shutdown=5))
        for s in served
    ]

    first_signal: list[float] = []

    def stop(signum: int, _frame: Any) -> None:
        # `timeout`, `make` and terminals may deliver one stop request as several signals
        # at once; only a second request a moment later forces the exit.
        now = time.monotonic()
        if first_signal and now - first_signal[0] > 1.0:
            for server in servers:
                server.force_exit = True
        first_signal.append(now)
        for server in servers:
            server.should_exit = True

    async def run() -> None:
        tasks = [asyncio.create_task(server.serve(sockets=[s.sock]))
                 for server, s in zip(servers, served, strict=True)]
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server in servers:  # one stopped (Ctrl-C or a failure): stop the others
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(run())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for s in served:
            s.sock.close()
    failed = [s.name for server, s in zip(servers, served, strict=True) if not server.started]
    if failed:
        fail(f"the {' and the '.join(failed)} could not start (see the messages above)")


# -- the local HubSpot ---------------------------------------------------------------------

def _sign_in_rows(seed: Any) -> tuple[tuple[str, str, str], ...]:
    from ..server.seed import INSTALL_ROLES  # the server is loaded when there is a seed

    rows = []
    for user in seed.users:
        can = [str(h) for h, role in user.roles.items() if role in INSTALL_ROLES]
        cannot = [str(h) for h, role in user.roles.items() if role == "none"]
        if can:
            what = f"can install the app in {' and '.join(can)}"
        elif cannot:
            what = f"gets HubSpot's permission error page (no install permission in " \
                   f"{' and '.join(cannot)})"
        else:
            what = "belongs to no portal"
        rows.append((user.email, user.password, what))
    return tuple(rows)


@dataclass(frozen=True)
class _AppShown:
    """The app a banner names: the seed's, or the one the quickstart registered for its
    port (whose secret is never printed: it lives in `secret_file`)."""

    name: str
    client_id: str
    redirect_urls: tuple[str, ...]
    scopes: tuple[str, ...]
    optional_scopes: tuple[str, ...]
    client_secret: str | None = None
    secret_file: Path | None = None


def _seed_app_shown(seed: Any) -> _AppShown:
    app = seed.apps[0]
    return _AppShown(app.name, app.client_id, tuple(app.redirect_urls), tuple(app.scopes),
                     tuple(app.optional_scopes), client_secret=app.client_secret)


def _hubspot_banner(base_url: str, seed: Any, database_url: str,
                    app: _AppShown | None = None, scopes: str | None = None) -> list[str]:
    lines = [f"Local HubSpot   {base_url}   (database {database_url})"]
    if app is None and seed.is_default:
        app = _seed_app_shown(seed)
    if app is not None:
        lines.append(f"  app           {app.name}: client_id {app.client_id}")
        if app.secret_file is not None:
            lines.append(f"                client secret in {app.secret_file}")
        elif seed.is_default:
            lines.append(f"                client secret {app.client_secret} (the example "
                         "values of HubSpot's OAuth guide)")
        lines.append(f"                redirect URLs {', '.join(app.redirect_urls)}")
        if scopes:
            lines.append(f"                scopes        {scopes}")
    if seed.is_default:
        lines.append("  portals       "
                     + ", ".join(f"{p.hub_id} ({p.hub_domain})" for p in seed.portals))
    for email, password, what in _sign_in_rows(seed):
        lines.append(f"  sign in as    {email} / {password}  - {what}")
    lines.append(f"  control API   {base_url}/_emulator/clock, /_emulator/stats, …")
    return lines


def _require_server_extra() -> None:
    """The quickstart and the local HubSpot need the `server` extra; say so in one line."""
    import importlib.util

    missing = [name for name in ("starlette", "uvicorn", "jinja2", "multipart", "argon2")
               if importlib.util.find_spec(name) is None]
    if missing:
        fail(f"this command needs the server extra ({', '.join(missing)} missing): "
             "pip install 'hubspot-oauth[server]'")


def _sqlite_in_data_dir(name: str) -> str:
    return f"sqlite:///{data_dir() / name}"


def _local_tokens_db(port: int, uses_seed_app: bool) -> str:
    """The quickstart's token file on the local HubSpot, one per app: the seed's app (port
    3000) keeps local-hubspot-tokens.db, shared with `login` against a local HubSpot; the
    app registered for another port gets its own file, so installing there never
    overwrites a connection of the seed's app (same portal, same key)."""
    if uses_seed_app:
        return LOCAL_TOKENS_DB
    return f"local-hubspot-tokens-port-{port}.db"


@click.command(epilog="\b\nExamples:\n  hubspot-oauth server\n"
               "  hubspot-oauth server --port 9000 --auto-approve admin@example.com\n"
               "  hubspot-oauth server --database-url postgresql+psycopg://me@localhost/hs "
               "--refresh-token-rotation strict")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (the control API is on only on loopback unless "
              "--admin-token is set).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_HUBSPOT_PORT,
              show_default=True)
@click.option("--database-url", default=None, metavar="URL",
              help=f"[default: SQLite {LOCAL_HUBSPOT_DB} in the data directory]")
@click.option("--seed", "seed_file", type=click.Path(dir_okay=False), default=None,
              help="TOML seed file (apps, portals, users, contacts) instead of the default.")
@click.option("--auto-approve", metavar="EMAIL", default=None,
              help="Approve every install as this user, with no pages (headless tests).")
@click.option("--refresh-token-rotation", type=click.Choice(ROTATION_MODES), default="off",
              show_default=True, help="off: HubSpot's behaviour (same refresh token back).")
@click.option("--access-token-ttl", type=click.IntRange(min=1), default=1800,
              show_default=True, help="Seconds.")
@click.option("--code-ttl", type=click.IntRange(min=1), default=300, show_default=True,
              help="Seconds an authorization code stays valid.")
@click.option("--admin-token", default=None, envvar="HUBSPOT_OAUTH_ADMIN_TOKEN",
              help="Require 'Authorization: Bearer TOKEN' on the control API (and serve it "
              f"on any interface); at least {MIN_ADMIN_TOKEN} characters. "
              "Env: HUBSPOT_OAUTH_ADMIN_TOKEN.")
@json_option
def server(host: str, port: int, database_url: str | None, seed_file: str | None,
           auto_approve: str | None, refresh_token_rotation: str, access_token_ttl: int,
           code_ttl: int, admin_token: str | None, as_json: bool) -> None:
    """Run the local HubSpot: HubSpot's OAuth 2.0 server (authorize pages, token,
    introspect, revoke), a small CRM API and a control API for tests."""
    _require_server_extra()
    from ..server import ServerSettings, create_app

    if database_url:
        check_database_url(database_url)
    if admin_token is not None and len(admin_token) < MIN_ADMIN_TOKEN:
        fail(f"--admin-token (HUBSPOT_OAUTH_ADMIN_TOKEN) must be at least {MIN_ADMIN_TOKEN} "
             f"characters; got {len(admin_token)}", EXIT_USAGE)
    display_host = "localhost" if host in ("127.0.0.1", "::1", "localhost") else host
    settings = ServerSettings(
        database_url=database_url or _sqlite_in_data_dir(LOCAL_HUBSPOT_DB),
        seed_file=seed_file, auto_approve=auto_approve,
        refresh_token_rotation=refresh_token_rotation, access_token_ttl=access_token_ttl,
        code_ttl=code_ttl, admin_token=admin_token, host=host,
        public_url=f"http://{display_host}:{port}",
    )
    sock = bind_port(host, port, "local HubSpot",
                     "; stop the other program (another `hubspot-oauth server`, or a quickstart "
                     "or `make run` running the local HubSpot?), or pass --port")
    app = create_app(settings)
    hubspot = app.state.hubspot
    base_url = f"http://{display_host}:{port}"
    shown_db = _display_url(settings.resolved_database_url)
    if as_json:
        emit_json({"base_url": base_url, "database_url": shown_db,
                   "control_api": settings.control_api_enabled})
    else:
        for line in _hubspot_banner(base_url, hubspot.seed, shown_db):
            click.echo(line)
        click.echo("Press Ctrl-C to stop.")
    serve_apps([_Served("local HubSpot", app, sock)])
    if not as_json:
        click.echo("Stopped the local HubSpot.")


def _display_url(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


# -- the quickstart ------------------------------------------------------------------------

def _local_app_credentials(hubspot: Any, redirect_uri: str,
                           port: int) -> tuple[str, str, _AppShown]:
    """(client_id, client_secret, what to print): the seed's app when the redirect URI is
    its registered one, else an app registered once for this port (credentials kept in
    the data directory, mode 0600)."""
    seed_app = hubspot.seed.apps[0]
    if redirect_uri in seed_app.redirect_urls:
        return seed_app.client_id, seed_app.client_secret, _seed_app_shown(hubspot.seed)
    path = data_dir() / f"quickstart-app-port-{port}.json"

    def shown(record: Any) -> _AppShown:
        return _AppShown(record.name, record.client_id, tuple(record.redirect_urls),
                         tuple(record.scopes), tuple(record.optional_scopes),
                         secret_file=path)

    with contextlib.suppress(OSError, ValueError, KeyError):
        saved = json.loads(path.read_text())
        record = hubspot.app(saved["client_id"])
        if record is not None and record.secret_matches(saved["client_secret"]):
            return saved["client_id"], saved["client_secret"], shown(record)
    _app_id, client_id, client_secret = hubspot.create_app_registration(
        name=f"{seed_app.name} (port {port})", redirect_urls=[redirect_uri],
        scopes=list(seed_app.scopes), optional_scopes=list(seed_app.optional_scopes),
        description=seed_app.description,
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"client_id": client_id, "client_secret": client_secret}, handle)
    return client_id, client_secret, shown(hubspot.app(client_id))


@contextlib.contextmanager
def _quiet_key_file_notice() -> Iterator[None]:
    import logging
    import warnings

    store_log = logging.getLogger("hubspot_oauth.store")
    level = store_log.level
    store_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        store_log.setLevel(level)


def _check_reachable(api_url: str) -> None:
    """One GET: any HTTP answer means HubSpot is there; no answer is one line, exit 1."""
    import httpx

    try:
        httpx.get(api_url + "/", timeout=8.0)
    except httpx.HTTPError as exc:
        fail(f"cannot reach HubSpot at {api_url} ({type(exc).__name__}: "
             f"{str(exc) or 'no answer'}); check the network or HUBSPOT_BASE_URL")


@click.command(epilog="\b\nExamples:\n"
               "  hubspot-oauth quickstart                       # with the local HubSpot\n"
               "  HUBSPOT_CLIENT_ID=… HUBSPOT_CLIENT_SECRET=… hubspot-oauth quickstart\n"
               "  CLIENT_ID=… CLIENT_SECRET=… SCOPE='crm.objects.contacts.read' "
               "hubspot-oauth quickstart")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help=f"Port of the quickstart [default: {DEFAULT_QUICKSTART_PORT}, or the port "
              "of HUBSPOT_REDIRECT_URI].")
@click.option("--hubspot-port", type=click.IntRange(1, 65535), default=DEFAULT_HUBSPOT_PORT,
              envvar="HUBSPOT_OAUTH_LOCAL_HUBSPOT_PORT", hidden=True,
              help="Port of the embedded local HubSpot.")
@json_option
def quickstart(port: int | None, hubspot_port: int, as_json: bool) -> None:
    """Run the quickstart app on http://localhost:3000: install it in a HubSpot account,
    see the account's contacts, refresh and disconnect.

    With no HubSpot credentials it also runs the local HubSpot on http://localhost:8765
    in the same process, so nothing else is needed; sign in there as admin@example.com
    with the password "password". With HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET (or
    CLIENT_ID/CLIENT_SECRET/SCOPE, as HubSpot's Node quickstart reads them) it talks to
    real HubSpot; register http://localhost:3000/oauth-callback as the app's redirect URL.
    """
    env_config = ClientConfig.from_env()
    if bool(env_config.client_id) != bool(env_config.client_secret):
        # The quickstart has no credential flags: name the environment only.
        missing = "HUBSPOT_CLIENT_SECRET" if env_config.client_id else "HUBSPOT_CLIENT_ID"
        fail(f"missing {missing} in the environment: the quickstart reads the app's "
             "credentials from HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET (or CLIENT_ID and "
             "CLIENT_SECRET); set both for real HubSpot, or neither for the local HubSpot",
             EXIT_USAGE)
    explicit_redirect = bool(os.environ.get("HUBSPOT_REDIRECT_URI", "").strip())
    if explicit_redirect:
        redirect_port = _redirect_port(env_config.redirect_uri)
        if port is not None and port != redirect_port:
            fail(f"--port {port} differs from the port of HUBSPOT_REDIRECT_URI "
                 f"{env_config.redirect_uri}", EXIT_USAGE)
        port = redirect_port
    port = port or DEFAULT_QUICKSTART_PORT
    redirect_uri = env_config.redirect_uri if explicit_redirect else \
        f"http://localhost:{port}/oauth-callback"
    if env_config.has_credentials:
        _run_with_hubspot(env_config, port, redirect_uri, as_json)
    else:
        _run_with_local_hubspot(env_config, port, hubspot_port, redirect_uri, as_json)


def quickstart_banner(url: str, hubspot_url: str, seed: Any, database_url: str,
                      app: _AppShown, config: ClientConfig, *, from_env: bool,
                      tokens_file: Path, sign_in: Sequence[tuple[str, str, str]]) -> list[str]:
    """What `quickstart` prints on the local HubSpot (the README shows it verbatim)."""
    optional = " ".join(config.optional_scopes) or "none"
    source = "HUBSPOT_OPTIONAL_SCOPES" if from_env else "the app's"
    scopes = f"{' '.join(config.scopes)}; optional {optional} ({source})"
    return [
        f"Quickstart      {url}   <- open this in your browser",
        *_hubspot_banner(hubspot_url, seed, database_url, app, scopes),
        f"Tokens are kept in {tokens_file}.",
        "No HubSpot credentials set, so the local HubSpot stands in for HubSpot "
        "(set HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET to use real HubSpot).",
        f"Open {url}, click \"Install the app\" and sign in as "
        f"{sign_in[0][0]} / {sign_in[0][1]}. Press Ctrl-C to stop.",
    ]


def _redirect_port(redirect_uri: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(redirect_uri)
    if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1"):
        fail(f"the quickstart serves its redirect URI itself, so HUBSPOT_REDIRECT_URI must "
             f"be http://localhost:PORT/…; got {redirect_uri}", EXIT_USAGE)
    return parts.port or 80


def command_name() -> str:
    """How the user can run this program again: ``hubspot-oauth`` when that is on PATH,
    else the path it was started by (``.venv/bin/hubspot-oauth`` under ``make run``)."""
    import shutil
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "hubspot-oauth" and os.sep in argv0:
        found = shutil.which("hubspot-oauth")
        if not found or os.path.realpath(found) != os.path.realpath(argv0):
            return argv0
    return "hubspot-oauth"


def _port_hint(redirect_uri: str, *, local: bool) -> str:
    # `make run` cannot pass --port: name the command that can.
    again = f"{command_name()} quickstart --port 8080"
    if local:
        return (f"; the quickstart serves {redirect_uri}: stop the other program (another "
                f"quickstart or `make run`?), or run this one on another port: {again}")
    return (f"; the quickstart must serve {redirect_uri}, the redirect URL registered on the "
            f"app: stop the other program, or run {again} with "
            "http://localhost:8080/oauth-callback registered on the app")


def _run_with_hubspot(config: ClientConfig, port: int, redirect_uri: str,
                      as_json: bool) -> None:
    _require_server_extra()
    from ..quickstart import QuickstartOptions, create_app

    config = ClientConfig.from_env(redirect_uri=redirect_uri)
    # Same default file as `login`: local-hubspot-tokens.db for a HUBSPOT_BASE_URL.
    config = ClientConfig.from_env(redirect_uri=redirect_uri,
                                   database_url=store_url(config, create_dir=True))
    endpoints = config.endpoints()
    _check_reachable(endpoints.api_url)
    sock = bind_port("127.0.0.1", port, "quickstart", _port_hint(redirect_uri, local=False))
    name = f"the HubSpot at {config.base_url}" if config.base_url else "HubSpot"
    app = create_app(config, options=QuickstartOptions(hubspot_name=name, access_log=True))
    url = f"http://localhost:{port}"
    if as_json:
        emit_json({"quickstart_url": url, "redirect_uri": redirect_uri,
                   "hubspot": endpoints.app_url, "scopes": list(config.scopes)})
    else:
        # "the HubSpot at URL" already names the URL; real HubSpot's is worth showing.
        talking_to = name if config.base_url else f"{name}: {endpoints.app_url}"
        click.echo(f"Quickstart      {url}   (talking to {talking_to})")
        click.echo(f"  redirect URI  {redirect_uri}  - must be a redirect URL of your app")
        click.echo(f"  scopes        {' '.join(config.scopes)}")
        click.echo(f"  tokens        {_display_url(config.default_database_url())}")
        click.echo(f"Open {url} and click \"Install the app\". Press Ctrl-C to stop.")
    serve_apps([_Served("quickstart", app, sock)])
    if not as_json:
        click.echo("Stopped the quickstart.")


def _run_with_local_hubspot(env_config: ClientConfig, port: int, hubspot_port: int,
                            redirect_uri: str, as_json: bool) -> None:
    _require_server_extra()
    from ..quickstart import QuickstartOptions, create_app
    from ..server import ServerSettings
    from ..server import create_app as create_hubspot_app

    hubspot_url = f"http://localhost:{hubspot_port}"
    # Bind both ports before starting anything: a taken port is one line, nothing half-up.
    qs_sock = bind_port("127.0.0.1", port, "quickstart", _port_hint(redirect_uri, local=True))
    try:
        hs_sock = bind_port("127.0.0.1", hubspot_port, "local HubSpot",
                            "; the quickstart runs the local HubSpot there: stop the other "
                            "program (a `hubspot-oauth server`, or another quickstart or "
                            "`make run`?)")
    except BaseException:
        qs_sock.close()
        raise
    try:
        settings = ServerSettings(
            database_url=_sqlite_in_data_dir(LOCAL_HUBSPOT_DB), host="127.0.0.1",
            public_url=hubspot_url,
        )
        hubspot_app = create_hubspot_app(settings)
        hubspot = hubspot_app.state.hubspot
        client_id, client_secret, app_shown = _local_app_credentials(
            hubspot, redirect_uri, port)
        seed_app = hubspot.seed.apps[0]
        tokens_db = _local_tokens_db(port, client_id == seed_app.client_id)
        # Unless HUBSPOT_OPTIONAL_SCOPES says otherwise, ask for the app's own optional
        # scopes: the local HubSpot's app configures them (the banner says so).
        config = ClientConfig.from_env(
            client_id=client_id, client_secret=client_secret, base_url=hubspot_url,
            redirect_uri=redirect_uri,
            optional_scopes=None if env_config.optional_scopes else list(
                app_shown.optional_scopes),
            database_url=_sqlite_in_data_dir(tokens_db),
        )
        sign_in = _sign_in_rows(hubspot.seed)
        with _quiet_key_file_notice():  # the local HubSpot's tokens are not precious
            app = create_app(config, options=QuickstartOptions(
                hubspot_name=f"the local HubSpot at {hubspot_url}", sign_in=sign_in,
                access_log=True))
    except BaseException:
        qs_sock.close()
        hs_sock.close()
        raise
    url = f"http://localhost:{port}"
    if as_json:
        emit_json({"quickstart_url": url, "hubspot_url": hubspot_url,
                   "redirect_uri": redirect_uri, "client_id": client_id,
                   "app": app_shown.name, "tokens": str(Path(data_dir()) / tokens_db),
                   "sign_in": [{"email": e, "password": p} for e, p, _ in sign_in],
                   "data_dir": str(data_dir())})
    else:
        for line in quickstart_banner(
            url, hubspot_url, hubspot.seed, _display_url(settings.resolved_database_url),
            app_shown, config, from_env=bool(env_config.optional_scopes),
            tokens_file=Path(data_dir()) / tokens_db, sign_in=sign_in,
        ):
            click.echo(line)
    serve_apps([_Served("local HubSpot", hubspot_app, hs_sock),
                _Served("quickstart", app, qs_sock)])
    if not as_json:
        click.echo("Stopped the quickstart and the local HubSpot.")

