"""The pytest plugin of hubspot-oauth (entry point ``pytest11``: ``hubspot_oauth``).

Fixtures:

* ``hubspot`` - a local HubSpot in-process, on its own SQLite database and clock, with a
  fresh app registered for the test (`hubspot_oauth.testing.LocalHubSpotHandle`).
* ``hubspot_server`` - the same server, also listening on a loopback port (``base_url`` is
  ``http://127.0.0.1:PORT``) for code that is not httpx-based. A test that asks for both
  gets one server: ``hubspot_server is hubspot``.
* ``hubspot_options`` - the keyword options given to `local_hubspot()`; by default those of
  ``@pytest.mark.hubspot(...)`` (the closest marker wins per option). Override it in a
  ``conftest.py`` to configure a whole directory.

Importing this module loads nothing of the server: a suite that never asks for these
fixtures pays nothing, and works without the ``server`` extra (the fixtures then fail with
``pip install 'hubspot-oauth[testing]'``). Disable the plugin with ``-p no:hubspot_oauth``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["hubspot", "hubspot_options", "hubspot_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hubspot(**options): options of the local HubSpot for the `hubspot` and "
        "`hubspot_server` fixtures (see hubspot_oauth.testing.local_hubspot).",
    )


@pytest.fixture
def hubspot_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Options for `local_hubspot()` from ``@pytest.mark.hubspot(**options)`` markers."""
    options: dict[str, Any] = {}
    # iter_markers yields the closest marker first; apply the farthest first.
    for marker in reversed(list(request.node.iter_markers("hubspot"))):
        if marker.args:
            pytest.fail(
                "@pytest.mark.hubspot takes keyword options only, "
                f"e.g. @pytest.mark.hubspot(access_token_ttl=60); got {marker.args!r}",
                pytrace=False,
            )
        options.update(marker.kwargs)
    return options


@pytest.fixture
def hubspot(hubspot_options: dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    """A local HubSpot in-process for this test (see `LocalHubSpotHandle`)."""
    from ..errors import ConfigurationError
    from .local import ServerExtraMissingError, local_hubspot

    options = dict(hubspot_options)
    options.setdefault("directory", tmp_path / "local-hubspot")
    with contextlib.ExitStack() as stack:
        try:
            handle = stack.enter_context(local_hubspot(**options))
        except ServerExtraMissingError as exc:
            message = str(exc)
        except ConfigurationError as exc:  # a bad option or seed file: the user's to fix
            message = f"local HubSpot: {exc}"
        else:
            yield handle
            return
    # Outside the except block: one clear line, no chain of import tracebacks.
    pytest.fail(message, pytrace=False)


@pytest.fixture
def hubspot_server(hubspot: Any) -> Any:
    """The test's local HubSpot on a real loopback port (``hubspot_server.base_url``)."""
    return hubspot.serve()
