"""`hubspot-oauth login`: the authorization-code flow from a terminal (issue 8).

It listens on the registered redirect URI itself (default
``http://localhost:3000/oauth-callback``), never on a random port: HubSpot compares the
redirect URI exactly, port included, and rejects the install otherwise (reference §2.4,
HubSpot/oauth-quickstart-python#3, case C2).
"""

from __future__ import annotations

import errno
import html
import socket
import threading
import time
import webbrowser
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from ..client.oauth import OAuthClient
from ..client.state import StateStore
from ..client.store import TokenStore
from ..errors import HubSpotOAuthError, StateError
from ..tokens import Token
from .common import (
    EXIT_USAGE,
    build_config,
    client_options,
    console,
    describe,
    emit_json,
    fail,
    json_option,
    store_url,
)

LOOPBACK_HOSTS = {"localhost": "127.0.0.1", "127.0.0.1": "127.0.0.1", "::1": "::1"}


@dataclass
class _Outcome:
    token: Token | None = None
    key: str | None = None
    error: str | None = None
    ignored: list[str] = field(default_factory=list)


class _CallbackServer(ThreadingHTTPServer):
    """Serves exactly one path, the redirect URI's.

    Each connection gets its own daemon thread with a socket timeout: a client that holds
    an idle connection (a browser's speculative preconnect) must not keep the real
    callback from being served, nor the command past its --timeout. Callbacks themselves
    are handled one at a time (state check, code exchange, save) under `callback_lock`.
    """

    # SO_REUSEADDR: a second login right after the first must not trip over the first
    # one's TIME_WAIT connections; Linux still refuses a port another socket listens on.
    allow_reuse_address = True
    daemon_threads = True  # an idle connection's thread never keeps the process alive

    def __init__(self, address: tuple[str, int], family: int, path: str, handle: Any,
                 is_done: Any = None) -> None:
        self.address_family = family
        self.callback_path = path
        self.handle_callback = handle
        self.is_done = is_done or (lambda: False)
        self.callback_lock = threading.Lock()
        self.closed = False  # the wait is over: later callbacks change nothing
        self.finished = threading.Event()  # the final page has been sent
        super().__init__(address, _CallbackHandler)

    def close_unless_done(self) -> bool:
        """At the deadline: True (and refuse later callbacks) unless a callback finished
        the login; waits for a callback being handled right now."""
        with self.callback_lock:
            if self.is_done():
                return False
            self.closed = True
            return True


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer
    server_version = "hubspot-oauth-login"
    timeout = 30  # seconds a connection may sit idle or half-sent (socket timeout)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        if parts.path != self.server.callback_path:
            self._page(404, "Not found", "This is hubspot-oauth login's redirect URI "
                       "listener; nothing else lives here.")
            return
        params = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        with self.server.callback_lock:
            if self.server.closed:
                status, title, text = (410, "Login over", "The login in the terminal has "
                                       "stopped waiting. Nothing was stored; run it again.")
                done = False
            else:
                status, title, text = self.server.handle_callback(params)
                done = self.server.is_done()
        try:
            self._page(status, title, text)
        finally:
            if done:
                self.server.finished.set()

    def _page(self, status: int, title: str, text: str) -> None:
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title>"
            "<body style='font:16px/1.5 system-ui,sans-serif;max-width:640px;margin:48px auto;"
            "padding:0 24px;color:#213343'>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request line carries the authorization code: never log it


def listen_address(redirect_uri: str) -> tuple[str, int, int, str]:
    """(bind host, port, address family, path) for a loopback http redirect URI.

    Raises `CommandError` (exit 2) for a redirect URI this command cannot listen on.
    """
    parts = urlsplit(redirect_uri)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host not in LOOPBACK_HOSTS:
        fail(
            f"login listens on the redirect URI itself, so it must be http on localhost "
            f"(e.g. http://localhost:3000/oauth-callback); got {redirect_uri}",
            EXIT_USAGE,
        )
    port = parts.port or 80
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    return LOOPBACK_HOSTS[host], port, family, parts.path or "/"


def open_listener(redirect_uri: str, handle: Any, is_done: Any = None) -> _CallbackServer:
    """Bind the redirect URI's port or fail with one line naming it (case C2).

    `handle(params) -> (status, title, text)` answers a callback; `is_done() -> bool` says
    whether the login has its outcome (then the waiting loop ends once the page is sent).
    """
    host, port, family, path = listen_address(redirect_uri)
    try:
        return _CallbackServer((host, port), family, path, handle, is_done)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"port {port} is already in use by another program, and login must listen "
                f"on the app's registered redirect URI {redirect_uri} (HubSpot rejects any "
                "other port): stop that program, or register another redirect URI and pass "
                "--redirect-uri"
            )
        fail(f"cannot listen on {redirect_uri} (port {port}): {exc.strerror or exc}")


@click.command(
    epilog="\b\nExamples:\n"
    "  hubspot-oauth login\n"
    "  hubspot-oauth login --no-browser --timeout 120\n"
    "  HUBSPOT_BASE_URL=http://localhost:8765 hubspot-oauth login --account-id 1234567",
)
@client_options
@click.option("--no-browser", is_flag=True, help="Print the install URL instead of opening it.")
@click.option("--timeout", type=click.IntRange(min=1, max=86400), default=300,
              show_default=True, help="Seconds to wait for the browser to come back.")
@click.option("--account-id", type=click.IntRange(min=1), default=None,
              help="Pin the install to one HubSpot account (hub_id).")
@click.option("--key", default=None, help="Store the connection under this key "
              "[default: the hub_id].")
@json_option
def login(no_browser: bool, timeout: int, account_id: int | None, key: str | None,
          as_json: bool, **flags: Any) -> None:
    """Connect a HubSpot account: open HubSpot's install page, wait for the redirect back,
    check the state, exchange the code and save the tokens in the token store.

    Listens on the registered redirect URI (default http://localhost:3000/oauth-callback),
    never on another port. Needs the app's HUBSPOT_CLIENT_ID and HUBSPOT_CLIENT_SECRET.
    Saves into tokens.db in the data directory, or local-hubspot-tokens.db (where the
    quickstart keeps its local connections) when HUBSPOT_BASE_URL names a local HubSpot.
    """
    config = build_config(**flags)
    config.require_credentials()
    database_url = store_url(config, create_dir=True)  # checked before anything listens
    client = OAuthClient.from_config(config)
    states = StateStore("memory://")
    store: TokenStore | None = None  # opened once the port is ours
    outcome = _Outcome()

    def handle(params: dict[str, str]) -> tuple[int, str, str]:
        if outcome.token is not None or outcome.error is not None:
            return 409, "Already done", "This login has finished; go back to the terminal."
        try:
            states.consume(params.get("state") or "")
        except StateError:
            outcome.ignored.append("a request with an unknown or reused state")
            return (400, "Not from this login",
                    "The state does not match the login running in the terminal. Nothing "
                    "was stored.")
        if params.get("error"):
            description = params.get("error_description") or ""
            outcome.error = f"HubSpot answered {params['error']}" + (
                f": {description}" if description else "")
            return 400, "Not connected", outcome.error + ". Nothing was stored."
        code = params.get("code")
        if not code:
            outcome.error = "HubSpot's redirect carried no authorization code"
            return 400, "Not connected", outcome.error + ". Nothing was stored."
        step = "the code exchange"
        try:
            token = client.exchange_code(code)
            step = "looking up the account (HubSpot's token introspection)"
            token = client.with_account_details(token)
            step = "saving the tokens"
            assert store is not None
            # Looked up just now: the store must not ask HubSpot again.
            outcome.key = store.save(token, key=key, describe=False)
            outcome.token = token
        except HubSpotOAuthError as exc:
            outcome.error = f"{step} failed: {describe(exc)}. Nothing was stored"
            return 502, "Not connected", outcome.error + "."
        return (200, "Connected",
                f"HubSpot account {token.hub_id} is connected. You can close this tab and go "
                "back to the terminal.")

    def is_done() -> bool:
        return outcome.token is not None or outcome.error is not None

    server = open_listener(config.redirect_uri, handle, is_done)
    try:
        store = TokenStore(database_url, client=client,
                           encryption_keys=list(config.encryption_keys) or None)
        nonce = states.issue({"purpose": "hubspot-oauth login"}, ttl=timeout + 60)
        url = client.authorization_url(state=nonce, account_id=account_id)
        out = click.get_text_stream("stderr") if as_json else None
        if no_browser:
            click.echo("Open this URL in a browser to connect a HubSpot account:", file=out)
            click.echo(f"  {url}", file=out)
        else:
            click.echo("Opening HubSpot in your browser. If it does not open, visit:", file=out)
            click.echo(f"  {url}", file=out)
            webbrowser.open(url)
        click.echo(f"Waiting up to {timeout} s for {config.redirect_uri} …", file=out)
        deadline = time.monotonic() + timeout
        # Each accepted connection is served in its own thread, so this loop keeps
        # accepting (and watching the deadline) whatever one connection does.
        while not server.finished.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if server.close_unless_done():
                    fail(f"timed out after {timeout} s: nobody completed the install in the "
                         f"browser (HubSpot never redirected to {config.redirect_uri}); run "
                         "`hubspot-oauth login` again")
                # A callback finished the login just now: let its page go out.
                server.finished.wait(5)
                break
            server.timeout = min(remaining, 0.5)
            server.handle_request()
    finally:
        server.server_close()
    if outcome.error:
        fail(outcome.error)
    assert outcome.token is not None and outcome.key is not None
    _print_connected(outcome.token, outcome.key, as_json)


def with_account_details(client: OAuthClient, token: Token) -> Token:
    """Kept for callers of earlier versions: `OAuthClient.with_account_details`, but
    `token` comes back unchanged when that lookup fails (`HubSpotOAuthError`)."""
    try:
        return client.with_account_details(token)
    except HubSpotOAuthError:
        return token


def _print_connected(token: Token, key: str, as_json: bool) -> None:
    hub_domain, user, scopes = token.hub_domain, token.user, list(token.scopes)
    data = {"key": key, "hub_id": token.hub_id, "hub_domain": hub_domain, "user": user,
            "scopes": scopes, "expires_at": token.expires_at}
    if as_json:
        emit_json(data)
        return
    out = console()
    out.print(f"[bold green]Connected[/] HubSpot account [bold]{token.hub_id}[/]"
              f" ({hub_domain or 'unknown domain'})")
    out.print(f"  user    {user or 'unknown'}")
    out.print(f"  scopes  {' '.join(scopes) or 'none reported'}")
    out.print(f"  key     {key}   (see it with: hubspot-oauth tokens show {key})")
