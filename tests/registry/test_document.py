"""The published registry: export, verify against the pinned anchor, import, monotonic versions."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from epix.db import Database, utcnow
from epix.errors import EpixError
from epix.registry import document, repository, service
from epix.registry.document import import_registry, publish, read_registry
from epix.registry.freshness import FreshnessPolicy, held_copy_finding
from epix.registry.models import RegistryDocument
from epix.registry.snapshot import SnapshotTrustStore
from epix.registry.trust import RegistryTrustStore
from epix.signatures import sign_document, verify_document
from epix.xml.namespaces import DSIG, EPIX_REGISTRY
from tests.pki import Identity
from tests.registry.conftest import PERMIT_XML, SECRETARIAT, WEEK, Populated, ec_identity, populate


@pytest.fixture
def follower_database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'follower.sqlite3'}")
    database.migrate()
    return database


def export(database: Database, secretariat: Identity) -> bytes:
    with database.unit_of_work() as session:
        return publish(
            session, secretariat.key_pem, secretariat.cert_pem, validity=WEEK, actor=SECRETARIAT
        ).content


def import_into(database: Database, content: bytes, anchor: Identity) -> document.ImportOutcome:
    verified = read_registry(content, anchor.cert_pem)
    with database.unit_of_work() as session:
        return import_registry(session, verified, source_url="file:test")


def refusal(call: object, *args: object) -> list[str]:
    with pytest.raises(EpixError) as exc:
        call(*args)  # type: ignore[operator]
    return [finding.code for finding in exc.value.findings]


def test_export_then_import_round_trips_the_registry(
    database: Database,
    populated: Populated,
    follower_database: Database,
    secretariat_identity: Identity,
) -> None:
    with database.unit_of_work() as session:
        service.set_endpoint(session, party="XA", url="https://xa.example", actor=SECRETARIAT)
        service.revoke_certificate(
            session,
            fingerprint=populated.xb_ma_identity.fingerprint,
            reason="rotated",
            actor=SECRETARIAT,
        )
        source = repository.load_snapshot(session, issued_at=utcnow())
    content = export(database, secretariat_identity)
    outcome = import_into(follower_database, content, secretariat_identity)
    assert outcome.changed and outcome.version == source.version == 9
    with follower_database.unit_of_work() as session:
        copied = repository.load_snapshot(session, issued_at=source.issued_at)
        assert copied == source
        signed = sign_document(
            PERMIT_XML, populated.xa_ma_identity.key_pem, populated.xa_ma_identity.cert_pem
        )
        verdict = verify_document(
            signed, party="XA", role="management_authority", trust=RegistryTrustStore(session)
        )
        assert verdict.valid and verdict.certificate is not None
        assert verdict.certificate.authority_id == str(populated.xa_ma)
    assert import_into(follower_database, content, secretariat_identity).changed is False


def test_publishing_again_without_changes_returns_the_same_document(
    database: Database, populated: Populated, secretariat_identity: Identity
) -> None:
    first = export(database, secretariat_identity)
    assert export(database, secretariat_identity) == first
    with database.unit_of_work() as session:
        service.set_endpoint(session, party="XA", url="https://xa.example", actor=SECRETARIAT)
    second = export(database, secretariat_identity)
    assert b'version="8"' in second and b'version="7"' in first


def test_a_verified_document_is_a_trust_store_without_a_database(
    sqlite_database: Database, secretariat_identity: Identity
) -> None:
    with sqlite_database.unit_of_work() as session:
        populated = populate(session)
    content = export(sqlite_database, secretariat_identity)
    store = SnapshotTrustStore(read_registry(content, secretariat_identity.cert_pem).snapshot)
    identity = populated.xa_ma_identity
    signed = sign_document(PERMIT_XML, identity.key_pem, identity.cert_pem)
    assert verify_document(signed, party="XA", role="management_authority", trust=store).valid
    refused = verify_document(signed, party="XB", role="management_authority", trust=store)
    assert refused.codes == ["EPIX-SIG-015"]


def _resign(content: bytes, edit: object, signer: Identity) -> bytes:
    root = etree.fromstring(content)
    root.remove(root.find(f"{{{DSIG}}}Signature"))
    edit(root)  # type: ignore[operator]
    return sign_document(etree.tostring(root), signer.key_pem, signer.cert_pem)


def test_forged_registry_documents_are_refused(
    sqlite_database: Database, follower_database: Database, secretariat_identity: Identity
) -> None:
    with sqlite_database.unit_of_work() as session:
        populate(session)
    content = export(sqlite_database, secretariat_identity)
    anchor = secretariat_identity.cert_pem
    attacker = ec_identity("Not the Secretariat", party="CH")
    attacker_der = base64.b64encode(
        attacker.certificate.public_bytes(
            __import__(
                "cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]
            ).Encoding.DER
        )
    ).decode()

    tampered_version = re.sub(rb'version="\d+"', b'version="99"', content, count=1)
    tampered_certificate = re.sub(
        rb"<Data>[^<]+</Data>", f"<Data>{attacker_der}</Data>".encode(), content, count=1
    )
    unsigned = etree.tostring(_strip_signature(content))

    def bump(root: etree._Element) -> None:
        root.set("version", "100")

    signed_by_attacker = _resign(content, bump, attacker)
    forged = {
        "tampered version": tampered_version,
        "tampered certificate": tampered_certificate,
        "unsigned": unsigned,
        "signed by another key": signed_by_attacker,
    }
    for name, data in forged.items():
        found = refusal(read_registry, data, anchor)
        assert found[0] == "EPIX-REG-007", name
        assert len(found) > 1 and all(code.startswith("EPIX-SIG-") for code in found[1:]), name
    with follower_database.unit_of_work() as session:
        assert repository.current_version(session) == 0


def _strip_signature(content: bytes) -> etree._Element:
    root = etree.fromstring(content)
    root.remove(root.find(f"{{{DSIG}}}Signature"))
    return root


def test_not_a_registry_or_a_signed_but_malformed_registry_is_refused(
    secretariat_identity: Identity,
) -> None:
    other = sign_document(PERMIT_XML, secretariat_identity.key_pem, secretariat_identity.cert_pem)
    assert refusal(read_registry, other, secretariat_identity.cert_pem) == ["EPIX-XML-005"]
    malformed = sign_document(
        f'<Registry xmlns="{EPIX_REGISTRY}" version="-1" issuedAt="yesterday"/>'.encode(),
        secretariat_identity.key_pem,
        secretariat_identity.cert_pem,
    )
    found = refusal(read_registry, malformed, secretariat_identity.cert_pem)
    assert found and set(found) == {"EPIX-SCHEMA-001"}
    assert refusal(read_registry, b"<Registry", secretariat_identity.cert_pem) == ["EPIX-XML-001"]


def test_older_or_conflicting_versions_are_refused(
    sqlite_database: Database, follower_database: Database, secretariat_identity: Identity
) -> None:
    with sqlite_database.unit_of_work() as session:
        populate(session)
    old = export(sqlite_database, secretariat_identity)
    with sqlite_database.unit_of_work() as session:
        service.set_endpoint(session, party="XA", url="https://xa.example", actor=SECRETARIAT)
    new = export(sqlite_database, secretariat_identity)
    assert import_into(follower_database, new, secretariat_identity).version == 8
    assert refusal(import_into, follower_database, old, secretariat_identity) == ["EPIX-REG-008"]

    def other_content(root: etree._Element) -> None:
        root.find(f"{{{EPIX_REGISTRY}}}Party").find(f"{{{EPIX_REGISTRY}}}Name").text = "Forked"

    fork = _resign(new, other_content, secretariat_identity)
    assert refusal(import_into, follower_database, fork, secretariat_identity) == ["EPIX-REG-008"]
    with follower_database.unit_of_work() as session:
        assert repository.get_party(session, "XA").name == "Exampleland"  # type: ignore[union-attr]
        assert repository.current_version(session) == 8


def test_a_pinned_anchor_holding_a_private_key_or_several_certificates_is_refused(
    sqlite_database: Database, secretariat_identity: Identity
) -> None:
    """Pinning the Secretariat's key+certificate file puts its signing key on every follower;
    pinning a bundle leaves it to the file's order which certificate is trusted."""
    with sqlite_database.unit_of_work() as session:
        populate(session)
    content = export(sqlite_database, secretariat_identity)
    anchor = secretariat_identity
    other = ec_identity("Some other certificate", party="CH")
    assert refusal(read_registry, content, anchor.key_pem + anchor.cert_pem) == ["EPIX-REG-014"]
    bundle = anchor.cert_pem + other.cert_pem
    with pytest.raises(EpixError) as exc:
        read_registry(content, bundle)
    assert [f.code for f in exc.value.findings] == ["EPIX-REG-007"]
    assert "2 certificates" in exc.value.findings[0].message


def test_a_published_document_carries_a_signed_expiry_and_is_resigned_before_it_lapses(
    database: Database, populated: Populated, secretariat_identity: Identity
) -> None:
    """Unchanged, the same document is served until half its validity is left; then it is
    signed again as the next version with a fresh expiry, so followers take it as newer."""
    start = utcnow()

    def publish_at(moment: datetime) -> bytes:
        with database.unit_of_work() as session:
            return publish(
                session,
                secretariat_identity.key_pem,
                secretariat_identity.cert_pem,
                validity=WEEK,
                now=moment,
            ).content

    first = publish_at(start)
    verified = read_registry(first, secretariat_identity.cert_pem)
    assert verified.snapshot.expires_at == start + WEEK
    assert etree.fromstring(first).get("expires") == document.format_time(start + WEEK)
    assert publish_at(start + WEEK / 2 - timedelta(seconds=1)) == first
    renewed = read_registry(publish_at(start + WEEK / 2), secretariat_identity.cert_pem)
    assert renewed.snapshot.version == verified.snapshot.version + 1
    assert renewed.snapshot.expires_at == start + WEEK / 2 + WEEK
    assert renewed.snapshot.parties == verified.snapshot.parties
    with database.read() as session:
        assert repository.current_version(session) == renewed.snapshot.version


def test_a_document_from_before_expiry_is_read_without_one_and_resigned_with_one(
    database: Database,
    follower_database: Database,
    populated: Populated,
    secretariat_identity: Identity,
) -> None:
    """Documents signed before the expiry existed carry no ``expires``: a follower holds them
    to the validity from their issue (else an old one could freeze a new follower for good),
    and the Secretariat's next publication replaces them with one that does."""
    with database.unit_of_work() as session:
        snapshot = repository.load_snapshot(session, utcnow())
        legacy = sign_document(
            document.render_document(snapshot),
            secretariat_identity.key_pem,
            secretariat_identity.cert_pem,
        )
        session.add(
            RegistryDocument(
                version=snapshot.version,
                issued_at=snapshot.issued_at,
                content=legacy,
                sha256=hashlib.sha256(legacy).hexdigest(),
                stored_at=utcnow(),
            )
        )
    assert b"expires" not in legacy
    verified = read_registry(legacy, secretariat_identity.cert_pem)
    assert verified.snapshot.expires_at is None
    import_into(follower_database, legacy, secretariat_identity)
    issued = snapshot.issued_at

    def finding_at(moment: datetime) -> str | None:
        policy = FreshnessPolicy(
            enforced=True, grace=WEEK, clock=lambda: moment, unsigned_validity=WEEK
        )
        with follower_database.read() as session:
            finding = held_copy_finding(session, policy)
        return None if finding is None else finding.code

    assert finding_at(issued + WEEK) is None
    assert finding_at(issued + WEEK + timedelta(seconds=1)) == "EPIX-REG-016"
    assert finding_at(issued + 2 * WEEK + timedelta(seconds=1)) == "EPIX-REG-017"

    resigned = read_registry(export(database, secretariat_identity), secretariat_identity.cert_pem)
    assert resigned.snapshot.version == snapshot.version + 1
    assert resigned.snapshot.expires_at is not None
