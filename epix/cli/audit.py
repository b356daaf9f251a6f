"""``epix audit``: verify the chain, sign checkpoints, export for investigators, purge."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from epix.audit.checkpoints import create_checkpoint, sign_pending_checkpoints
from epix.audit.export import verify_export, write_export
from epix.audit.retention import purge as purge_events
from epix.audit.signing import CheckpointSigner, certificate_fingerprint, node_checkpoint_signer
from epix.audit.verify import verify_chain
from epix.cli.users import cli_database, cli_session
from epix.db.base import utcnow
from epix.db.engine import is_set_up, without_idle_in_transaction_timeout
from epix.settings import get_settings

_DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f"]


def _node_signer() -> CheckpointSigner:
    return node_checkpoint_signer(get_settings())


def _require_trail() -> None:
    """The audit commands work on a node's existing trail: a mistyped EPIX_DATA_DIR must not
    create an empty database (and a node key) and then call its trail intact."""
    url = get_settings().effective_database_url
    if not is_set_up(url):
        shown = make_url(url).render_as_string(hide_password=True)
        raise click.ClickException(
            f"There is no EPIX database at {shown}; point EPIX_DATA_DIR or EPIX_DATABASE_URL "
            "at the node's."
        )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _fingerprints(paths: tuple[Path, ...]) -> list[str]:
    """The SHA-256 fingerprints of the --trust-cert files, each a PEM certificate."""
    fingerprints = []
    for path in paths:
        try:
            fingerprints.append(certificate_fingerprint(path.read_bytes()))
        except ValueError:  # not PEM, or not a certificate (UnicodeError is one too)
            raise click.BadParameter(
                f"{path} is not a PEM certificate.", param_hint="--trust-cert"
            ) from None
    return fingerprints


@click.group()
def audit() -> None:
    """The audit trail: append-only, hash-chained, with node-signed checkpoints."""


@audit.command()
@click.option(
    "--trust-cert",
    "trust_certs",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Certificate (PEM) allowed to sign checkpoints; default: this node's certificate. "
    "Give every certificate the node has used (old ones after a key rotation).",
)
@click.option(
    "--export",
    "export_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify this file from `epix audit export` instead of the node's database "
    "(needs --trust-cert: the node's published certificate).",
)
def verify(trust_certs: tuple[Path, ...], export_file: Path | None) -> None:
    """Check every event and checkpoint; exit 1 naming the first broken event."""
    if export_file is not None:
        if not trust_certs:
            raise click.UsageError("--export needs --trust-cert: the node's published certificate.")
        fingerprints = _fingerprints(trust_certs)
        with export_file.open("rb") as lines:
            report = verify_export(lines, fingerprints)
    else:
        _require_trail()
        if trust_certs:
            fingerprints = _fingerprints(trust_certs)
        else:
            fingerprints = [certificate_fingerprint(_node_signer().cert_pem)]
        with cli_session() as session:
            report = verify_chain(
                session,
                trusted_fingerprints=fingerprints,
                checkpoint_every=get_settings().audit_checkpoint_every,
            )
    for finding in report.findings:
        click.echo(f"{finding.code}: {finding.message} ({finding.location})", err=True)
    if not report.ok:
        if report.broken_at is not None:
            click.echo(f"first broken event: {report.broken_at}", err=True)
        sys.exit(1)
    span = (
        f"events {report.first_sequence}..{report.last_sequence}"
        if report.first_sequence is not None
        else "no events"
    )
    click.echo(
        f"audit chain intact: {span} ({report.events_checked} checked), "
        f"{report.checkpoints_verified} signed checkpoints, "
        f"{report.checkpoints_pending} awaiting signature"
    )


@audit.command()
def checkpoint() -> None:
    """Sign pending checkpoints and one at the current head, with the node key."""
    _require_trail()
    signer = _node_signer()
    with cli_session() as session:
        signed = sign_pending_checkpoints(session, signer)
        made = create_checkpoint(session, signer)
        click.echo(
            f"checkpoint at event {made.sequence}: {made.head_hash} "
            f"({signed} pending checkpoints signed)"
        )


@audit.command()
@click.option(
    "--from",
    "start",
    type=click.DateTime(_DATE_FORMATS),
    default=None,
    help="First time included, UTC (default: the first event).",
)
@click.option(
    "--to",
    "end",
    type=click.DateTime(_DATE_FORMATS),
    default=None,
    help="First time excluded, UTC (default: after the last event).",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Default: stdout.",
)
def export(start: datetime | None, end: datetime | None, output: Path | None) -> None:
    """Events with FROM <= time < TO (UTC) as JSON lines, signed with the node key.

    A header line (how events are hashed and checkpoints signed, the node certificate, the range
    and the chain head, signed), the checkpoints in the range, then the events in sequence order.
    Anyone with the node's published certificate can check it: `epix audit verify --export FILE
    --trust-cert CERT`, or by hand as docs/audit.md describes.
    """
    start, end = _utc(start), _utc(end)
    if start is not None and end is not None and end <= start:
        raise click.BadParameter(
            "must be later than --from (the period is FROM <= time < TO)", param_hint="--to"
        )
    _require_trail()
    signer = _node_signer()
    stream = output.open("w", encoding="utf-8") if output else sys.stdout
    try:
        with cli_session() as session:
            without_idle_in_transaction_timeout(session.connection())
            write_export(session, stream, signer, start=start, end=end)
    finally:
        if output:
            stream.close()


@audit.command()
@click.option(
    "--before",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Purge records due on or before this date (default today; never a future date).",
)
@click.option("--dry-run", is_flag=True, help="Only say what would be purged.")
def purge(before: datetime | None, dry_run: bool) -> None:
    """Remove records past their earliest purge date, keeping the chain verifiable.

    Removes them in batches of 10,000 events, each its own transaction with a signed
    checkpoint and a signed purge event, so audited requests go on between batches; a purge
    stopped half-way leaves a verifiable trail, and the next one removes the rest.
    """
    cutoff: date = before.date() if before else utcnow().date()
    _require_trail()
    signer = _node_signer()
    with cli_database() as database:
        plan = purge_events(database, before=cutoff, signer=signer, dry_run=dry_run)
    if plan.count == 0:
        click.echo("nothing is due for purging")
    elif dry_run:
        click.echo(f"would purge {plan.count} events (1..{plan.through_sequence})")
    else:
        click.echo(f"purged {plan.count} events (through {plan.through_sequence})")
