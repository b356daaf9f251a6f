"""The one error table: documented, well-formed, and the only source of codes."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from epix.errors import ERROR_TABLE, EpixError, Finding, Severity, render_markdown
from tests.conftest import REPO_ROOT

CODE_PATTERN = re.compile(r"^EPIX-[A-Z]+-\d{3}$")
CODE_LITERAL = re.compile(r"""["'](EPIX-[A-Z]+-\d{3})["']""")


def test_docs_match_the_table() -> None:
    assert (REPO_ROOT / "docs" / "errors.md").read_text() == render_markdown()


def test_codes_are_well_formed_and_warnings_are_not_http_errors() -> None:
    for code, entry in ERROR_TABLE.items():
        assert CODE_PATTERN.match(code), code
        assert entry.meaning.endswith((".", ")")), code
        if entry.severity is Severity.WARNING:
            assert entry.http_status == 200, code


def test_every_code_in_the_source_is_in_the_table() -> None:
    """A code raised anywhere in epix/ that the table lacks fails here (and at runtime)."""
    unknown = set()
    for path in (REPO_ROOT / "epix").rglob("*.py"):
        for code in CODE_LITERAL.findall(path.read_text()):
            if code not in ERROR_TABLE:
                unknown.add((str(path.relative_to(REPO_ROOT)), code))
    assert not unknown


def test_unknown_code_cannot_be_raised() -> None:
    with pytest.raises(KeyError):
        Finding("EPIX-NOPE-001", "not a code")


def test_error_status_is_the_worst_error() -> None:
    error = EpixError([Finding("EPIX-CODE-101", "historic"), Finding("EPIX-XML-004", "big")])
    assert error.http_status == 413


def test_cli_prints_the_table() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "epix.cli", "errors"], capture_output=True, text=True, check=True
    ).stdout
    assert all(code in out for code in ERROR_TABLE)
