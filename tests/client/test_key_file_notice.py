"""The generated-key-file notice reaches a plain console once (a fresh user's report: the
library printed it twice, once as a log record and once as a `KeyFileWarning`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_key_file_notice_is_printed_once(tmp_path: Path) -> None:
    code = (
        "from hubspot_oauth import TokenStore\n"
        f"TokenStore('sqlite:///{tmp_path / 'tokens.db'}').close()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HUBSPOT_OAUTH_ENCRYPTION_KEYS"}
    env["HUBSPOT_OAUTH_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tokens.db.key").exists()
    assert result.stderr.count("no encryption key configured") == 1, result.stderr
