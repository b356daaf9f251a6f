"""The README documents every setting; docs that match the code."""

from __future__ import annotations

from epix.settings import Settings
from tests.conftest import REPO_ROOT


def test_readme_documents_every_setting() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [
        f"EPIX_{name.upper()}"
        for name in Settings.model_fields
        if f"`EPIX_{name.upper()}`" not in readme
    ]
    assert missing == []


def test_readme_starts_with_the_two_commands() -> None:
    first_screen = (REPO_ROOT / "README.md").read_text().splitlines()[:8]
    assert any(line.startswith("make run") for line in first_screen)
    assert any(line.startswith("make test") for line in first_screen)
