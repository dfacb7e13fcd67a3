"""A test kit: the local HubSpot inside your own tests, in-process and fast.

With pytest (the plugin is registered through the ``pytest11`` entry point once
``hubspot-oauth[testing]`` is installed), ask for the fixtures::

    def test_refresh(hubspot):
        store = hubspot.token_store()
        key = store.save(hubspot.oauth_client().exchange_code(hubspot.authorize()))
        hubspot.advance(1800)                      # the access token is now expired
        ...

``hubspot`` runs in-process (reach it through ``hubspot.transport`` or the client helpers);
``hubspot_server`` is the same server on a loopback port, for ``requests``, the official
SDK or subprocesses. Configure either with ``@pytest.mark.hubspot(**options)`` (see
`local_hubspot` for the options).

With any other runner::

    from hubspot_oauth.testing import local_hubspot

    with local_hubspot() as hubspot:
        code = hubspot.authorize(user="admin@example.com", portal=1234567)

Importing this package is cheap: the server stack loads on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_OPTIONAL_SCOPES",
    "DEFAULT_PORTAL",
    "DEFAULT_REDIRECT_URI",
    "DEFAULT_SCOPES",
    "DEFAULT_USER",
    "IN_PROCESS_URL",
    "InProcessTransport",
    "LocalHubSpotHandle",
    "MISSING_EXTRA_MESSAGE",
    "ServerExtraMissingError",
    "local_hubspot",
]

_LAZY = {name: ".local" for name in __all__}
_LAZY["InProcessTransport"] = ".transport"

if TYPE_CHECKING:  # pragma: no cover
    from .local import (
        DEFAULT_OPTIONAL_SCOPES,
        DEFAULT_PORTAL,
        DEFAULT_REDIRECT_URI,
        DEFAULT_SCOPES,
        DEFAULT_USER,
        IN_PROCESS_URL,
        MISSING_EXTRA_MESSAGE,
        LocalHubSpotHandle,
        ServerExtraMissingError,
        local_hubspot,
    )
    from .transport import InProcessTransport


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hubspot_oauth.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
