"""The click group and its top-level error handling."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import click
from sqlalchemy import exc as sa_exc

from .. import __version__
from ..errors import HubSpotOAuthError
from .common import (
    DEBUG_KEY,
    EXIT_FAILED,
    CommandError,
    debug_enabled,
    describe,
    describe_os_error,
    exit_code_for,
    report,
)


class HubSpotOAuthGroup(click.Group):
    """Turns every expected error into one line and an exit code (never a traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            report(ctx, exc.format_message(), exc.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            raise click.exceptions.Exit(130) from None
        except HubSpotOAuthError as exc:
            if debug_enabled(ctx):
                raise
            report(ctx, describe(exc), exit_code_for(exc))
        except OSError as exc:
            if debug_enabled(ctx):
                raise
            report(ctx, describe_os_error(exc), EXIT_FAILED)
        except sa_exc.SQLAlchemyError as exc:
            if debug_enabled(ctx):
                raise
            cause = getattr(exc, "orig", None) or exc
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            report(ctx, f"database error ({type(cause).__name__}): {first}", EXIT_FAILED)
        except Exception as exc:
            if debug_enabled(ctx):
                raise
            report(
                ctx,
                f"unexpected {describe(exc)} (rerun with --debug for the traceback)",
                EXIT_FAILED,
            )


@click.group(
    cls=HubSpotOAuthGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example:\n\n\b\n  hubspot-oauth quickstart\n  hubspot-oauth login --no-browser"
    "\n  hubspot-oauth tokens list",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
@click.version_option(__version__, prog_name="hubspot-oauth")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """HubSpot OAuth 2.0 from the terminal: run the quickstart or a local HubSpot, connect
    HubSpot accounts and manage their stored tokens.

    Configuration comes from flags or the environment (HUBSPOT_CLIENT_ID,
    HUBSPOT_CLIENT_SECRET, HUBSPOT_REDIRECT_URI, HUBSPOT_SCOPES, HUBSPOT_BASE_URL,
    HUBSPOT_OAUTH_DATABASE_URL, …); flags win. Exit codes: 0 ok, 1 failed, 2 usage error.
    """
    ctx.meta[DEBUG_KEY] = debug
    if debug_enabled(ctx):
        logging.basicConfig(level=logging.DEBUG)
        return
    # Library warnings (e.g. a generated key file) as one line each, said once, even when
    # both `warnings` and `logging` carry them.
    shown: set[str] = set()

    def one_line(prefix: str, text: str) -> None:
        line = " ".join(str(text).split())
        if line not in shown:
            shown.add(line)
            click.echo(f"{prefix}: {line}", err=True)

    ctx.with_resource(warnings.catch_warnings())
    warnings.showwarning = lambda message, *_args, **_kw: one_line("Warning", str(message))
    handler = _OneLineHandler(one_line)
    library_log = logging.getLogger("hubspot_oauth")
    library_log.addHandler(handler)
    ctx.call_on_close(lambda: library_log.removeHandler(handler))


class _OneLineHandler(logging.Handler):
    def __init__(self, write: Any) -> None:
        super().__init__(logging.WARNING)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "Error" if record.levelno >= logging.ERROR else "Warning"
        self.write(prefix, record.getMessage())


def _register() -> None:
    from . import db, local, login, tokens

    cli.add_command(local.quickstart)
    cli.add_command(local.server)
    cli.add_command(login.login)
    cli.add_command(tokens.tokens)
    cli.add_command(db.db)


_register()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="hubspot-oauth")
