"""``epix worker`` (deliver the outbox in its own process) and ``epix outbox`` (inspect, resend)."""

from __future__ import annotations

import json
import signal
import threading
from types import FrameType

import click

from epix.audit.service import AuditPolicy, configure_audit, record_event
from epix.cli.logs import configure_command_logging
from epix.db import Database
from epix.delivery import outbox
from epix.delivery.models import OutboxState
from epix.delivery.worker import default_worker
from epix.errors import EpixError
from epix.settings import get_settings


def _database() -> Database:
    settings = get_settings()
    configure_audit(AuditPolicy.for_node(settings))
    return Database(settings.effective_database_url)


@click.command()
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
def worker(once: bool) -> None:
    """Deliver outbox rows until stopped (SIGTERM/SIGINT let the deliveries in flight end).

    Run any number of these against one database (PostgreSQL in production); rows are
    claimed with leases, so a killed worker's rows are taken over when its lease expires.
    The database is migrated first, as by ``epix serve`` (processes take turns); one migrated
    by a newer EPIX is refused (EPIX-DB-001) rather than delivered from with older rules.
    """
    settings = get_settings()
    configure_command_logging(settings.log_level, settings.log_format)
    database = _database()
    # Before migrating: it reads the session key, which a refused configuration (a cut-off key
    # file) should stop the command at, as a short EPIX_SECRET_KEY does, changing nothing.
    delivery_worker = default_worker(database, settings)
    try:
        database.migrate()
        if once:
            while delivery_worker.run_once():
                pass
            return
        stop = threading.Event()

        def _stop(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        delivery_worker.run(stop)
    finally:
        delivery_worker.close()
        database.dispose()


@click.group(name="outbox")
def outbox_group() -> None:
    """Inspect the outbox and resend failed deliveries (node operator)."""


@outbox_group.command(name="list")
@click.option(
    "--state", type=click.Choice([s.value for s in OutboxState]), help="Only rows in this state."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="Most rows shown.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(state: str | None, limit: int, as_json: bool) -> None:
    """Newest rows first, with the reason a failed one gave up."""
    database = _database()
    try:
        with database.unit_of_work() as session:
            rows = outbox.list_rows(
                session, state=OutboxState(state) if state else None, limit=limit
            )
            for row in rows:
                item = {
                    "id": row.id,
                    "kind": row.kind,
                    "message_id": row.message_id,
                    "from": row.sender_party,
                    "to": row.destination_party,
                    "state": row.state,
                    "attempts": row.attempts,
                    "next_attempt_at": row.next_attempt_at.isoformat(),
                    "error": f"{row.last_error_code}: {row.last_error}"
                    if row.last_error_code
                    else None,
                }
                if as_json:
                    click.echo(json.dumps(item))
                else:
                    click.echo(
                        f"{row.id:>8} {row.state:<9} {row.kind:<13} {row.sender_party:>5}->"
                        f"{row.destination_party:<5} {row.message_id} attempts={row.attempts}"
                        + (f" {item['error']}" if item["error"] else "")
                    )
    finally:
        database.dispose()


@outbox_group.command(name="resend")
@click.argument("row_ids", nargs=-1, type=int, required=True)
def resend_command(row_ids: tuple[int, ...]) -> None:
    """Queue failed rows again with a fresh give-up age (audited as the node operator)."""
    settings = get_settings()
    database = _database()
    try:
        for row_id in row_ids:
            try:
                with database.unit_of_work() as session:
                    row = outbox.resend(
                        session, row_id, give_up_seconds=settings.outbox_give_up_seconds
                    )
                    record_event(
                        session,
                        action="outbox.resent",
                        outcome="ok",
                        party=row.sender_party or None,
                        message_id=row.message_id,
                        detail={"outbox_id": row.id, "via": "cli"},
                    )
            except EpixError as error:
                raise click.ClickException(str(error)) from error
            click.echo(f"{row_id} queued again")
    finally:
        database.dispose()
