"""``epix``: the command line of an EPIX node. ``epix --help`` lists every command."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="epix")
def cli() -> None:
    """EPIX: electronic permit information exchange for CITES.

    Configuration comes only from EPIX_* environment variables (see README).
    """


def _register() -> None:
    """Attach every command group; each lives in its own module under epix.cli."""
    from epix.cli import audit as audit_cmd
    from epix.cli import bench, errors_cmd, keys
    from epix.cli import demo as demo_cmd
    from epix.cli import serve as serve_cmd
    from epix.cli import users as users_cmd
    from epix.cli import validate as validate_cmd
    from epix.cli import worker as worker_cmd
    from epix.cli.registry import registry as registry_group
    from epix.cli.verify import verify as verify_command

    cli.add_command(errors_cmd.errors)
    cli.add_command(users_cmd.users)
    cli.add_command(audit_cmd.audit)
    cli.add_command(bench.bench)
    cli.add_command(keys.keys)
    cli.add_command(keys.sign)
    cli.add_command(serve_cmd.serve)
    cli.add_command(demo_cmd.demo)
    cli.add_command(validate_cmd.validate)
    cli.add_command(worker_cmd.worker)
    cli.add_command(worker_cmd.outbox_group)
    cli.add_command(registry_group)
    cli.add_command(verify_command)


_register()
