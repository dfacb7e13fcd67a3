"""What every command shares: configuration flags, `--json`, output, and error handling.

Exit codes: 0 success, 1 the operation failed, 2 a usage or configuration error (click's
own convention for usage errors). Errors are one line on stderr (and, with ``--json``, a
JSON object on stdout); a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from ..client.config import ClientConfig
from ..errors import ConfigurationError, HubSpotOAuthError, InvalidClientError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
JSON_KEY = "hubspot_oauth.json"
DEBUG_KEY = "hubspot_oauth.debug"
# Default token store files in the data directory: tokens of real HubSpot, and tokens of a
# local HubSpot (HUBSPOT_BASE_URL set, or the quickstart without credentials), kept apart
# so the two never mix.
TOKENS_DB = "tokens.db"
LOCAL_TOKENS_DB = "local-hubspot-tokens.db"
# The local HubSpot's own database (`server` and the quickstart without credentials).
LOCAL_HUBSPOT_DB = "local-hubspot.db"
SUPPORTED_DATABASES = ("sqlite:///path/tokens.db or postgresql+psycopg://user:password@host"
                       "/dbname")


class CommandError(click.ClickException):
    """An expected failure: one line on stderr, exit code 1 (or 2 for usage)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def fail(message: str, exit_code: int = EXIT_FAILED) -> NoReturn:
    raise CommandError(message, exit_code)


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[JSON_KEY] = bool(value)
    return value


def json_option(f: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        expose_value=True,
        is_eager=True,
        callback=_remember_json,
        help="Print machine-readable JSON on stdout instead of text.",
    )(f)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)


def console() -> Any:
    """A rich console on stdout (wide when not a terminal, so tables do not wrap)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False, soft_wrap=True)


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


_CLIENT_FLAGS = (
    ("--client-id", "client_id", "HUBSPOT_CLIENT_ID", "The app's client ID."),
    ("--client-secret", "client_secret", "HUBSPOT_CLIENT_SECRET",
     "The app's client secret (prefer the environment: flags show in `ps`)."),
    ("--redirect-uri", "redirect_uri", "HUBSPOT_REDIRECT_URI",
     "Registered redirect URI [default: http://localhost:3000/oauth-callback]."),
    ("--scopes", "scopes", "HUBSPOT_SCOPES",
     "Required scopes, space- or comma-separated [default: crm.objects.contacts.read]."),
    ("--optional-scopes", "optional_scopes", "HUBSPOT_OPTIONAL_SCOPES",
     "Optional scopes, dropped by HubSpot when the account lacks them."),
    ("--base-url", "base_url", "HUBSPOT_BASE_URL",
     "A local HubSpot serving the authorize page and the API (unset: real HubSpot)."),
    ("--api-version", "api_version", "HUBSPOT_API_VERSION",
     "Token API version: v3 (default), v1 or 2026-03."),
    ("--database-url", "database_url", "HUBSPOT_OAUTH_DATABASE_URL",
     "Token store URL, sqlite:///… or postgresql+psycopg://… [default: SQLite tokens.db in "
     "the data directory; local-hubspot-tokens.db when --base-url/HUBSPOT_BASE_URL is set]."),
)


def client_options(f: F) -> F:
    """The configuration flags of DESIGN §3; each falls back to its environment variable."""
    for flag, dest, env, text in reversed(_CLIENT_FLAGS):
        f = click.option(flag, dest, default=None, metavar="TEXT" if "url" not in dest
                         else "URL", help=f"{text} Env: {env}.")(f)
    return f


def build_config(**flags: Any) -> ClientConfig:
    """`ClientConfig.from_env` with the flags that were given (flags win)."""
    names = {dest for _flag, dest, _env, _text in _CLIENT_FLAGS}
    return ClientConfig.from_env(**{k: v for k, v in flags.items() if k in names})


def data_dir_path() -> Path:
    """The data directory `client.config.data_dir` names, without creating it (read-only
    commands must leave no trace on a machine that has no token store)."""
    configured = os.environ.get("HUBSPOT_OAUTH_DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("hubspot-oauth", appauthor=False))


def store_url(config: ClientConfig, *, create_dir: bool = False) -> str:
    """The token store URL: `--database-url`/HUBSPOT_OAUTH_DATABASE_URL, else tokens.db in
    the data directory, or local-hubspot-tokens.db when a local HubSpot is configured
    (HUBSPOT_BASE_URL): the quickstart on the local HubSpot keeps its tokens there too.
    Raises `CommandError` (exit 2) for a database this package cannot use."""
    if config.database_url:
        check_database_url(config.database_url)
        return config.database_url
    name = LOCAL_TOKENS_DB if config.base_url else TOKENS_DB
    if create_dir:
        from ..client.config import data_dir

        return f"sqlite:///{data_dir() / name}"
    return f"sqlite:///{data_dir_path() / name}"


def check_database_url(url: str) -> None:
    """Only SQLite and PostgreSQL through psycopg 3 are supported; say so in one line
    (exit 2) instead of a driver's ModuleNotFoundError."""
    import importlib.util

    import sqlalchemy as sa

    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        if url.strip() and "://" not in url:
            # A file path where a URL belongs (no credentials in it to hide): show the URL.
            fail(f"{url} is a file path, not a database URL: write "
                 f"sqlite:///{Path(url).expanduser().absolute()} (or use "
                 "postgresql+psycopg://user:password@host/dbname)", EXIT_USAGE)
        fail(f"malformed database URL; use {SUPPORTED_DATABASES}", EXIT_USAGE)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return
    if parsed.drivername not in ("postgresql", "postgresql+psycopg"):
        fail(f"unsupported database {shown}: hubspot-oauth supports only "
             f"{SUPPORTED_DATABASES}", EXIT_USAGE)
    if importlib.util.find_spec("psycopg") is None:
        fail(f"{shown} needs psycopg 3, which is not installed: "
             "pip install 'hubspot-oauth[postgres]'", EXIT_USAGE)


def shown_url(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).render_as_string(hide_password=True)


def humanize_seconds(seconds: float) -> str:
    """``29m 58s``, ``2h 03m``, ``expired``."""
    if seconds <= 0:
        return "expired"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def seconds_until(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment - datetime.now(UTC)).total_seconds()


def debug_enabled(ctx: click.Context | None) -> bool:
    if ctx is not None and ctx.meta.get(DEBUG_KEY):
        return True
    return os.environ.get("HUBSPOT_OAUTH_DEBUG", "").lower() in {"1", "true", "yes"}


def report(ctx: click.Context, message: str, exit_code: int) -> NoReturn:
    """Print one error line (and JSON with --json), then exit with `exit_code`."""
    message = " ".join(message.split())  # one line, whatever the exception said
    click.echo(f"Error: {message}", err=True)
    if ctx.meta.get(JSON_KEY):
        emit_json({"ok": False, "error": message, "exit_code": exit_code})
    raise click.exceptions.Exit(exit_code)


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, InvalidClientError):
        # HubSpot's words name the parameter, not where the CLI took it from.
        return (f"{text}; check the app's client ID and secret (--client-id/--client-secret "
                "or HUBSPOT_CLIENT_ID/HUBSPOT_CLIENT_SECRET)")
    if isinstance(exc, HubSpotOAuthError | OSError | ValueError):
        return text
    return f"{type(exc).__name__}: {text}"


def describe_os_error(exc: OSError) -> str:
    """`describe(exc)`, except that a failure to create the data directory (mkdir names the
    directory or the ancestor it could not make) names the directory and its setting."""
    folder = data_dir_path()
    failed = Path(os.fsdecode(exc.filename)) if exc.filename is not None else None
    if failed is None or (failed != folder and failed not in folder.parents):
        return describe(exc)
    setting = ("HUBSPOT_OAUTH_DATA_DIR" if os.environ.get("HUBSPOT_OAUTH_DATA_DIR", "").strip()
               else "set HUBSPOT_OAUTH_DATA_DIR to use another")
    return f"cannot create the data directory {folder} ({setting}): {exc.strerror or exc}"


def exit_code_for(exc: BaseException) -> int:
    return EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_FAILED
