"""The README documents every setting; docs that match the code."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import click

from epix.api.app import create_app
from epix.cli.main import cli
from epix.settings import Settings
from tests.conftest import REPO_ROOT
from tests.infra.test_cli import walk


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


def test_readme_counts_the_operations_the_fuzzer_covers() -> None:
    schema = create_app(Settings(data_dir=Path("/nonexistent"))).openapi()
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    count = sum(1 for item in schema["paths"].values() for method in item if method in methods)
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.findall(r"over all (\d+) operations", readme) == [str(count)]


def test_readme_command_table_names_every_command() -> None:
    """A command added to ``epix`` without a row (or a name in its group's row) fails here."""
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `epix ")]
    missing = [
        " ".join(path)
        for path in walk(cli)[1:]
        if not any(
            f"`epix {path[0]}" in row and re.search(rf"\b{re.escape(path[-1])}\b", row)
            for row in rows
        )
    ]
    assert missing == []


def _options(command: click.Command) -> set[str]:
    """Every option of ``command`` and, for a group, of its subcommands."""
    found = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    if isinstance(command, click.Group):
        for child in command.commands.values():
            found |= _options(child)
    return found


def test_readme_command_table_names_only_commands_and_options_that_exist() -> None:
    """The other way round: a row's command, subcommands and --options are all real."""
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    wrong = []
    for row in table.splitlines():
        if not row.startswith("| `epix "):
            continue
        usage = row.split("`")[1].split()
        command = cli.commands.get(usage[1])
        if command is None:
            wrong.append(usage[1])
            continue
        wrong += [
            f"{usage[1]} {option}"
            for option in re.findall(r"--[a-z][a-z-]*", " ".join(usage))
            if option not in _options(command)
        ]
        if isinstance(command, click.Group) and not usage[2].startswith("-"):
            wrong += [
                f"{usage[1]} {name}"
                for name in usage[2].split("\\|")
                if name.strip("[]") not in command.commands
            ]
    assert wrong == []


def _configuration_rows() -> dict[str, list[str]]:
    """README's configuration table: variable -> default cells (one per row naming it)."""
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`EPIX_"):
            rows.setdefault(cells[0].strip("`"), []).append(cells[1].strip("`"))
    return rows


def _as_documented(default: object) -> str:
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, dict):
        return json.dumps(default)
    return str(default)


def test_readme_gives_every_setting_its_default_once() -> None:
    """One row per setting, with the default the code has; no row for a setting that is gone."""
    rows = _configuration_rows()
    expected = {f"EPIX_{name.upper()}": field for name, field in Settings.model_fields.items()}
    assert sorted(rows) == sorted(expected)
    wrong = {}
    for variable, field in expected.items():
        default = field.get_default(call_default_factory=True)
        (documented,) = rows[variable]
        if default is None:
            ok = not any(ch.isdigit() for ch in documented)  # "—", "generated", ...
        else:
            ok = documented == _as_documented(default)
        if not ok:
            wrong[variable] = (documented, default)
    assert wrong == {}


def test_readme_links_into_the_docs_reach_a_heading() -> None:
    """A status row's "details" link names a section of docs/*.md that exists."""
    readme = (REPO_ROOT / "README.md").read_text()
    broken = []
    for path, anchor in re.findall(r"\]\((docs/[\w.-]+\.md)#([\w-]+)\)", readme):
        headings = re.findall(r"^#+ (.+)$", (REPO_ROOT / path).read_text(), re.MULTILINE)
        slugs = {re.sub(r"[^\w -]", "", h).strip().lower().replace(" ", "-") for h in headings}
        if anchor not in slugs:
            broken.append(f"{path}#{anchor}")
    assert broken == []


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:]:
                found = getattr(found, name)
        except AttributeError:
            return False
        return True
    return False


def test_code_the_docs_name_exists() -> None:
    """Every `epix.module.name` the docs mention imports, and every file path they name exists."""
    missing = []
    for doc in ("README.md", "docs/architecture.md", "schemas/README.md", "keys/README.md"):
        text = re.sub(r"```.*?```", "", (REPO_ROOT / doc).read_text(), flags=re.DOTALL)
        for quoted in re.findall(r"`([^`\n]+)`", text):
            dotted = re.match(r"epix(?:\.\w+)+", quoted)
            file_name = dotted and dotted[0].rsplit(".", 1)[1] in {"sqlite3", "js", "css"}
            if dotted and not file_name and not _resolves(dotted[0]):
                missing.append(f"{doc}: {dotted[0]}")
            path = re.fullmatch(r"((?:epix|tests|schemas|docs)/[\w./-]+)", quoted)
            named = (REPO_ROOT / path[1], (REPO_ROOT / doc).parent / path[1]) if path else ()
            if path and not any(candidate.exists() for candidate in named):
                missing.append(f"{doc}: {path[1]}")
    assert missing == []


def test_make_run_serves_on_the_port_the_readme_offers() -> None:
    """README: `make run PORT=8001` if port 8000 is taken (make -n only prints the commands)."""
    readme = " ".join((REPO_ROOT / "README.md").read_text().split())
    assert "`make run PORT=8001`" in readme
    make = shutil.which("make")
    assert make is not None
    printed = subprocess.run(
        [make, "--no-print-directory", "-n", "run", "PORT=8123"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Under `make test` this make is nested: its "Entering/Leaving directory" lines may come too.
    serve = [line for line in printed.splitlines() if "epix serve" in line]
    assert serve, printed
    assert serve[-1].endswith("epix serve --demo --port 8123"), printed
