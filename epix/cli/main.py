"""``epix``: the command line of an EPIX node. ``epix --help`` lists every command."""

from __future__ import annotations

import os
import re
from typing import Any

import click
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from epix.errors import EpixError


def _database_problem(exc: SQLAlchemyError) -> str:
    """What went wrong with the database, naming EPIX_DATABASE_URL without its password."""
    from epix.db.trouble import driver_message
    from epix.settings import get_settings

    url = get_settings().effective_database_url
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "EPIX_DATABASE_URL is not a SQLAlchemy URL (e.g. postgresql+psycopg://...)."
    shown = parsed.render_as_string(hide_password=True)
    return f"The database {shown} cannot be used: {driver_message(exc, url)}"


class _InvalidConfiguration(click.ClickException):
    """An EPIX_* variable the node cannot use: a usage error (exit status 2), like a bad option."""

    exit_code = 2


class _Cli(click.Group):
    """Operational failures every command can meet (a database that cannot be reached or
    opened or that a newer version migrated, a file that cannot be read or written) end with a
    message and exit status 1, invalid EPIX_* settings with one naming each variable and exit
    status 2, never a traceback; settings values are not echoed (they may be keys). EPIX_*
    variables that are no setting (typos) are reported on standard error before the command
    runs."""

    def invoke(self, ctx: click.Context) -> Any:
        from epix.settings import unknown_variables

        for line in unknown_variables(os.environ):
            click.echo(f"Warning: {line}", err=True)
        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            problems = "; ".join(
                f"EPIX_{str(error['loc'][0]).upper()}: {error['msg']}" for error in exc.errors()
            )
            raise _InvalidConfiguration(f"Invalid configuration: {problems}") from None
        except SettingsError as exc:  # e.g. EPIX_PEER_API_KEYS that is not JSON
            named = re.search(r'field "(\w+)"', str(exc))
            variable = f"EPIX_{named.group(1).upper()}" if named else "an EPIX_* variable"
            raise _InvalidConfiguration(
                f"Invalid configuration: {variable} cannot be parsed (JSON expected)"
            ) from None
        except SQLAlchemyError as exc:
            raise click.ClickException(_database_problem(exc)) from None
        except EpixError as refusal:  # e.g. a database migrated by a newer version
            raise click.ClickException(str(refusal)) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from None


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
