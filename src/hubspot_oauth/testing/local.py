"""`local_hubspot()`: a local HubSpot for one test, in-process or on a loopback port.

Each call gets its own SQLite database (a copy of a template built once per process, so the
schema migrations and the seed's password hashing are paid once) and its own clock, and
registers a fresh app whose credentials only that test knows.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..endpoints import Endpoints
from ..errors import ConfigurationError
from ..scopes import split_scopes
from .transport import InProcessTransport

if TYPE_CHECKING:  # pragma: no cover
    from ..client.oauth import AsyncOAuthClient, OAuthClient
    from ..client.store import TokenStore
    from ..tokens import Token

__all__ = [
    "DEFAULT_OPTIONAL_SCOPES",
    "DEFAULT_PORTAL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "DEFAULT_USER",
    "IN_PROCESS_URL",
    "MISSING_EXTRA_MESSAGE",
    "LocalHubSpotHandle",
    "ServerExtraMissingError",
    "local_hubspot",
]

# The default seed (DESIGN §4): a super admin of both portals, the portal with every product.
DEFAULT_USER = "admin@example.com"
DEFAULT_PORTAL = 1234567
DEFAULT_REDIRECT_URI = "http://localhost:3000/oauth-callback"
DEFAULT_SCOPES: tuple[str, ...] = ("crm.objects.contacts.read",)
DEFAULT_OPTIONAL_SCOPES: tuple[str, ...] = ("crm.objects.contacts.write", "automation")

# In-process requests never leave the process; `.test` is reserved (RFC 2606), so code that
# forgets the transport fails to resolve instead of reaching some other local server.
IN_PROCESS_URL = "http://local-hubspot.test"

MISSING_EXTRA_MESSAGE = (
    "the local HubSpot needs the server extra (Starlette, uvicorn, Jinja2, argon2-cffi): "
    "pip install 'hubspot-oauth[testing]'"
)

# Options of `local_hubspot()` that describe the test's app rather than the server.
_APP_OPTIONS = ("scopes", "optional_scopes", "redirect_uri", "redirect_urls", "app_name")


class ServerExtraMissingError(ImportError):
    """The ``server`` extra (needed to run the local HubSpot) is not installed."""


# Top-level modules of the `server` extra (pyproject.toml).
_SERVER_EXTRA = frozenset({"starlette", "uvicorn", "jinja2", "argon2", "itsdangerous",
                           "multipart", "python_multipart"})


@contextlib.contextmanager
def _server_extra_required() -> Iterator[None]:
    """Turn "No module named starlette" (or another module of the extra) into
    `ServerExtraMissingError`; any other ImportError is a real bug and passes unchanged."""
    try:
        yield
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in _SERVER_EXTRA:
            raise
        raise ServerExtraMissingError(f"{MISSING_EXTRA_MESSAGE} (missing: {missing})") from exc


def _server_modules() -> tuple[Any, Any, Any]:
    """(ServerSettings, create_app, ServerThread), or `ServerExtraMissingError`."""
    with _server_extra_required():
        from ..server import ServerSettings, create_app
        from ..server.runner import ServerThread
    return ServerSettings, create_app, ServerThread


# -- the template database ---------------------------------------------------------------

_templates: dict[tuple[Any, ...], Path] = {}
_templates_lock = threading.Lock()
_template_root: Path | None = None


def _templates_folder() -> Path:
    """The process's folder of template databases (removed at exit); lock held by caller."""
    global _template_root
    if _template_root is None or not _template_root.exists():
        _template_root = Path(tempfile.mkdtemp(prefix="hubspot-oauth-templates-"))
        atexit.register(_remove_templates)
    return _template_root


def _remove_templates() -> None:
    if _template_root is not None:
        shutil.rmtree(_template_root, ignore_errors=True)


def _close_app(app: Any) -> None:
    """Release the app's database connections (so the SQLite file can be copied/removed)."""
    hubspot = getattr(app.state, "hubspot", None)
    for target in (hubspot, app):
        close = getattr(target, "close", None) or getattr(target, "dispose", None)
        if callable(close):
            close()
            return
    engine = getattr(hubspot, "engine", None)
    if engine is not None:
        engine.dispose()


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a closed SQLite database.

    A template is closed after it is built, so its WAL is checkpointed and gone and a plain
    file copy is consistent (and ten times faster than the backup API); if a WAL is left
    over, the SQLite backup API copies its content too."""
    wal = source.with_name(source.name + "-wal")
    if not wal.exists() or wal.stat().st_size == 0:
        shutil.copyfile(source, target)
        return
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _throwaway(engine: Any) -> None:
    """No fsync for a test's own SQLite files: they are thrown away after the test, so
    durability buys nothing and costs milliseconds per commit and checkpoint. Applies to
    the connections opened from now on (the pool is emptied)."""
    if engine.dialect.name != "sqlite":
        return
    from sqlalchemy import event

    def _no_sync(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")

    event.listen(engine, "connect", _no_sync)
    engine.dispose()


def _template_for(settings: Any, create_app: Any) -> Path:
    """A migrated and seeded SQLite file for these seed-relevant settings, built once."""
    seed = Path(settings.seed_file) if settings.seed_file else None
    # An edited seed file gets a new template.
    key = (str(seed), seed.stat().st_mtime_ns if seed and seed.exists() else None,
           settings.hublet)
    with _templates_lock:
        if key in _templates and _templates[key].exists():
            return _templates[key]
        path = _templates_folder() / f"template-{len(_templates)}.db"
        app = create_app(settings.replace(database_url=f"sqlite:///{path}"))
        _close_app(app)
        _templates[key] = path
        return path


def _store_template() -> Path:
    """An empty token-store SQLite file at the current schema revision, built once."""
    with _templates_lock:
        key = ("token-store",)
        if key in _templates and _templates[key].exists():
            return _templates[key]
        from cryptography.fernet import Fernet

        from ..client.store import TokenStore

        path = _templates_folder() / "token-store.db"
        TokenStore(f"sqlite:///{path}", encryption_keys=[Fernet.generate_key().decode()]).close()
        _templates[key] = path
        return path


# -- the handle ----------------------------------------------------------------------------


@dataclasses.dataclass
class _App:
    app_id: int
    client_id: str
    client_secret: str = dataclasses.field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    optional_scopes: tuple[str, ...]


class LocalHubSpotHandle:
    """One local HubSpot and the app registered on it for one test.

    **Attributes:**
    * `base_url` - where it answers: `IN_PROCESS_URL` (reached only through `transport`), or
      ``http://127.0.0.1:PORT`` after `serve()` (the `hubspot_server` fixture).
    * `endpoints` - `Endpoints.local(base_url)`.
    * `client_id`, `client_secret`, `app_id`, `redirect_uri`, `scopes`, `optional_scopes` -
      the fresh app registered for this test.
    * `transport` - an httpx transport for `httpx.Client` and `httpx.AsyncClient` that calls
      the server in-process (no socket).
    * `app` (the Starlette app), `server` (its `LocalHubSpot`), `settings`, `database_url`,
      `directory` (this instance's temporary folder).

    Times are seconds; datetimes are aware UTC.
    """

    def __init__(
        self,
        *,
        app: Any,
        settings: Any,
        registration: _App,
        directory: Path,
        server_thread_cls: Any,
    ) -> None:
        self.app = app
        self.server = app.state.hubspot
        self.settings = settings
        self.directory = directory
        self.database_url: str = settings.database_url
        self.transport = InProcessTransport(app)
        self.base_url = IN_PROCESS_URL
        self._registration = registration
        self._server_thread_cls = server_thread_cls
        self._thread: Any = None
        self._stores: list[Any] = []
        self._clients: list[Any] = []

    # -- the app registered for this test ----------------------------------------------

    @property
    def app_id(self) -> int:
        return self._registration.app_id

    @property
    def client_id(self) -> str:
        return self._registration.client_id

    @property
    def client_secret(self) -> str:
        return self._registration.client_secret

    @property
    def redirect_uri(self) -> str:
        return self._registration.redirect_uri

    @property
    def scopes(self) -> tuple[str, ...]:
        return self._registration.scopes

    @property
    def optional_scopes(self) -> tuple[str, ...]:
        return self._registration.optional_scopes

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints.local(self.base_url)

    @property
    def served(self) -> bool:
        """True once `serve()` put the server on a loopback port."""
        return self._thread is not None

    def __repr__(self) -> str:
        return f"<LocalHubSpotHandle {self.base_url} app_id={self.app_id}>"

    # -- control ------------------------------------------------------------------------

    def authorize(
        self,
        user: str = DEFAULT_USER,
        portal: int = DEFAULT_PORTAL,
        scopes: Sequence[str] | str | None = None,
        optional_scopes: Sequence[str] | str | None = None,
        *,
        redirect_uri: str | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        """Approve an install as `user` into `portal` (hub_id) with no browser; returns the
        authorization code the redirect URI would have received.

        `scopes`/`optional_scopes` default to the app's. The authorize pages' checks apply
        (reference §2.6): a refused install raises `hubspot_oauth.server.InstallError`.
        """
        return self.server.issue_code(
            client_id=self.client_id,
            redirect_uri=redirect_uri or self.redirect_uri,
            user_email=user,
            hub_id=portal,
            scopes=list(self.scopes if scopes is None else split_scopes(scopes)),
            optional_scopes=list(
                self.optional_scopes if optional_scopes is None else split_scopes(optional_scopes)
            ),
            code_challenge=code_challenge,
            code_challenge_method=code_challenge_method,
        )

    def now(self) -> datetime:
        """The server's current time (aware UTC)."""
        return self.server.clock.now()

    def advance(self, seconds: float) -> datetime:
        """Move the server's clock forward by `seconds` (negative: back). Codes, access
        tokens and rate-limit windows age with it, and so do the clients of `oauth_client()`
        and `token_store()`; clients you built yourself keep real time. Returns the new
        server time (aware UTC). Raises `ValueError` beyond 100 years."""
        self.server.clock.advance(seconds)
        return self.server.clock.now()

    def fail_next(self, endpoint: str, fault: str, times: int = 1, **options: Any) -> None:
        """Make the next `times` calls to `endpoint` fail with `fault` (DESIGN §4 control API).

        `endpoint`: ``"token"``, ``"introspect"``, ``"revoke"`` or ``"api"``. `fault`:
        ``"invalid_grant"``, ``"server_error"`` (500), ``"html_502"`` (a proxy's HTML page),
        ``"rate_limit"`` (429 with ``Retry-After``), ``"expired_authentication"`` (API only),
        ``"delay"`` (answers after ``delay_ms=…``). Faults queue in order. Raises
        `ConfigurationError` for a fault the endpoint does not have.
        """
        self.server.faults.add(endpoint=endpoint, fault=fault, times=times, **options)

    def uninstall(self, portal: int = DEFAULT_PORTAL) -> bool:
        """Uninstall this test's app from `portal` (hub_id), as a customer does in HubSpot:
        its refresh tokens then fail with ``BAD_REFRESH_TOKEN`` and its access tokens stop
        working. Returns False when the app was not installed there."""
        return bool(self.server.uninstall(app_id=self.app_id, hub_id=portal))

    def stats(self) -> dict[str, Any]:
        """Call counts by endpoint, grant type and outcome (``GET /_emulator/stats``)."""
        return self.server.stats()

    def refresh_count(self, outcome: str = "ok") -> int:
        """How many refresh-token grants ended with `outcome` (``"ok"`` or ``"error"``)."""
        return int(self.stats()["token"]["refresh_token"][outcome])

    # -- clients wired to this server -----------------------------------------------------

    def _client_kwargs(self, options: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "redirect_uri": self.redirect_uri,
            "scopes": list(self.scopes),
            "optional_scopes": list(self.optional_scopes),
            "endpoints": self.endpoints,
        }
        if not self.served:
            kwargs["transport"] = self.transport
        kwargs.update(options)
        return kwargs

    def oauth_client(self, *, follow_clock: bool = True, **options: Any) -> OAuthClient:
        """An `OAuthClient` for this test's app and server; keyword options override
        (e.g. ``endpoints=hubspot.endpoints.with_version("v1")``, ``retry=…``).

        With `follow_clock` (default) the client lives on the server's clock: the tokens
        it returns expire by `now()` (so `advance()` ages them for the client too) and its
        retry waits move the server's clock instead of sleeping.
        """
        from ..client.oauth import OAuthClient

        cls = _clock_following_client(OAuthClient) if follow_clock else OAuthClient
        client = cls(**self._client_kwargs(options))
        if follow_clock:
            client._hubspot_now = self.now
            # The retry loop waits through `_sleep` (no public hook yet); a test checks it.
            if hasattr(client, "_sleep"):
                client._sleep = self.advance
        self._clients.append(client)
        return client

    def async_oauth_client(self, *, follow_clock: bool = True, **options: Any) -> AsyncOAuthClient:
        """An `AsyncOAuthClient` for this test's app and server (see `oauth_client`)."""
        from ..client.oauth import AsyncOAuthClient

        cls = _clock_following_client(AsyncOAuthClient) if follow_clock else AsyncOAuthClient
        client = cls(**self._client_kwargs(options))
        if follow_clock:
            client._hubspot_now = self.now
            if hasattr(client, "_sleep"):

                async def simulated_sleep(seconds: float) -> None:
                    self.advance(seconds)

                client._sleep = simulated_sleep
        return client

    def token_store(self, *, follow_clock: bool = True, **options: Any) -> TokenStore:
        """A `TokenStore` on a fresh SQLite file in this instance's folder, with its own
        encryption key and an `oauth_client()`; keyword options override.

        With `follow_clock` (default) the store judges expiry by the server's clock, so
        after `advance()` it refreshes ahead of expiry as it would in production.
        """
        from cryptography.fernet import Fernet

        from ..client.store import TokenStore

        kwargs: dict[str, Any] = {"encryption_keys": [Fernet.generate_key().decode()]}
        if follow_clock:
            kwargs["clock"] = self.now
        kwargs.update(options)
        throwaway = kwargs.get("database_url") is None and kwargs.get("engine") is None
        if throwaway:
            path = self.directory / f"tokens-{len(self._stores)}.db"
            _copy_sqlite(_store_template(), path)  # the schema, without running migrations
            kwargs["database_url"] = f"sqlite:///{path}"
        if "client" not in kwargs:
            kwargs["client"] = self.oauth_client(follow_clock=follow_clock)
        store = TokenStore(**kwargs)
        if throwaway:
            _throwaway(store.engine)
        self._stores.append(store)
        return store

    def connect(
        self,
        store: TokenStore | None = None,
        *,
        user: str = DEFAULT_USER,
        portal: int = DEFAULT_PORTAL,
        key: str | None = None,
        **authorize_options: Any,
    ) -> Token:
        """Install the app (`authorize`) and exchange the code; save the token in `store`
        under `key` (default ``str(hub_id)``) when a store is given. Returns the `Token`."""
        code = self.authorize(user=user, portal=portal, **authorize_options)
        client = store.client if store is not None and hasattr(store, "client") else None
        token = (client or self.oauth_client()).exchange_code(code)
        if store is not None:
            store.save(token, key=key)
        return token

    def environ(self) -> dict[str, str]:
        """The settings of DESIGN §3 for this server and app (``HUBSPOT_CLIENT_ID``,
        ``HUBSPOT_CLIENT_SECRET``, ``HUBSPOT_REDIRECT_URI``, ``HUBSPOT_SCOPES``,
        ``HUBSPOT_OPTIONAL_SCOPES``, ``HUBSPOT_BASE_URL``), for a subprocess or for code that
        reads its configuration from the environment (`OAuthClient.from_env`). Meant for
        `serve()`d instances: other processes cannot reach the in-process one."""
        return {
            "HUBSPOT_CLIENT_ID": self.client_id,
            "HUBSPOT_CLIENT_SECRET": self.client_secret,
            "HUBSPOT_REDIRECT_URI": self.redirect_uri,
            "HUBSPOT_SCOPES": " ".join(self.scopes),
            "HUBSPOT_OPTIONAL_SCOPES": " ".join(self.optional_scopes),
            "HUBSPOT_BASE_URL": self.base_url,
        }

    def http_client(self, **options: Any) -> Any:
        """An `httpx.Client` with `base_url` set and, in-process, the transport."""
        import httpx

        kwargs: dict[str, Any] = {"base_url": self.base_url}
        if not self.served:
            kwargs["transport"] = self.transport
        kwargs.update(options)
        return httpx.Client(**kwargs)

    # -- lifetime -------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> LocalHubSpotHandle:
        """Also serve this server on a real loopback socket (uvicorn in a thread); `base_url`
        becomes ``http://HOST:PORT`` and the client helpers use the socket. Returns self."""
        if self._thread is None:
            thread = self._server_thread_cls(self.app, host=host, port=port)
            thread.__enter__()
            self._thread = thread
            self.base_url = thread.base_url
        return self

    def close(self) -> None:
        """Stop the socket server and the transport, release the databases."""
        for store in self._stores:
            with contextlib.suppress(Exception):
                (getattr(store, "close", None) or (lambda: None))()
        for client in self._clients:
            with contextlib.suppress(Exception):
                (getattr(client, "close", None) or (lambda: None))()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.__exit__(None, None, None)
        self.transport.shutdown()
        _close_app(self.app)


_following: dict[type, type] = {}


def _clock_following_client(base: type) -> type:
    """A subclass of `OAuthClient`/`AsyncOAuthClient` whose tokens expire by the local
    HubSpot's clock (``expires_at`` = server time at receipt + ``expires_in``)."""
    if base in _following:
        return _following[base]

    def anchor(self: Any, token: Token) -> Token:
        return token.replace(expires_at=self._hubspot_now() + timedelta(seconds=token.expires_in))

    if getattr(base, "exchange_code", None) and _is_async(base.exchange_code):

        async def exchange_code(self: Any, code: str, code_verifier: str | None = None) -> Any:
            return anchor(self, await base.exchange_code(self, code, code_verifier))

        async def refresh(self: Any, refresh_token: str) -> Any:
            return anchor(self, await base.refresh(self, refresh_token))

    else:

        def exchange_code(self: Any, code: str, code_verifier: str | None = None) -> Any:
            return anchor(self, base.exchange_code(self, code, code_verifier))

        def refresh(self: Any, refresh_token: str) -> Any:
            return anchor(self, base.refresh(self, refresh_token))

    exchange_code.__doc__ = base.exchange_code.__doc__
    refresh.__doc__ = base.refresh.__doc__
    cls = type(base.__name__, (base,), {
        "__module__": __name__,
        "__qualname__": base.__name__,
        "__doc__": f"{base.__name__} on the local HubSpot's clock (hubspot_oauth.testing).",
        "exchange_code": exchange_code,
        "refresh": refresh,
    })
    _following[base] = cls
    return cls


def _is_async(function: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(function)


@contextlib.contextmanager
def local_hubspot(
    *,
    serve: bool = False,
    directory: str | Path | None = None,
    scopes: Sequence[str] | str = DEFAULT_SCOPES,
    optional_scopes: Sequence[str] | str = DEFAULT_OPTIONAL_SCOPES,
    redirect_uri: str = DEFAULT_REDIRECT_URI,
    redirect_urls: Sequence[str] = (),
    app_name: str | None = None,
    **settings: Any,
) -> Iterator[LocalHubSpotHandle]:
    """A local HubSpot for one test, with a fresh app registered on it.

    **Parameters:**
    * `serve` - also listen on a loopback port (for requests, the official SDK, other
      processes); otherwise reach it through `handle.transport` only.
    * `directory` - where its SQLite database lives (default: a temporary folder, removed
      afterwards).
    * `scopes`, `optional_scopes`, `redirect_uri` (+ `redirect_urls`, more registered URLs),
      `app_name` - the app registered for this test (defaults: the seed app's scopes,
      ``http://localhost:3000/oauth-callback``).
    * any other keyword - a `ServerSettings` field (`refresh_token_rotation`,
      `access_token_ttl`, `rate_limit_max`, `seed_file`, `database_url` …). With an explicit
      `database_url` that database is used as it is.

    Yields a `LocalHubSpotHandle`. Raises `ServerExtraMissingError` (an ImportError naming
    ``pip install 'hubspot-oauth[testing]'``) when the server extra is missing, and
    `ConfigurationError` for an unknown option or a bad value (a `SeedError` for a bad seed).
    """
    server_settings_cls, create_app, server_thread_cls = _server_modules()
    with contextlib.ExitStack() as stack:
        if directory is None:
            folder = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="local-hubspot-", ignore_cleanup_errors=True)
            ))
        else:
            folder = Path(directory)
            folder.mkdir(parents=True, exist_ok=True)
        known = {f.name for f in dataclasses.fields(server_settings_cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigurationError(
                f"unknown local HubSpot option {unknown[0]!r}; use serve, directory, "
                f"{', '.join(_APP_OPTIONS)} or a ServerSettings field ({', '.join(sorted(known))})"
            )
        settings.setdefault("control_api", True)
        base = server_settings_cls(**settings)
        with _server_extra_required():  # argon2 and uvicorn are imported on first use
            throwaway = base.database_url is None
            if throwaway:
                database = folder / "local-hubspot.db"
                _copy_sqlite(_template_for(base, create_app), database)
                base = base.replace(database_url=f"sqlite:///{database}")
            app = create_app(base)
        stack.callback(_close_app, app)
        if throwaway:
            _throwaway(app.state.hubspot.engine)
        required = tuple(split_scopes(scopes))
        optional = tuple(split_scopes(optional_scopes))
        urls = [redirect_uri, *[u for u in redirect_urls if u != redirect_uri]]
        app_id, client_id, client_secret = app.state.hubspot.create_app_registration(
            name=app_name or f"Test app {uuid.uuid4().hex[:8]}",
            redirect_urls=urls,
            scopes=list(required),
            optional_scopes=list(optional),
        )
        handle = LocalHubSpotHandle(
            app=app,
            settings=base,
            registration=_App(app_id, client_id, client_secret, redirect_uri, required, optional),
            directory=folder,
            server_thread_cls=server_thread_cls,
        )
        stack.callback(handle.close)
        if serve:
            with _server_extra_required():
                handle.serve()
        yield handle
