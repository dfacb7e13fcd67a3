"""Helpers for the test kit's own tests: run a user's test files through the installed
plugin (a fresh `python -m pytest` process, so the `pytest11` entry point is what loads it)."""

from __future__ import annotations

import pytest


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester):
    """Write `files` (name -> source) as a user's project and run pytest on it.

    Returns pytester's `RunResult`. The plugin comes from the installed entry point; no
    ``-p`` option, no conftest of ours.
    """

    def run(files: dict[str, str], *args: str, timeout: float = 180):
        pytester.makepyfile(**files)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=timeout)

    return run
