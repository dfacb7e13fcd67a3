"""The README as a fresh user follows it word for word: every control-API `curl` works as
written, the quickstart's banner is the one printed, the CLI session's failure has a step
that causes it, `make run` says it is installing, and the `testing` extra brings pytest."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _readme_curls() -> list[str]:
    """Every curl of the README that talks to the control API, as one command line."""
    inline = re.findall(r"`(curl [^`]+)`", README)
    console = re.findall(r"^\$ (curl (?:[^\n]*\\\n)*[^\n]*)$", README, re.MULTILINE)
    commands = [" ".join(c.replace("\\\n", " ").split()) for c in inline + console]
    return [c for c in commands if "/_emulator/" in c]


def test_the_readme_has_the_control_api_curls() -> None:
    curls = _readme_curls()
    assert any('{"advance": 1800}' in c for c in curls)
    assert any('{"reset": true}' in c for c in curls)
    assert any("/uninstall" in c for c in curls)


@pytest.mark.parametrize("command", _readme_curls())
def test_every_control_api_curl_in_the_readme_works(command: str) -> None:
    """Run as written against a real local HubSpot (only the host and the app id differ):
    a missing `Content-Type: application/json` would be 415."""
    if shutil.which("curl") is None:
        from tests.support.components import unavailable

        unavailable("curl", "no curl binary")
    from hubspot_oauth.testing import local_hubspot

    with local_hubspot(serve=True) as hubspot:
        hubspot.connect(portal=1234567)  # an install for the uninstall example to remove
        host = hubspot.base_url.removeprefix("http://")
        args = shlex.split(command, comments=True)
        args = [a.replace("http://localhost:8765", hubspot.base_url)
                 .replace("localhost:8765", host)
                 .replace("/installs/1/", f"/installs/{hubspot.app_id}/") for a in args]
        result = subprocess.run([*args, "-s", "-o", "/dev/null", "-w", "%{http_code}"],
                                capture_output=True, text=True, timeout=60)
    assert result.stdout == "200", (command, result.stdout, result.stderr)


def test_the_quickstart_banner_in_the_readme_is_the_real_one(tmp_path: Path) -> None:
    from hubspot_oauth import ClientConfig
    from hubspot_oauth.cli.local import (
        _local_app_credentials,
        _sign_in_rows,
        quickstart_banner,
    )
    from hubspot_oauth.server import ServerSettings, create_app

    sample = re.search(r"```text\n(Quickstart {6}http://localhost:3000.*?)```", README,
                       re.DOTALL)
    assert sample, "the README's banner sample is missing"
    app = create_app(ServerSettings(database_url=f"sqlite:///{tmp_path / 'local-hubspot.db'}",
                                    public_url="http://localhost:8765"))
    hubspot = app.state.hubspot
    try:
        client_id, secret, shown = _local_app_credentials(
            hubspot, "http://localhost:3000/oauth-callback", 3000)
        config = ClientConfig(client_id=client_id, client_secret=secret,
                              optional_scopes=shown.optional_scopes)
        lines = quickstart_banner(
            "http://localhost:3000", "http://localhost:8765", hubspot.seed,
            f"sqlite:///{tmp_path / 'local-hubspot.db'}", shown, config, from_env=False,
            tokens_file=tmp_path / "local-hubspot-tokens.db",
            sign_in=_sign_in_rows(hubspot.seed))
    finally:
        hubspot.close()
    printed = "\n".join(lines).replace(str(tmp_path), "/home/you/.local/share/hubspot-oauth")
    assert sample.group(1).strip() == printed


def test_the_cli_sessions_failure_has_a_step_that_causes_it() -> None:
    session = README[README.index("A session against the local HubSpot"):]
    session = session[:session.index("\n```\n", session.index("```console")) + 4]
    assert "1 refreshed, 1 failed" in session
    assert session.index("/uninstall") < session.index("1 refreshed, 1 failed")
    assert "source .venv/bin/activate" in session and "Stop `make run` first" in session


def test_make_run_says_it_is_installing(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        from tests.support.components import unavailable

        unavailable("make", "no make binary")
    dry = subprocess.run(["make", "-n", "run", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    said = next(i for i, line in enumerate(lines) if "Installing dependencies" in line)
    installs = next(i for i, line in enumerate(lines) if "install --quiet -e '.[server]'" in line)
    assert said < installs


def test_the_testing_extra_brings_pytest() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(re.match(r"pytest\b", requirement) for requirement in extras["testing"])
    assert "not on PyPI yet" in README and "pip install -e '/path/to/hubspot-oauth[testing]'" \
        in README
