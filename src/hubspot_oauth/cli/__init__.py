"""The `hubspot-oauth` command line: quickstart, local HubSpot, login, tokens, db.

Entry point `hubspot_oauth.cli:main` (pyproject ``[project.scripts]``). Every command takes
``--help`` (with an example) and ``--json``; configuration comes from flags or the
environment (flags win, `ClientConfig.from_env`); exit codes are 0 success, 1 operation
failed, 2 usage error; errors are one line, never a traceback (``--debug`` shows it).
"""

from .main import cli, main

__all__ = ["cli", "main"]
