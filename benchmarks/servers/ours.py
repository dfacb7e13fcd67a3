"""hubspot-oauth's local HubSpot for the benchmarks, as a uvicorn factory:

    uvicorn --factory benchmarks.servers.ours:app  (env BENCH_DATABASE_URL, BENCH_API_AUTH)

The same `create_app(ServerSettings(...))` a user runs, with two benchmark settings: the
API rate limit raised out of the way (its bookkeeping still runs on every call), and, for
the no-auth baseline only, `api_auth=False`.
"""

from __future__ import annotations

import os


def settings():
    from hubspot_oauth.server import ServerSettings

    options: dict = {
        "database_url": os.environ["BENCH_DATABASE_URL"],
        "rate_limit_max": 1_000_000_000,
        "control_api": True,
    }
    if os.environ.get("BENCH_API_AUTH") == "off":
        options["api_auth"] = False
    return ServerSettings(**options)


def app():
    from hubspot_oauth.server import create_app

    return create_app(settings())
