"""``epix verify``: check a signed document against the registry, offline or on the node.

With ``--registry FILE|URL`` the trust comes from a Secretariat-signed registry document,
verified against the pinned Secretariat certificate (``--anchor`` or
EPIX_REGISTRY_ANCHOR_PATH), so no database is needed; without it, from the node's registry
tables. ``--at`` judges the document by the registry as it stood at that signing time
(certificates registered later are unknown). Exit status 0 means valid, 1 invalid (or no
registry to check against).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from sqlalchemy.exc import SQLAlchemyError

from epix.cli.registry import UTC_TIME, anchor_pem, read_source
from epix.db import Database
from epix.errors import EpixError, Finding
from epix.registry.document import read_registry
from epix.registry.roles import AUTHORITY_KINDS, MANAGEMENT_AUTHORITY
from epix.registry.snapshot import SnapshotTrustStore
from epix.registry.trust import RegistryTrustStore
from epix.settings import get_settings
from epix.signatures import Verdict, verify_document


def _report(
    valid: bool,
    findings: tuple[Finding, ...] | list[Finding],
    verdict: Verdict | None,
    registry: dict[str, object],
    as_json: bool,
) -> None:
    signer = verdict.certificate.as_dict() if verdict and verdict.certificate else None
    if as_json:
        body = {
            "valid": valid,
            "errors": [
                {"code": f.code, "message": f.message, "location": f.location, "line": f.line}
                for f in findings
            ],
            "signer": signer,
            "signing_time": verdict.signing_time.isoformat() if verdict else None,
            "registry": registry,
        }
        click.echo(json.dumps(body, indent=2))
        return
    if valid and signer is not None:
        click.echo(
            f"valid: signed by {signer['authority_name'] or signer['party']} "
            f"({signer['party']}, {signer['role']}), certificate {signer['fingerprint']}"
        )
        return
    for finding in findings:
        location = f" at {finding.location}" if finding.location else ""
        click.echo(f"{finding.code}: {finding.message}{location}", err=True)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--party", required=True, help="The Party the document claims to come from.")
@click.option(
    "--role",
    type=click.Choice([*AUTHORITY_KINDS, *(k.replace("_", "-") for k in AUTHORITY_KINDS)]),
    default=MANAGEMENT_AUTHORITY,
    show_default=True,
    help="The authority role it was signed as.",
)
@click.option("--registry", "registry_source", default=None, help="Registry document file or URL.")
@click.option(
    "--anchor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Pinned Secretariat certificate for --registry (default EPIX_REGISTRY_ANCHOR_PATH).",
)
@click.option(
    "--at",
    "at",
    type=UTC_TIME,
    default=None,
    help="Signing time (default now); the registry is taken as it stood then.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON verdict.")
def verify(
    file: Path,
    party: str,
    role: str,
    registry_source: str | None,
    anchor: Path | None,
    at: datetime | None,
    as_json: bool,
) -> None:
    """Verify the EPIX-DSIG-1 signature of FILE for --party as --role."""
    data = file.read_bytes()
    role = role.replace("-", "_")
    party = party.upper()
    if registry_source is not None:
        pinned = anchor_pem(anchor)
        try:
            verified = read_registry(read_source(registry_source), pinned)
        except EpixError as refusal:
            _report(False, refusal.findings, None, {"source": registry_source}, as_json)
            raise SystemExit(1) from None
        registry = {"source": registry_source, "version": verified.snapshot.version}
        # An archived document is judged by the registry as it stood at its signing time.
        trust = SnapshotTrustStore(verified.snapshot, as_of=at)
        verdict = verify_document(data, party=party, role=role, trust=trust, at=at)
    else:
        settings = get_settings()
        database = Database(settings.effective_database_url)
        registry = {"source": "node database"}
        try:
            with database.unit_of_work() as session:
                verdict = verify_document(
                    data, party=party, role=role, trust=RegistryTrustStore(session, at), at=at
                )
        except SQLAlchemyError as exc:
            finding = Finding(
                "EPIX-REG-009",
                f"The node database has no registry ({type(exc).__name__}); "
                "pass --registry FILE|URL.",
                "--registry",
            )
            _report(False, [finding], None, registry, as_json)
            raise SystemExit(1) from None
        finally:
            database.dispose()
    _report(verdict.valid, verdict.findings, verdict, registry, as_json)
    raise SystemExit(0 if verdict.valid else 1)
