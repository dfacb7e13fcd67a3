"""The quickstart app (issue 4): HubSpot's Node.js OAuth quickstart, in Python.

`create_app(config)` returns a Starlette app built only on the public library API; the
`hubspot-oauth quickstart` command serves it, with the local HubSpot when no HubSpot
credentials are configured.
"""

from .app import QuickstartOptions, create_app, safe_return_path

__all__ = ["QuickstartOptions", "create_app", "safe_return_path"]
