"""The README's example tests are real tests: every fenced block marked ```` ```python test ````
in README.md is written into a fresh project and run by pytest with the installed plugin,
so the documentation cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[2] / "README.md"

# ```python test name=expiry_mid_job  ...  ```
_BLOCK = re.compile(
    r"^```python[ \t]+test(?P<options>[^\n]*)\n(?P<body>.*?)^```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)

# The examples the "Testing your integration" section promises (issue 9).
REQUIRED = {"expiry_mid_job", "uninstall_reauthorization", "rate_limit_retry_after",
            "outage_during_refresh"}


def readme_examples(text: str) -> dict[str, str]:
    """name -> source of every ```python test block (name from ``name=…``, else its index)."""
    found: dict[str, str] = {}
    for index, match in enumerate(_BLOCK.finditer(text)):
        options = dict(re.findall(r"(\w+)=(\S+)", match.group("options")))
        name = options.get("name", f"example_{index}")
        if name in found:
            raise AssertionError(f"README.md has two example tests named {name!r}")
        found[name] = match.group("body")
    return found


EXAMPLES = readme_examples(README.read_text(encoding="utf-8"))


def test_parser_reads_named_blocks_only() -> None:
    text = (
        "```python\nprint('not a test')\n```\n"
        "```python test name=one\ndef test_one():\n    pass\n```\n"
        "```python test\ndef test_two():\n    pass\n```\n"
    )
    assert readme_examples(text) == {
        "one": "def test_one():\n    pass\n",
        "example_1": "def test_two():\n    pass\n",
    }


def test_readme_has_every_promised_example() -> None:
    missing = REQUIRED - set(EXAMPLES)
    assert not missing, f"README.md lacks the example test(s) {sorted(missing)}"


def test_readme_examples_pass(pytester: pytest.Pytester) -> None:
    """All examples in one pytest run (one interpreter start), each in its own file, with
    warnings as errors as strict user suites run; every test of every example must pass."""
    expected: dict[str, list[str]] = {}
    for name, source in EXAMPLES.items():
        tests = re.findall(r"^(?:async )?def (test_\w+)", source, re.MULTILINE)
        assert tests, f"README example {name!r} defines no test function"
        expected[name] = tests
        pytester.makepyfile(**{f"test_{name}": source})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", "-rA",
                                           timeout=300)
    output = result.stdout.str()
    failing = [
        f"{name}::{test}"
        for name, tests in expected.items()
        for test in tests
        if f"PASSED test_{name}.py::{test}" not in output
    ]
    assert not failing, f"README example tests that did not pass: {failing}"
    result.assert_outcomes(passed=sum(len(t) for t in expected.values()))
