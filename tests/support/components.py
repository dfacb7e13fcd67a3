"""Optional test components (PostgreSQL, Chromium): skip when missing, fail under CI=true."""

from __future__ import annotations

import glob
import os
import shutil
import socket

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(component: str, reason: str) -> None:
    """Skip the test with a visible reason; under CI=true a missing component fails it."""
    message = f"{component} unavailable: {reason}"
    if IN_CI:
        pytest.fail(message + " (CI=true: required)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    """Path of a PostgreSQL server program (initdb, pg_ctl, postgres), or None."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def chromium_path() -> str | None:
    """Debian's Chromium, driven by Playwright through `executable_path`."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
