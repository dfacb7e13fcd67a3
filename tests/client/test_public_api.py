"""The public surface: `hubspot_oauth.__all__` and what importing the package costs."""

from __future__ import annotations

import subprocess
import sys

import hubspot_oauth

SERVER_STACK = ("starlette", "uvicorn", "jinja2")


def test_all_is_sorted_and_every_name_resolves():
    assert hubspot_oauth.__all__ == sorted(hubspot_oauth.__all__)
    for name in hubspot_oauth.__all__:
        assert getattr(hubspot_oauth, name) is not None, name
    for name in (
        "OAuthClient",
        "AsyncOAuthClient",
        "Endpoints",
        "Token",
        "TokenStore",
        "StateStore",
        "HubSpotAuth",
    ):  # DESIGN §5: never renamed
        assert name in hubspot_oauth.__all__


def test_unknown_attribute_is_an_attribute_error():
    try:
        hubspot_oauth.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_library_never_imports_the_server_stack():
    """DESIGN §2: `import hubspot_oauth` (and using the client API) loads no Starlette,
    uvicorn or Jinja2; checked in a fresh interpreter."""
    code = (
        "import sys, hubspot_oauth\n"
        "from hubspot_oauth import OAuthClient, AsyncOAuthClient, StateStore, HubSpotAuth\n"
        "from hubspot_oauth import TokenStore, TokenInfo, ClientConfig\n"
        "c = OAuthClient(client_id='a', client_secret='b')\n"
        "c.authorization_url(state='s')\n"
        "StateStore().issue({})\n"
        f"print(','.join(m for m in {SERVER_STACK!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_store_errors_live_in_errors_and_are_exported():
    """The README names StoreUnavailableError and RefreshInProgressError: both importable
    from the package, from hubspot_oauth.errors and (as before) from client.store."""
    from hubspot_oauth import errors
    from hubspot_oauth.client import store

    for name in ("StoreUnavailableError", "RefreshInProgressError"):
        cls = getattr(errors, name)
        assert name in errors.__all__ and name in hubspot_oauth.__all__
        assert getattr(hubspot_oauth, name) is cls
        assert getattr(store, name) is cls
        assert issubclass(cls, errors.TokenStoreError)
        assert issubclass(cls, errors.RetryableError)
        assert name in errors.__doc__
