"""The local HubSpot: a HubSpot-compatible OAuth 2.0 server (DESIGN §4).

    from hubspot_oauth.server import ServerSettings, create_app
    app = create_app(ServerSettings(database_url="sqlite:///hubspot.db"))
    hubspot = app.state.hubspot            # LocalHubSpot: clock, faults, stats, codes …

    from hubspot_oauth.server import serve, ServerThread
    serve(ServerSettings(), host="127.0.0.1", port=8765)   # blocking; PortInUseError

Needs the ``server`` extra (Starlette, uvicorn, Jinja2, argon2-cffi).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .install import InstallError
from .seed import SeedError, default_seed, load_seed
from .settings import ServerSettings
from .storage import DatabaseSchemaError, upgrade

if TYPE_CHECKING:
    from .app import create_app
    from .hubspot import LocalHubSpot
    from .runner import PortInUseError, ServerThread, serve

__all__ = [
    "DatabaseSchemaError",
    "InstallError",
    "LocalHubSpot",
    "PortInUseError",
    "SeedError",
    "ServerSettings",
    "ServerThread",
    "create_app",
    "default_seed",
    "load_seed",
    "serve",
    "upgrade",
]

_LAZY = {
    "create_app": "app",
    "LocalHubSpot": "hubspot",
    "PortInUseError": "runner",
    "ServerThread": "runner",
    "serve": "runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
