"""An export stands on its own: a third party with only the file and the node's published
certificate verifies it, following docs/audit.md with hashlib and cryptography, no EPIX code."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from epix.audit.context import RequestContext
from epix.audit.service import AuditPolicy, configure_audit, record_event
from epix.audit.signing import node_checkpoint_signer
from epix.cli.main import cli
from epix.db import Database
from epix.settings import get_settings
from tests.pki import make_identity

GENESIS = "0" * 64
STATEMENT_FIELDS = [
    "first_sequence",
    "last_sequence",
    "first_prev_hash",
    "last_hash",
    "head_sequence",
    "head_hash",
    "from",
    "to",
    "exported_at",
]


class Rejected(Exception):
    """The independent verifier's verdict: the export does not hold up."""


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def signature_verifies(cert_pem: str, signature: str, data: bytes) -> bool:
    key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(base64.b64decode(signature), data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(base64.b64decode(signature), data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except InvalidSignature:
        return False
    return True


def event_hash(event: dict[str, Any]) -> str:
    document = {k: v for k, v in event.items() if k not in {"record", "hash", "actor"}}
    document.update({f"actor_{k}": v for k, v in event["actor"].items()})
    document["headers"] = canonical(event["headers"])
    document["detail"] = canonical(event["detail"])
    return hashlib.sha256(canonical(document).encode("utf-8")).hexdigest()


def verify_independently(lines: list[str], published_cert_pem: bytes) -> list[int]:
    """docs/audit.md's recipe; returns the verified event sequences or raises Rejected."""
    records = [json.loads(line) for line in lines]
    header, rest = records[0], records[1:]
    if header.get("format") != "EPIX-AUDIT-EXPORT/1":
        raise Rejected("no export header")
    published = x509.load_pem_x509_certificate(published_cert_pem)
    signer = x509.load_pem_x509_certificate(header["certificate_pem"].encode())
    if signer.fingerprint(hashes.SHA256()) != published.fingerprint(hashes.SHA256()):
        raise Rejected("signed by another certificate")
    statement = "EPIX-AUDIT-EXPORT/1\n" + "".join(
        f"{name}={'' if header[name] is None else header[name]}\n" for name in STATEMENT_FIELDS
    )
    if not signature_verifies(header["certificate_pem"], header["signature"], statement.encode()):
        raise Rejected("header signature")
    checkpoints = {}
    for checkpoint in (r for r in rest if r["record"] == "checkpoint"):
        signed = f"EPIX-AUDIT-CHECKPOINT/1\nsequence={checkpoint['sequence']}\n"
        signed += f"head={checkpoint['head_hash']}\n"
        if not signature_verifies(
            checkpoint["certificate_pem"], checkpoint["signature"], signed.encode()
        ):
            raise Rejected(f"checkpoint {checkpoint['sequence']}")
        checkpoints[checkpoint["sequence"]] = checkpoint["head_hash"]
    events = [r for r in rest if r["record"] == "event"]
    previous, sequences = header["first_prev_hash"], []
    for expected, event in enumerate(events, start=header["first_sequence"]):
        if event["sequence"] != expected or event["prev_hash"] != previous:
            raise Rejected(f"event {expected} missing or out of place")
        if event_hash(event) != event["hash"]:
            raise Rejected(f"event {expected} altered")
        if checkpoints.get(expected, event["hash"]) != event["hash"]:
            raise Rejected(f"event {expected} differs from its checkpoint")
        previous = event["hash"]
        sequences.append(expected)
    if (sequences[-1] if sequences else None) != header["last_sequence"]:
        raise Rejected("export cut short")
    if previous != header["last_hash"] or header["last_sequence"] > header["head_sequence"]:
        raise Rejected("last hash")
    return sequences


@pytest.fixture
def published_cert(runner: CliRunner, tmp_path: Path) -> Iterator[Path]:
    """The node's certificate as it publishes it (the node key is made on first use)."""
    path = tmp_path / "node-cert.pem"
    path.write_bytes(node_checkpoint_signer(get_settings()).cert_pem)
    yield path


def _fill_with_checkpoints(database: Database) -> None:
    """Ten events with evidence headers, non-ASCII detail and a checkpoint every four."""
    configure_audit(replace(AuditPolicy.for_node(get_settings()), checkpoint_every=4))
    request = RequestContext.from_raw(
        "POST", "/v1/messages", "192.0.2.7", {"User-Agent": "ma/1.0", "X-Request-Id": "r-1"}
    )
    with database.unit_of_work() as session:
        for index in range(10):
            record_event(
                session,
                action="submit",
                outcome="ok" if index % 3 else "EPIX-SIG-001",
                party="XB",
                message_id=f"m-{index}",
                permit_number=f"XA-{index:04d}",
                request=request,
                payload=f"<permit n='{index}'/>".encode(),
                detail={"note": "Ålesund → Genève", "n": index, "ok": index % 2 == 0},
            )


def _export(runner: CliRunner, tmp_path: Path, *args: str) -> list[str]:
    output = tmp_path / "export.jsonl"
    result = runner.invoke(cli, ["audit", "export", "--output", str(output), *args])
    assert result.exit_code == 0, result.output
    return output.read_text(encoding="utf-8").splitlines()


def _epix_verify(
    runner: CliRunner, tmp_path: Path, lines: list[str] | list[bytes], cert: Path
) -> Any:
    path = tmp_path / "checked.jsonl"
    path.write_bytes(
        b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines)
    )
    return runner.invoke(cli, ["audit", "verify", "--export", str(path), "--trust-cert", str(cert)])


def test_an_export_verifies_with_only_the_published_certificate(
    runner: CliRunner, database: Database, published_cert: Path, tmp_path: Path, policy: None
) -> None:
    """Before, the export was bare event lines: no checkpoints, no signature, no key, no range,
    nothing a court's expert could check without the node's database and code."""
    _fill_with_checkpoints(database)
    lines = _export(runner, tmp_path)
    assert verify_independently(lines, published_cert.read_bytes()) == list(range(1, 11))
    header = json.loads(lines[0])
    assert (header["head_sequence"], header["hash_algorithm"]) == (10, "SHA-256")
    assert [json.loads(line)["sequence"] for line in lines[1:3]] == [4, 8]  # the checkpoints
    result = _epix_verify(runner, tmp_path, lines, published_cert)
    assert result.exit_code == 0, result.output
    assert "events 1..10 (10 checked), 2 signed checkpoints" in result.output


def test_a_period_is_exported_as_an_unbroken_run_of_the_chain(
    runner: CliRunner,
    database: Database,
    published_cert: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A trail written while the clock stepped back (before event times were held monotonic)
    has an event inside the period's run whose time lies before the period. Selected by time,
    the export left it out, and the export's own chain no longer verified."""
    times = iter(
        datetime(2026, 3, 1, hour, tzinfo=UTC) for hour in (9, 11, 8, 12, 14)
    )  # event 3: the clock stepped back
    monkeypatch.setattr("epix.audit.service._chain_time", lambda session, head: next(times))
    with database.unit_of_work() as session:
        for index in range(5):
            record_event(session, action="lookup", outcome="ok", detail={"i": index})
    lines = _export(
        runner, tmp_path, "--from", "2026-03-01T10:00:00", "--to", "2026-03-01T13:00:00"
    )
    assert verify_independently(lines, published_cert.read_bytes()) == [2, 3, 4]
    assert _epix_verify(runner, tmp_path, lines, published_cert).exit_code == 0


def _altered(lines: list[str], index: int, **changes: object) -> list[str]:
    record = json.loads(lines[index])
    record.update(changes)
    return [*lines[:index], json.dumps(record, ensure_ascii=False), *lines[index + 1 :]]


def test_tampered_exports_are_refused_by_both_verifiers(
    runner: CliRunner, database: Database, published_cert: Path, tmp_path: Path, policy: None
) -> None:
    _fill_with_checkpoints(database)
    lines = _export(runner, tmp_path)
    first_event = 3  # header and two checkpoints come first
    middle = first_event + 4  # event 5
    stranger = make_identity("Not the node", kind="ec", size=256)
    stranger_cert = tmp_path / "stranger.pem"
    stranger_cert.write_bytes(stranger.cert_pem)
    # Re-hash the altered event and everything after it: the links hold, the header's last
    # hash then has to change too, and only the node key could sign that.
    rehashed = list(lines)
    previous = json.loads(rehashed[middle - 1])["hash"]
    for index in range(middle, len(rehashed)):
        record = json.loads(rehashed[index])
        record.update(prev_hash=previous, **({"party": "XC"} if index == middle else {}))
        record["hash"] = previous = event_hash(record)
        rehashed[index] = json.dumps(record, ensure_ascii=False)
    rehashed = _altered(rehashed, 0, last_hash=previous)
    cases = {
        "altered": (_altered(lines, middle, party="XC"), "first broken event: 5"),
        "swapped": (
            [*lines[:middle], lines[middle + 1], lines[middle], *lines[middle + 2 :]],
            "first broken event: 5",
        ),
        "tail cut": (lines[:-2], "first broken event: 9"),
        "rehashed": (rehashed, "EPIX-AUDIT-003"),
        "checkpoint moved": (_altered(lines, 1, head_hash=GENESIS), "EPIX-AUDIT-002"),
    }
    for name, (tampered, named) in cases.items():
        with pytest.raises(Rejected):
            verify_independently(tampered, published_cert.read_bytes())
        result = _epix_verify(runner, tmp_path, tampered, published_cert)
        assert result.exit_code == 1, name
        assert named in result.output, (name, result.output)
    untrusted = _epix_verify(runner, tmp_path, lines, stranger_cert)
    assert untrusted.exit_code == 1
    assert "EPIX-AUDIT-003" in untrusted.output
    garbage_files: list[list[str] | list[bytes]] = [
        ["not json"],
        ["[1, 2]"],
        [json.dumps({"record": "event"})],
        [b"\xff\xfe not UTF-8"],
        ["[" * 100_000],
        _altered(lines, 0, **{"from": "2026-01-01 \u00e0 midi"}),
        _altered(lines, 1, head_hash="h\u00e9ad"),
        [lines[0], json.dumps({"record": "event", "sequence": 1, "actor": "nobody"})],
    ]
    for garbage in garbage_files:
        refused = _epix_verify(runner, tmp_path, garbage, published_cert)
        assert isinstance(refused.exception, SystemExit), refused.exception
        assert refused.exit_code == 1 and "EPIX-AUDIT-00" in refused.output, refused.output
    lonely = runner.invoke(cli, ["audit", "verify", "--export", str(tmp_path / "checked.jsonl")])
    assert lonely.exit_code == 2 and "--trust-cert" in lonely.output
