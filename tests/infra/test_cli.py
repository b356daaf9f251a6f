"""`epix --help` documents every command, and every command's own help works."""

from __future__ import annotations

import click
from click.testing import CliRunner

from epix.cli.main import cli

CONTRACT_COMMANDS = {
    "audit",
    "bench",
    "demo",
    "errors",
    "keys",
    "outbox",
    "registry",
    "serve",
    "sign",
    "users",
    "validate",
    "verify",
    "worker",
}


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        for name, child in command.commands.items():
            found += walk(child, (*path, name))
    return found


def test_every_contract_command_is_registered() -> None:
    assert set(cli.commands) >= CONTRACT_COMMANDS


def test_every_command_has_help_text() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for name in cli.commands:
        assert name in top.output
    for path in walk(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2
