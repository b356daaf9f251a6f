"""A self-describing, node-signed export of the audit trail that a third party can verify.

The export is JSON lines: one ``export`` header, the checkpoints that fall in the period
(``record: checkpoint``), then its events (``record: event``) in sequence order. The header says
how events are hashed and checkpoints signed, carries the node certificate, and is signed by the
node key over ``export_statement``: the first event's ``prev_hash``, the last event's hash and
the chain head when exported. A verifier who holds only the file and the node's published
certificate recomputes every event hash and link from that ``prev_hash`` to that hash, so no
event inside the range can be changed, dropped or reordered, and the signed head shows how far
the chain went beyond it. docs/audit.md gives the recipe without EPIX code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from epix.audit.service import (
    GENESIS_HASH,
    HEAD_ROW_ID,
    canonical_json,
    compute_hash,
    event_as_dict,
    events_between,
    format_time,
    period_span,
)
from epix.audit.signing import (
    CheckpointSigner,
    certificate_fingerprint,
    sign_statement,
    statement,
    statement_signature_valid,
)
from epix.audit.verify import ChainReport
from epix.db.base import utcnow

EXPORT_FORMAT = "EPIX-AUDIT-EXPORT/1"

# What the header tells a verifier who has no EPIX code (docs/audit.md spells it out).
_EVENT_HASH = (
    "hex SHA-256 of the UTF-8 canonical JSON (keys sorted, separators ',' and ':', non-ASCII "
    "unescaped) of the event's fields, flattened: actor.user_id..actor.api_key_id become "
    "actor_user_id..actor_api_key_id, headers and detail are replaced by their own canonical "
    "JSON text, record and hash are left out; prev_hash is the previous event's hash "
    f"({GENESIS_HASH} before the first event)"
)
_CHECKPOINT_SIGNATURE = (
    "base64 ECDSA (DER) or RSA PKCS#1 v1.5 signature with SHA-256 over the ASCII bytes "
    "'EPIX-AUDIT-CHECKPOINT/1\\nsequence=<sequence>\\nhead=<head_hash>\\n', verified with "
    "certificate_pem"
)
_EXPORT_SIGNATURE = (
    "the same algorithm over the ASCII bytes 'EPIX-AUDIT-EXPORT/1\\n' followed by one "
    "'name=value\\n' line each for first_sequence, last_sequence, first_prev_hash, last_hash, "
    "head_sequence, head_hash, from, to and exported_at, in that order (an absent value is "
    "empty), verified with certificate_pem"
)
_STATEMENT_FIELDS = (
    "first_sequence",
    "last_sequence",
    "first_prev_hash",
    "last_hash",
    "head_sequence",
    "head_hash",
    "from",
    "to",
    "exported_at",
)


def export_statement(header: dict[str, Any]) -> bytes:
    """The exact bytes the export header's signature covers."""
    lines = [EXPORT_FORMAT]
    for name in _STATEMENT_FIELDS:
        value = header.get(name)
        lines.append(f"{name}={'' if value is None else value}")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_export(
    session: Session,
    stream: IO[str],
    signer: CheckpointSigner,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """Write the signed export of a period: the run of the chain from the first event at or
    after ``start`` to the last before ``end``;
    returns the header. The head is read after the range, so it is never before its end; no
    chain lock is taken, so writers go on while a long period is exported."""
    span = period_span(session, start=start, end=end)
    head = session.get(AuditChainHead, HEAD_ROW_ID)
    first = session.get(AuditEvent, span[0]) if span else None
    last = session.get(AuditEvent, span[1]) if span else None
    header: dict[str, Any] = {
        "record": "export",
        "format": EXPORT_FORMAT,
        "first_sequence": first.sequence if first else None,
        "last_sequence": last.sequence if last else None,
        "first_prev_hash": first.prev_hash if first else None,
        "last_hash": last.hash if last else None,
        "head_sequence": head.sequence if head else 0,
        "head_hash": head.hash if head else GENESIS_HASH,
        "from": format_time(start) if start else None,
        "to": format_time(end) if end else None,
        "exported_at": format_time(utcnow()),
        "hash_algorithm": "SHA-256",
        "event_hash": _EVENT_HASH,
        "checkpoint_signature": _CHECKPOINT_SIGNATURE,
        "export_signature": _EXPORT_SIGNATURE,
        "certificate_pem": signer.cert_pem.decode("ascii"),
        "certificate_sha256": certificate_fingerprint(signer.cert_pem),
    }
    header["signature"] = sign_statement(signer, export_statement(header))
    _write(stream, header)
    if first is None or last is None:
        return header
    # Checkpoints first (a few), so a verifier can compare each with the event it names while
    # streaming; the one just before the range anchors its first prev_hash (a purge leaves one).
    checkpoints = session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.sequence >= first.sequence - 1)
        .where(AuditCheckpoint.sequence <= last.sequence)
        .order_by(AuditCheckpoint.sequence)
    ).all()
    for checkpoint in checkpoints:
        _write(stream, _checkpoint_as_dict(checkpoint))
    for event in events_between(session, first.sequence, last.sequence):
        _write(stream, {"record": "event", **event_as_dict(event)})
    return header


def _write(stream: IO[str], record: dict[str, Any]) -> None:
    stream.write(json.dumps(record, ensure_ascii=False) + "\n")


def _checkpoint_as_dict(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    return {
        "record": "checkpoint",
        "sequence": checkpoint.sequence,
        "head_hash": checkpoint.head_hash,
        "created_at": format_time(checkpoint.created_at),
        "signed_at": format_time(checkpoint.signed_at) if checkpoint.signed_at else None,
        "signature": checkpoint.signature,
        "certificate_pem": checkpoint.certificate_pem,
    }


def event_from_export(record: dict[str, Any]) -> AuditEvent:
    """An exported event line as the row it came from (to recompute its hash)."""
    actor = record["actor"]
    return AuditEvent(
        sequence=record["sequence"],
        occurred_at=datetime.fromisoformat(record["occurred_at"]),
        action=record["action"],
        outcome=record["outcome"],
        actor_user_id=actor["user_id"],
        actor_username=actor["username"],
        actor_party=actor["party"],
        actor_authority=actor["authority"],
        actor_api_key_id=actor["api_key_id"],
        party=record["party"],
        message_id=record["message_id"],
        permit_number=record["permit_number"],
        method=record["method"],
        path=record["path"],
        headers=canonical_json(record["headers"]),
        remote_addr=record["remote_addr"],
        payload_sha256=record["payload_sha256"],
        detail=canonical_json(record["detail"]),
        purge_after=date.fromisoformat(record["purge_after"]),
        prev_hash=record["prev_hash"],
        hash=record["hash"],
    )


def verify_export(lines: Iterable[bytes], trusted_fingerprints: Sequence[str]) -> ChainReport:
    """Check an export against the node certificates a verifier trusts: the header's signature,
    every checkpoint, and every event's hash and link from ``first_prev_hash`` to ``last_hash``.
    """
    report = ChainReport()
    records = _records(lines, report)
    header = next(records, None)
    if header is None or header.get("record") != "export" or header.get("format") != EXPORT_FORMAT:
        report.malformed("The file does not start with an EPIX-AUDIT-EXPORT/1 header.")
        return report
    cert_pem = header.get("certificate_pem")
    try:
        signed = export_statement(header)
    except UnicodeEncodeError:  # a field no node writes: the signature cannot cover it
        signed = b""
    if not isinstance(cert_pem, str) or not statement_signature_valid(
        cert_pem, str(header.get("signature")), signed
    ):
        report.malformed("The export header's signature does not verify with its certificate.")
        return report
    if certificate_fingerprint(cert_pem) not in trusted_fingerprints:
        report.malformed("The export is signed by a certificate that is not trusted.")
        return report
    expected_prev, expected_sequence = header.get("first_prev_hash"), header.get("first_sequence")
    if not isinstance(expected_sequence, int | None) or not isinstance(expected_prev, str | None):
        report.malformed("The export header's first_sequence or first_prev_hash is malformed.")
        return report
    checkpoints: dict[int, str] = {}
    for record in records:
        kind = record.get("record")
        if kind == "checkpoint" and report.events_checked == 0:
            sequence = _verified_checkpoint(report, record, trusted_fingerprints)
            if sequence is not None:
                checkpoints[sequence] = str(record.get("head_hash"))
            continue
        if kind != "event":
            report.malformed(f"Unexpected record {kind!r} (a header, checkpoints, then events).")
            return report
        try:
            event = event_from_export(record)
        except (KeyError, TypeError, ValueError):
            report.malformed(f"Event {record.get('sequence')!r} lacks a field or has a bad one.")
            return report
        if expected_sequence is None:
            report.malformed("The export header names no events, yet events follow.")
            return report
        if event.sequence != expected_sequence:
            report._break(expected_sequence, f"Event {expected_sequence} is missing.")
            return report
        if compute_hash(event) != event.hash:
            report._break(event.sequence, f"Event {event.sequence} was altered or moved.")
            return report
        if (
            event.prev_hash != expected_prev
            or checkpoints.get(event.sequence - 1, event.prev_hash) != event.prev_hash
        ):
            report._break(event.sequence, f"Event {event.sequence} does not follow the one before.")
            return report
        if checkpoints.get(event.sequence, event.hash) != event.hash:
            report._break(event.sequence, f"Event {event.sequence} differs from its checkpoint.")
            return report
        if report.first_sequence is None:
            report.first_sequence = event.sequence
        report.last_sequence = event.sequence
        report.events_checked += 1
        expected_prev, expected_sequence = event.hash, event.sequence + 1
    if report.last_sequence != header.get("last_sequence") or expected_prev != header.get(
        "last_hash"
    ):
        report._break(
            expected_sequence or 0,
            f"The export ends before event {header.get('last_sequence')}, its signed last event.",
        )
    return report


def _records(lines: Iterable[bytes], report: ChainReport) -> Iterator[dict[str, Any]]:
    """Each line as a JSON object, stopping at the first that is not one (not UTF-8 either)."""
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            report.malformed(f"Line {number} is not JSON.")
            return
        if not isinstance(record, dict):
            report.malformed(f"Line {number} is not a JSON object.")
            return
        yield record


def _verified_checkpoint(
    report: ChainReport, checkpoint: dict[str, Any], trusted_fingerprints: Sequence[str]
) -> int | None:
    """The checkpoint's sequence if it is signed by a trusted key (None: pending or bad)."""
    sequence, head_hash, signature, cert_pem = (
        checkpoint.get("sequence"),
        checkpoint.get("head_hash"),
        checkpoint.get("signature"),
        checkpoint.get("certificate_pem"),
    )
    if not isinstance(sequence, int):
        report.malformed("A checkpoint has no sequence.")
        return None
    if signature is None:
        report.checkpoints_pending += 1
        return sequence
    if not (
        isinstance(cert_pem, str)
        and isinstance(head_hash, str)
        and head_hash.isascii()
        and statement_signature_valid(cert_pem, str(signature), statement(sequence, head_hash))
    ):
        report._bad_checkpoint(sequence, f"The signature of checkpoint {sequence} does not verify.")
        return None
    if certificate_fingerprint(cert_pem) not in trusted_fingerprints:
        report._bad_checkpoint(sequence, f"Checkpoint {sequence} is signed by an untrusted key.")
        return None
    report.checkpoints_verified += 1
    return sequence
