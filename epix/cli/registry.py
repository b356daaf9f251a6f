"""``epix registry``: the Secretariat's key registry from the command line.

Changes are made as a Secretariat principal and audited: ``--as USER`` names a Secretariat user
of this node; without it the change is recorded as the local operator (OS user name), who has
the node's database in hand anyway. ``export`` signs the registry with the Secretariat key;
``import`` accepts a document only if it verifies against the pinned Secretariat certificate.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from epix.audit.service import AuditPolicy, configure_audit
from epix.auth import service as auth_service
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.cli.users import cli_context, cli_session
from epix.db import Database
from epix.db.base import ROW_ID_MAX
from epix.errors import EpixError
from epix.outbound import outbound_client
from epix.registry import repository, service
from epix.registry.anchors import (
    announce_next_anchor,
    follower_anchor,
    follower_report,
    record_anchor,
)
from epix.registry.document import import_registry, publish, read_registry
from epix.registry.follower import RegistryFollower, SourceUnreachable, fetch_document
from epix.registry.roles import AUTHORITY_KINDS
from epix.settings import get_settings


class UtcTime(click.ParamType[datetime, Any]):
    """An ISO 8601 time; without an offset it is taken as UTC."""

    name = "time"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time, e.g. 2026-05-01T12:00:00Z", param, ctx)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past the last UTC year
            self.fail(f"{value!r} is outside the years 1 to 9999 in UTC.", param, ctx)


UTC_TIME = UtcTime()


def acting_principal(session: Session, username: str | None) -> Principal:
    """The Secretariat user named by ``--as``, or the local operator."""
    if username is not None:
        return auth_service.principal_of(auth_service.get_user(session, username))
    return Principal(
        user_id=0,
        username=f"cli:{getpass.getuser()}"[:150],
        party=SECRETARIAT_PARTY,
        authority="node operator (command line)",
        roles=frozenset({Role.SECRETARIAT}),
    )


def read_source(source: str) -> bytes:
    """A registry document from a file path or an http(s) URL (fetched within
    EPIX_OUTBOUND_DEADLINE_SECONDS in all, like the follower's)."""
    if source.startswith(("http://", "https://")):
        settings = get_settings()
        try:
            with outbound_client(
                deadline_seconds=settings.outbound_deadline_seconds,
                timeout=30.0,
                proxy=settings.outbound_proxy,
            ) as client:
                fetched = fetch_document(client, source)
            if fetched is None:  # 304 to a request that named no ETag
                raise SourceUnreachable("HTTP 304 without a document")
        except SourceUnreachable as exc:
            reason = f"Could not fetch {source}: {exc}."
            raise EpixError.of("EPIX-REG-009", reason, source) from None
        return fetched[0]
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"Cannot read {source}: {exc.strerror}") from None


def anchor_pem(anchor: Path | None) -> bytes:
    """The pinned Secretariat certificate: ``--anchor`` or EPIX_REGISTRY_ANCHOR_PATH."""
    path = anchor or get_settings().registry_anchor_path
    if path is None:
        raise click.UsageError(
            "Pass --anchor SECRETARIAT_CERT or set EPIX_REGISTRY_ANCHOR_PATH: a registry "
            "document is only trusted when it verifies against the pinned Secretariat certificate."
        )
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"Cannot read {path}: {exc.strerror}") from None


as_option = click.option(
    "--as", "as_user", default=None, help="Secretariat user to record as acting (audit)."
)


@contextmanager
def change_session() -> Iterator[Session]:
    """``cli_session`` for a change: a refused change still commits its audit event."""
    with cli_session() as session:
        try:
            yield session
        except EpixError:
            session.commit()  # the service rolled the change back and audited the refusal
            raise


@click.group()
def registry() -> None:
    """The key registry: Parties, authorities, certificates, endpoints; export and import;
    announcing the Secretariat's next signing certificate (announce-anchor)."""


@registry.command("add-party")
@click.argument("code")
@click.argument("name")
@click.option("--endpoint", default=None, help="Base URL of the Party's node, if it runs one.")
@as_option
def add_party(code: str, name: str, endpoint: str | None, as_user: str | None) -> None:
    """Add Party CODE (ISO 3166 alpha-2) called NAME."""
    with change_session() as session:
        actor = acting_principal(session, as_user)
        row = service.add_party(
            session,
            code=code,
            name=name,
            endpoint=endpoint,
            actor=actor,
            request=cli_context("registry add-party"),
        )
        click.echo(f"added Party {row.code} ({row.name})")


@registry.command("add-authority")
@click.option("--party", required=True, help="ISO 3166 alpha-2 code of the Party.")
@click.option(
    "--kind",
    required=True,
    type=click.Choice([*AUTHORITY_KINDS, *(k.replace("_", "-") for k in AUTHORITY_KINDS)]),
    help="What the authority does; its certificates sign as this role.",
)
@click.option("--contact", default=None, help="How to reach the authority (e-mail, address).")
@click.argument("name")
@as_option
def add_authority(
    party: str, kind: str, contact: str | None, name: str, as_user: str | None
) -> None:
    """Add an authority NAME of a Party; prints its id (for add-certificate)."""
    with change_session() as session:
        actor = acting_principal(session, as_user)
        row = service.add_authority(
            session,
            party=party,
            kind=kind,
            name=name,
            contact=contact,
            actor=actor,
            request=cli_context("registry add-authority"),
        )
        click.echo(f"added authority {row.id}: {row.party_code} {row.kind} {row.name!r}")


@registry.command("add-certificate")
@click.option(
    "--authority",
    "authority_id",
    required=True,
    type=click.IntRange(1, ROW_ID_MAX),
    help="Authority id.",
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(AUTHORITY_KINDS),
    help="Restrict the roles (default: all its authority's kind signs).",
)
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@as_option
def add_certificate(
    authority_id: int, roles: tuple[str, ...], certificate: Path, as_user: str | None
) -> None:
    """Register the PEM CERTIFICATE for an authority (earlier ones stay valid: rollover).

    One leaf certificate whose key may sign, never a bundle, a CA certificate or a private
    key; its public key must be in no other registered certificate (renew with a new key).
    """
    pem = certificate.read_bytes()
    with change_session() as session:
        actor = acting_principal(session, as_user)
        row = service.add_certificate(
            session,
            authority_id=authority_id,
            pem=pem,
            roles=roles or None,
            actor=actor,
            request=cli_context("registry add-certificate"),
        )
        click.echo(
            f"registered {row.fingerprint} for {row.roles} until {row.not_after.isoformat()}"
        )


@registry.command("revoke")
@click.argument("fingerprint")
@click.option("--reason", required=True, help="Why (e.g. key compromise), published.")
@click.option("--at", "at", type=UTC_TIME, default=None, help="Effective time (default now).")
@as_option
def revoke(fingerprint: str, reason: str, at: datetime | None, as_user: str | None) -> None:
    """Revoke a certificate; documents signed before the revocation time stay valid.

    A revoked certificate may be revoked again from an earlier time (a scheduled revocation
    brought forward by a key compromise), never from a later one.

    FINGERPRINT is the certificate's SHA-256 (hex, colons allowed, as `openssl x509 -noout
    -fingerprint -sha256` prints it).
    """
    with change_session() as session:
        actor = acting_principal(session, as_user)
        row = service.revoke_certificate(
            session,
            fingerprint=fingerprint,
            reason=reason,
            at=at,
            actor=actor,
            request=cli_context("registry revoke"),
        )
        assert row.revoked_at is not None
        click.echo(f"revoked {row.fingerprint} from {row.revoked_at.isoformat()}")


@registry.command("set-endpoint")
@click.argument("party")
@click.argument("url", required=False)
@click.option("--clear", is_flag=True, help="Withdraw the endpoint (the Party uses a hub).")
@as_option
def set_endpoint(party: str, url: str | None, clear: bool, as_user: str | None) -> None:
    """Publish URL as PARTY's node endpoint (or --clear it)."""
    if bool(url) == clear:
        raise click.UsageError("Give either a URL or --clear.")
    with change_session() as session:
        actor = acting_principal(session, as_user)
        row = service.set_endpoint(
            session,
            party=party,
            url=None if clear else url,
            actor=actor,
            request=cli_context("registry set-endpoint"),
        )
        click.echo(f"{row.code}: {row.endpoint_url or 'no endpoint'}")


@registry.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def list_registry(as_json: bool) -> None:
    """Every Party, authority and certificate, with validity and revocation."""
    with cli_session() as session:
        snapshot = repository.load_snapshot(session, datetime.now(UTC))
        if as_json:
            click.echo(json.dumps(_snapshot_json(snapshot.version, snapshot.parties), indent=2))
            return
        click.echo(f"registry version {snapshot.version}")
        for party in snapshot.parties:
            click.echo(f"{party.code}  {party.name}  {party.endpoint_url or '(no endpoint)'}")
            for authority in party.authorities:
                click.echo(f"  [{authority.id}] {authority.kind}: {authority.name}")
                for entry in authority.certificates:
                    status = (
                        f"revoked {entry.revoked_at.isoformat()} ({entry.revocation_reason})"
                        if entry.revoked_at
                        else "active"
                    )
                    click.echo(
                        f"      {entry.fingerprint}  {entry.not_before.date()}.."
                        f"{entry.not_after.date()}  {' '.join(entry.roles)}  {status}"
                    )


def _snapshot_json(version: int, parties: Any) -> dict[str, object]:
    return {
        "version": version,
        "parties": [
            {
                "code": p.code,
                "name": p.name,
                "endpoint_url": p.endpoint_url,
                "authorities": [
                    {
                        "id": a.id,
                        "kind": a.kind,
                        "name": a.name,
                        "contact": a.contact,
                        "certificates": [
                            {
                                "fingerprint": c.fingerprint,
                                "subject": c.subject,
                                "not_before": c.not_before.isoformat(),
                                "not_after": c.not_after.isoformat(),
                                "roles": list(c.roles),
                                "revoked_at": c.revoked_at.isoformat() if c.revoked_at else None,
                                "revocation_reason": c.revocation_reason,
                            }
                            for c in a.certificates
                        ],
                    }
                    for a in p.authorities
                ],
            }
            for p in parties
        ],
    }


@registry.command("expiring")
@click.option(
    "--within-days",
    type=click.IntRange(1, 3660),
    default=60,
    show_default=True,
    help="Certificates ending within this many days.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
def expiring(within_days: int, as_json: bool) -> None:
    """Unrevoked certificates ending soon (7/30/60-day buckets) and whether a successor exists."""
    with cli_session() as session:
        found = service.expiring_certificates(session, within_days=within_days)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in found], indent=2))
        return
    for e in found:
        successor = "successor registered" if e.has_successor else "NO SUCCESSOR"
        click.echo(
            f"<{e.threshold_days}d  {e.party} {e.kind} {e.authority_name!r}  {e.fingerprint}  "
            f"ends {e.not_after.isoformat()} ({e.days_left} days; {successor})"
        )


@registry.command("export")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="The Secretariat's private key (PEM).",
)
@click.option(
    "--cert",
    "cert_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Its certificate (PEM), the anchor followers pin.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write (default: stdout).",
)
@as_option
def export(key_path: Path, cert_path: Path, out: Path | None, as_user: str | None) -> None:
    """Sign the current registry with the Secretariat key and write it (stdout without --out).

    The document is valid for EPIX_REGISTRY_VALIDITY_HOURS; run this again (a timer) before
    half of that has passed: it then re-signs the registry as a new version with a fresh
    expiry, without which followers start refusing signatures after their grace period.
    """
    key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    validity = timedelta(hours=get_settings().registry_validity_hours)
    with cli_session() as session:
        actor = acting_principal(session, as_user)
        try:
            document = publish(
                session,
                key_pem,
                cert_pem,
                validity=validity,
                actor=actor,
                request=cli_context("registry export"),
            )
        except ValueError as exc:  # an unreadable key, or one that is not the certificate's
            raise click.ClickException(str(exc)) from None
        content, version = document.content, document.version
    if out is None:
        click.echo(content.decode("utf-8"), nl=False)
    else:
        out.write_bytes(content)
        click.echo(f"registry version {version} written to {out}", err=True)


def _signing_pair(key_path: Path | None, cert_path: Path | None) -> tuple[bytes, bytes]:
    """The Secretariat's current signing key and certificate: the options, else
    EPIX_REGISTRY_SIGNING_KEY_PATH and EPIX_REGISTRY_SIGNING_CERT_PATH."""
    settings = get_settings()
    key_path = key_path or settings.registry_signing_key_path
    cert_path = cert_path or settings.registry_signing_cert_path
    if key_path is None or cert_path is None:
        raise click.UsageError(
            "Pass --key and --signing-cert, or set EPIX_REGISTRY_SIGNING_KEY_PATH and "
            "EPIX_REGISTRY_SIGNING_CERT_PATH: the announcement is signed with the current key."
        )
    try:
        return key_path.read_bytes(), cert_path.read_bytes()
    except OSError as exc:
        raise click.ClickException(f"Cannot read {exc.filename}: {exc.strerror}") from None


@registry.command("announce-anchor")
@click.option(
    "--cert",
    "next_cert",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The next signing certificate (PEM), to which followers will move.",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The current signing key (default EPIX_REGISTRY_SIGNING_KEY_PATH).",
)
@click.option(
    "--signing-cert",
    "cert_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The current signing certificate (default EPIX_REGISTRY_SIGNING_CERT_PATH).",
)
@as_option
def announce_anchor(
    next_cert: Path, key_path: Path | None, cert_path: Path | None, as_user: str | None
) -> None:
    """Announce the Secretariat's next registry signing certificate, signed with the current key.

    Every document published from now on carries the announcement; a follower that verified
    one moves to the new certificate by itself when the first document signed by it arrives,
    and refuses the old key from then on. Keep signing with the current key until followers
    have fetched the announcement (`epix registry followers` shows those that identify
    themselves; for the others wait at least a few EPIX_REGISTRY_REFRESH_SECONDS, better one
    EPIX_REGISTRY_VALIDITY_HOURS), then point EPIX_REGISTRY_SIGNING_KEY_PATH and
    EPIX_REGISTRY_SIGNING_CERT_PATH (or `export --key/--cert`) at the new pair. Announcing
    again before that switch replaces the pending announcement.

    Refused: a private key (EPIX-REG-014); a CA certificate, an expired one, one with the
    current key or a former anchor (EPIX-REG-018); a current certificate that followers
    no longer accept (EPIX-REG-019).
    """
    key_pem, cert_pem = _signing_pair(key_path, cert_path)
    with change_session() as session:
        actor = acting_principal(session, as_user)
        try:
            link = announce_next_anchor(
                session,
                next_cert.read_bytes(),
                key_pem,
                cert_pem,
                actor=actor,
                request=cli_context("registry announce-anchor"),
            )
        except ValueError as exc:  # an unreadable key, or one that is not the certificate's
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"announced next anchor {link.next_fingerprint} (signed by {link.signer_fingerprint})"
        )


@registry.command("followers")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def followers(as_json: bool) -> None:
    """Which follower nodes fetched the registry from this (the Secretariat's) node.

    One line per Party whose node identified itself when fetching (its peer_node API key,
    kept in its EPIX_PEER_API_KEYS under CITES): the last fetch, the version it got (200) or
    already held (304), and whether that version carries the newest anchor announcement
    (announce-anchor). Switch the signing key once the followers that matter say yes; for
    anonymous followers and copies served elsewhere, still wait one
    EPIX_REGISTRY_VALIDITY_HOURS.
    """
    with cli_session() as session:
        report = follower_report(session)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    click.echo(f"newest announced anchor: {report.newest_anchor or 'none'}")
    if not report.followers:
        click.echo("no follower has fetched the registry identifying itself")
    for fetch in report.followers:
        carries = {None: "no anchor announced", True: "yes", False: "NO"}[fetch.has_newest_anchor]
        click.echo(
            f"{fetch.party}  {fetch.fetched_at.isoformat()}  version {fetch.version} "
            f"({fetch.status})  carries the newest anchor: {carries}"
        )


@registry.command("import")
@click.argument("source")
@click.option(
    "--anchor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Pinned Secretariat certificate (default EPIX_REGISTRY_ANCHOR_PATH).",
)
@as_option
def import_(source: str, anchor: Path | None, as_user: str | None) -> None:
    """Verify the registry document at SOURCE (file or URL) and make this node follow it.

    A document signed by a successor the Secretariat announced (a chain of announcements,
    each signed by the certificate before it) is accepted, and this node trusts that
    successor from then on instead of the pinned certificate.
    """
    pinned = anchor_pem(anchor)
    with cli_session() as session:
        trusted = follower_anchor(session, pinned)
        verified = read_registry(
            read_source(source),
            trusted.anchor_pem,
            pending_next=trusted.pending_next,
            retired=trusted.retired,
        )
        actor = acting_principal(session, as_user) if as_user else None
        request = cli_context("registry import")
        outcome = import_registry(
            session,
            verified,
            source_url=source if "://" in source else None,
            actor=actor,
            request=request,
        )
        record_anchor(session, verified, request=request)
    state = "imported" if outcome.changed else "already held"
    click.echo(f"registry version {outcome.version} {state} (sha256 {outcome.sha256})")


@registry.command("follow")
@click.option("--once", is_flag=True, help="Refresh once and exit.")
def follow(once: bool) -> None:
    """Follow EPIX_REGISTRY_SOURCE_URL, verified against EPIX_REGISTRY_ANCHOR_PATH.

    When the Secretariat announced a successor (announce-anchor), the first document it signs
    is accepted and this node trusts it, and no longer the pinned certificate, from then on.
    """
    settings = get_settings()
    configure_audit(AuditPolicy.for_node(settings))  # imports are audited: sign checkpoints
    database = Database(settings.effective_database_url)
    try:
        database.migrate()
        follower = RegistryFollower.from_settings(database, settings)
        if once:
            result = follower.refresh()
            for warning in result.warnings:
                click.echo(f"{warning.code}: {warning.message}", err=True)
            click.echo(
                f"registry version {result.version}" + (" (updated)" if result.changed else "")
            )
            return
        follower.follow(settings.registry_refresh_seconds, threading.Event())
    except EpixError as refusal:
        for finding in refusal.findings:
            click.echo(f"{finding.code}: {finding.message}", err=True)
        raise SystemExit(1) from None
    finally:
        database.dispose()
