"""``epix``: the command line of an EPIX node. ``epix --help`` lists every command."""

from __future__ import annotations

import logging
import os
import re
from typing import Any

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from epix.errors import EpixError
from epix.permits.sapi_dates import ReferenceDataError
from epix.settings import ConfigurationError

# Set on the context once the command is known: what the command line says is a JSON line.
_JSON_LINES = "epix.json_lines"


def _database_problem(exc: SQLAlchemyError) -> str:
    """What went wrong with the database, naming EPIX_DATABASE_URL without its password."""
    from epix.db.trouble import driver_message
    from epix.settings import get_settings

    url = get_settings().effective_database_url  # a URL that parses (Settings._database_url)
    shown = make_url(url).render_as_string(hide_password=True)
    return f"The database {shown} cannot be used: {driver_message(exc, url)}"


class _InvalidConfiguration(click.ClickException):
    """An EPIX_* variable the node cannot use: a usage error (exit status 2), like a bad option."""

    exit_code = 2


class _Cli(click.Group):
    """Operational failures every command can meet (a database that cannot be reached or
    opened or that a newer version migrated, a file that cannot be read or written) end with a
    message and exit status 1, invalid EPIX_* settings (and a cut-off session key file) with
    one naming each variable (the file) and exit status 2, never a traceback; settings values
    are not echoed (they may be keys). EPIX_* variables that are no setting (typos) are
    reported on standard error before the command runs. For ``epix serve`` and ``epix worker``
    with EPIX_LOG_FORMAT=json those warnings and that message are JSON log lines, as everything
    else they write, the traceback of an exception nothing caught included."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if ctx.resilient_parsing:  # shell completion: nothing runs
            return name, command, rest
        from epix.cli.logs import NODE_LOG_COMMANDS, configure_command_logging, log_python_output
        from epix.settings import unknown_variables

        ctx.meta[_JSON_LINES] = name in NODE_LOG_COMMANDS and _log_format_is_json()
        if ctx.meta[_JSON_LINES]:
            # Until the command configures its logging: Python's warnings (else dropped) and
            # tracebacks are JSON lines too.
            configure_command_logging("WARNING", "json")
        elif name in NODE_LOG_COMMANDS:  # a traceback without the credentials, from the start
            log_python_output("text")
        for line in unknown_variables(os.environ):
            _say(ctx, logging.WARNING, line)
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return self._invoke_explained(ctx)
        except click.ClickException as exc:
            if not ctx.meta.get(_JSON_LINES):
                raise
            _say(ctx, logging.ERROR, exc.format_message())
            raise click.exceptions.Exit(exc.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C before the command handles SIGINT itself
            if not ctx.meta.get(_JSON_LINES):
                raise  # click says "Aborted!"
            _say(ctx, logging.ERROR, "Aborted: interrupted (SIGINT).")
            raise click.exceptions.Exit(1) from None  # as click's "Aborted!"

    def _invoke_explained(self, ctx: click.Context) -> Any:
        """Run the command, its known failures turned into one message each."""
        try:
            return super().invoke(ctx)
        except Exception as exc:
            problem = explained(exc)
            if problem is None:
                raise
            raise problem from None


def explained(exc: Exception) -> click.ClickException | None:
    """A known failure (invalid settings, a database that cannot be used, a file that cannot be
    read or written, a refusal) as its one message, never a traceback; None for any other."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"EPIX_{str(error['loc'][0]).upper()}: {error['msg']}" for error in exc.errors()
        )
        return _InvalidConfiguration(f"Invalid configuration: {problems}")
    if isinstance(exc, ConfigurationError):  # e.g. a cut-off session key file
        return _InvalidConfiguration(f"Invalid configuration: {exc}")
    if isinstance(exc, SettingsError):  # e.g. EPIX_PEER_API_KEYS that is not JSON
        named = re.search(r'field "(\w+)"', str(exc))
        variable = f"EPIX_{named.group(1).upper()}" if named else "an EPIX_* variable"
        return _InvalidConfiguration(
            f"Invalid configuration: {variable} cannot be parsed (JSON expected)"
        )
    if isinstance(exc, SQLAlchemyError):
        return click.ClickException(_database_problem(exc))
    if isinstance(exc, EpixError | ReferenceDataError):  # e.g. a newer database, a bad table
        return click.ClickException(str(exc))
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return click.ClickException(f"{exc.strerror or exc}{where}")
    return None


def _log_format_is_json() -> bool:
    """EPIX_LOG_FORMAT read alone, so that the refusal of another invalid setting is a JSON
    line too."""
    from epix.settings import LogFormatSetting

    try:
        return LogFormatSetting().log_format == "json"
    except ValidationError:
        return False  # EPIX_LOG_FORMAT itself is invalid: the command reports it, as text


def _say(ctx: click.Context, level: int, message: str) -> None:
    """A warning or error of the command line: a JSON line where the command's output is a
    JSON log, else ``Warning: ...`` / ``Error: ...`` on standard error."""
    if ctx.meta.get(_JSON_LINES):
        from epix.cli.logs import json_line

        click.echo(json_line(level, message), err=True)
    else:
        click.echo(f"{logging.getLevelName(level).capitalize()}: {message}", err=True)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="epix")
def cli() -> None:
    """EPIX: electronic permit information exchange for CITES.

    Configuration comes only from EPIX_* environment variables; README.md, section
    "Configuration", lists every one with its default.
    """


def _register() -> None:
    """Attach every command group; each lives in its own module under epix.cli."""
    from epix.cli import audit as audit_cmd
    from epix.cli import backup as backup_cmd
    from epix.cli import bench, errors_cmd, keys
    from epix.cli import demo as demo_cmd
    from epix.cli import report as report_cmd
    from epix.cli import serve as serve_cmd
    from epix.cli import users as users_cmd
    from epix.cli import validate as validate_cmd
    from epix.cli import worker as worker_cmd
    from epix.cli.registry import registry as registry_group
    from epix.cli.verify import verify as verify_command

    cli.add_command(errors_cmd.errors)
    cli.add_command(users_cmd.users)
    cli.add_command(audit_cmd.audit)
    cli.add_command(backup_cmd.backup)
    cli.add_command(bench.bench)
    cli.add_command(keys.keys)
    cli.add_command(keys.sign)
    cli.add_command(serve_cmd.serve)
    cli.add_command(demo_cmd.demo)
    cli.add_command(report_cmd.report)
    cli.add_command(validate_cmd.validate)
    cli.add_command(worker_cmd.worker)
    cli.add_command(worker_cmd.outbox_group)
    cli.add_command(registry_group)
    cli.add_command(verify_command)


_register()
