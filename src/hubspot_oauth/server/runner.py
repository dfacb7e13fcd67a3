"""Running the local HubSpot on a real socket: `serve()` for the CLI (blocking, Ctrl-C stops
it cleanly) and `ServerThread` for tests and the quickstart (uvicorn in a thread)."""

from __future__ import annotations

import contextlib
import errno
import socket
import sys
import threading
import time
from typing import Any, TextIO

from ..errors import HubSpotOAuthError
from .settings import ServerSettings

__all__ = ["PortInUseError", "ServerThread", "banner", "bind_socket", "serve"]


class PortInUseError(HubSpotOAuthError, OSError):
    """The port is taken (or cannot be bound); the message names host and port."""


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one. Raises
    `PortInUseError` with a one-line message when the port is taken or not allowed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use by another program; stop it or "
                f"choose another port with --port") from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PortInUseError(f"not allowed to listen on {host}:{port} "
                                 f"(ports below 1024 need privileges)") from None
        raise PortInUseError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - shown as a reachable address
        shown = "127.0.0.1"
    return f"http://{shown}:{port}"


class ServerThread:
    """uvicorn serving `app` on a loopback socket in a background thread.

    ``with ServerThread(app, host="127.0.0.1", port=0) as server: server.base_url``.
    `start()`/`stop()` for longer lives. Raises `PortInUseError` from `start()`.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` (the bound port when 0 was asked for)."""
        return _base_url(self.host, self.port)

    def start(self) -> ServerThread:
        import uvicorn

        self._socket = bind_socket(self.host, self.port)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(self.app, log_level=self.log_level, lifespan="off",
                                access_log=False, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run,
                                         kwargs={"sockets": [self._socket]},
                                         name=f"local-hubspot-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60  # a loaded machine (CI) may take a while
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                why = ("did not start within 60 s" if self._thread.is_alive()
                       else "stopped while starting")
                self.stop()
                raise PortInUseError(f"the server on {self.base_url} {why}")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
            self._socket = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def banner(hubspot: Any, base_url: str) -> str:
    """What `serve` prints: where it runs, the apps' credentials, the users. Secrets are
    shown only for the default seed (HubSpot's public example values)."""
    seed = hubspot.seed
    lines = [f"Local HubSpot running at {base_url}",
             f"  authorize: {base_url}/oauth/authorize   token: {base_url}/oauth/v3/token"]
    for app in seed.apps:
        lines.append(f"  app {app.app_id} \"{app.name}\"")
        lines.append(f"    client_id      {app.client_id}")
        secret = app.client_secret if seed.is_default else f"(as in {seed.source})"
        lines.append(f"    client_secret  {secret}")
        lines.append(f"    redirect URLs  {', '.join(app.redirect_urls)}")
        lines.append(f"    scopes         {' '.join(app.scopes)}"
                     + (f"  (optional: {' '.join(app.optional_scopes)})"
                        if app.optional_scopes else ""))
    for portal in seed.portals:
        lacks = f", lacks {' '.join(portal.missing_scopes)}" if portal.missing_scopes else ""
        lines.append(f"  portal {portal.hub_id} {portal.hub_domain}{lacks}")
    for user in seed.users:
        password = f"password \"{user.password}\"" if seed.is_default else "password from seed"
        roles = ", ".join(f"{hub}: {role}" for hub, role in user.roles.items())
        lines.append(f"  user {user.email} ({password}; {roles})")
    settings = hubspot.settings
    lines.append(f"  refresh token rotation: {settings.refresh_token_rotation}; access "
                 f"tokens live {settings.access_token_ttl} s")
    if settings.auto_approve:
        lines.append(f"  auto-approve as {settings.auto_approve}")
    control = "on" if settings.control_api_enabled else "off"
    lines.append(f"  control API ({base_url}/_emulator/…): {control}")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def serve(settings: ServerSettings | None = None, host: str = "127.0.0.1", port: int = 8765,
          *, out: TextIO | None = None, log_level: str = "warning") -> None:
    """Run the local HubSpot until Ctrl-C (blocking). Prints `banner` to `out` (stdout).

    Raises `PortInUseError` before anything starts when the port is taken, and the
    errors of `create_app` (`DatabaseSchemaError`, `SeedError`, `ConfigurationError`).
    """
    import uvicorn

    from .app import create_app

    settings = (settings or ServerSettings()).replace(host=host)
    sock = bind_socket(host, port)
    try:
        port = sock.getsockname()[1]
        app = create_app(settings)
        base_url = settings.public_url or _base_url(host, port)
        print(banner(app.state.hubspot, base_url), file=out or sys.stdout, flush=True)
        config = uvicorn.Config(app, log_level=log_level, lifespan="off", access_log=False,
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
        app.state.hubspot.close()
    finally:
        with contextlib.suppress(OSError):
            sock.close()
