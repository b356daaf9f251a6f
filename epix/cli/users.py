"""``epix users``: create, list, disable/enable/remove people; issue and revoke API keys.

Every change is audited; the acting operator is recorded as ``CLI`` with the OS user name.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import AuditPolicy, configure_audit
from epix.auth import service
from epix.auth.principal import Role
from epix.db import Database
from epix.db.base import ROW_ID_MAX
from epix.errors import EpixError
from epix.settings import get_settings


def cli_context(command: str) -> RequestContext:
    """How a command-line action appears in the audit trail: who ran what, locally."""
    return RequestContext(
        method="CLI", path=command, remote_addr=f"local:{getpass.getuser()}", headers={}
    )


@contextmanager
def cli_database() -> Iterator[Database]:
    """A migrated database, for a command that commits in several units of work or reads on a
    snapshot (``epix audit purge``, ``epix report``); refusals print their code and exit 1."""
    settings = get_settings()
    configure_audit(AuditPolicy.for_node(settings))
    database = Database(settings.effective_database_url)
    try:
        database.migrate()
        yield database
    except EpixError as refusal:
        for finding in refusal.findings:
            location = f" ({finding.location})" if finding.location else ""
            click.echo(f"{finding.code}: {finding.message}{location}", err=True)
        sys.exit(1)
    finally:
        database.dispose()


@contextmanager
def cli_session() -> Iterator[Session]:
    """One unit of work on the node's database (``cli_database``), committed at the end."""
    with cli_database() as database, database.unit_of_work() as session:
        yield session


@click.group()
def users() -> None:
    """People of the node: each belongs to one Party and authority and has roles.

    Run by the operator, with shell access: any Party's users, on a hub or a Party node (such as
    a peer node's account); over the API a Party node's admins manage only its own Party's."""


@users.command("create")
@click.argument("username")
@click.option("--party", required=True, help="ISO 3166 alpha-2 code, or CITES (Secretariat).")
@click.option("--authority", required=True, help="Name of the user's authority.")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="Repeat for several roles.",
)
@click.option("--full-name", default=None, help="The person's name as shown to others.")
@click.option("--password-stdin", is_flag=True, help="Read a web login password from stdin.")
def create(
    username: str,
    party: str,
    authority: str,
    roles: tuple[str, ...],
    full_name: str | None,
    password_stdin: bool,
) -> None:
    """Create a user (with a password for the web pages if --password-stdin)."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    with cli_database() as database:
        hashed = service.hash_password(password) if password is not None else None
        with database.unit_of_work() as session:
            user = service.create_user(
                session,
                username=username,
                party=party,
                authority=authority,
                roles=[Role(role) for role in roles],
                password=hashed,
                full_name=full_name,
                request=cli_context("epix users create"),
            )
            click.echo(f"created user {user.username} (id {user.id}) of {user.party}")


@users.command("list")
@click.option("--party", default=None, help="Only users of this Party.")
def list_(party: str | None) -> None:
    """List users: name, Party, authority, roles, state."""
    with cli_session() as session:
        for user in service.list_users(session, party=party.upper() if party else None):
            state = "removed" if user.removed_at else "disabled" if user.disabled_at else "active"
            click.echo(f"{user.username}\t{user.party}\t{user.authority}\t{user.roles}\t{state}")


@users.command("disable")
@click.argument("username")
@click.option(
    "--reason", default=None, help="Why, for the audit trail and the Secretariat's notice."
)
def disable(username: str, reason: str | None) -> None:
    """Disable a user (keys and sessions stop working); the Secretariat is notified."""
    with cli_session() as session:
        user = service.get_user(session, username)
        changed = service.disable_user(
            session, user, reason=reason, request=cli_context("epix users disable")
        )
    if changed:
        click.echo(f"disabled {username}; the Secretariat was notified")
    else:
        click.echo(f"{username} was disabled already; nothing changed, nobody notified")


@users.command("enable")
@click.argument("username")
def enable(username: str) -> None:
    """Enable a disabled user again."""
    with cli_session() as session:
        user = service.get_user(session, username)
        service.enable_user(session, user, request=cli_context("epix users enable"))
    click.echo(f"enabled {username}")


@users.command("remove")
@click.argument("username")
@click.option(
    "--reason", default=None, help="Why, for the audit trail and the Secretariat's notice."
)
def remove(username: str, reason: str | None) -> None:
    """Remove a user for good (kept for the audit trail); the Secretariat is notified."""
    with cli_session() as session:
        user = service.get_user(session, username)
        changed = service.remove_user(
            session, user, reason=reason, request=cli_context("epix users remove")
        )
    if changed:
        click.echo(f"removed {username}; the Secretariat was notified")
    else:
        click.echo(f"{username} was removed already; nothing changed, nobody notified")


@users.command("set-password")
@click.argument("username")
def set_password(username: str) -> None:
    """Set a user's web password, read from stdin (ends their web sessions)."""
    password = sys.stdin.readline().rstrip("\r\n")
    with cli_database() as database:
        hashed = service.hash_password(password)
        with database.unit_of_work() as session:
            user = service.get_user(session, username)
            service.set_password(
                session, user, hashed, request=cli_context("epix users set-password")
            )
    click.echo(f"password set for {username}")


@users.command("issue-key")
@click.argument("username")
@click.option(
    "--expires-days",
    type=click.IntRange(1, 3650),
    default=None,
    help="Days until the key stops working (default: it does not expire).",
)
@click.option("--label", default=None, help="What system will use the key.")
def issue_key(username: str, expires_days: int | None, label: str | None) -> None:
    """Issue an API key; it is printed once on stdout and only its hash is kept."""
    with cli_session() as session:
        user = service.get_user(session, username)
        key, raw_key = service.issue_api_key(
            session,
            user,
            expires_at=service.expiry_in_days(expires_days),
            label=label,
            request=cli_context("epix users issue-key"),
        )
        key_id = key.id
    click.echo(f"API key {key_id} for {username} (shown once, store it now):", err=True)
    click.echo(raw_key)


@users.command("keys")
@click.argument("username")
def keys(username: str) -> None:
    """List a user's API keys (id, prefix, label, expiry, revocation), never the keys."""
    with cli_session() as session:
        user = service.get_user(session, username)
        for key in service.list_api_keys(session, user):
            click.echo(
                f"{key.id}\t{key.prefix}\t{key.label or '-'}\t"
                f"expires={key.expires_at.isoformat() if key.expires_at else 'never'}\t"
                f"revoked={key.revoked_at.isoformat() if key.revoked_at else 'no'}"
            )


@users.command("revoke-key")
@click.argument("key_id", type=click.IntRange(1, ROW_ID_MAX))
def revoke_key(key_id: int) -> None:
    """Revoke an API key by id (see ``epix users keys``)."""
    with cli_session() as session:
        service.revoke_api_key(session, key_id, request=cli_context("epix users revoke-key"))
    click.echo(f"revoked API key {key_id}")
