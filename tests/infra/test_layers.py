"""Imports go only downwards: faces → services → core; domain code never imports FastAPI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

EPIX = REPO_ROOT / "epix"
CORE = ("permits", "signatures", "xml")
CORE_MAY_IMPORT = ("epix.errors", "epix.xml", "epix.permits", "epix.signatures")
FACES = ("api", "web", "cli")
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "epix.api", "epix.web", "epix.cli")


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules_under(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (EPIX / package).rglob("*.py"))


@pytest.mark.parametrize("path", modules_under(*CORE), ids=lambda p: str(p.relative_to(EPIX)))
def test_core_imports_only_core(path: Path) -> None:
    bad = {
        name
        for name in imports_of(path)
        if name.startswith("epix") and not name.startswith(CORE_MAY_IMPORT)
    }
    assert bad == set()


def test_domain_code_does_not_import_the_web_layer() -> None:
    offenders = {}
    for path in EPIX.rglob("*.py"):
        relative = path.relative_to(EPIX)
        if relative.parts[0] in FACES:
            continue
        bad = {name for name in imports_of(path) if name.startswith(WEB_FRAMEWORKS)}
        if bad:
            offenders[str(relative)] = bad
    assert offenders == {}
