"""Endorsements signed with the customs authority's own registered key: verified, then checked."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from epix.api.app import create_app
from epix.auth import service as auth_service
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.endorsements import service
from epix.endorsements.document import (
    EndorsedLine,
    EndorsementDocument,
    Side,
    write_endorsement,
)
from epix.errors import EpixError
from epix.exchange.envelope import envelope_from_headers
from epix.registry import service as registry
from epix.settings import Settings
from epix.signatures import StaticTrustStore, TrustedCertificate, sign_document
from tests.endorsements.conftest import MakePermit, StoredPermit, customs, document_for
from tests.pki import Identity, make_identity


def signed(document: EndorsementDocument, identity: Identity) -> bytes:
    return sign_document(write_endorsement(document), identity.key_pem, identity.cert_pem)


@pytest.fixture
def trust(customs_identity: Identity) -> StaticTrustStore:
    return StaticTrustStore(
        [TrustedCertificate.from_certificate(customs_identity.cert_pem, party="XB", role="customs")]
    )


def record(
    db: Database,
    permit: StoredPermit,
    data: bytes,
    trust: StaticTrustStore,
    actor: Principal | None = None,
) -> service.SignedEndorsement:
    with db.unit_of_work() as session:
        return service.record_signed(
            session,
            issuing_party=permit.issuing_party,
            number=permit.number,
            data=data,
            trust=trust,
            actor=actor or customs("XB"),
        )


def refused_with(
    code: str,
    db: Database,
    permit: StoredPermit,
    data: bytes,
    trust: StaticTrustStore,
    actor: Principal | None = None,
) -> None:
    with pytest.raises(EpixError) as caught:
        record(db, permit, data, trust, actor)
    assert code in [finding.code for finding in caught.value.findings]


def test_signed_endorsement_is_stored_and_forwarded_byte_exact(
    db: Database, make_permit: MakePermit, customs_identity: Identity, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    data = signed(document_for(permit), customs_identity)
    result = record(db, permit, data, trust)
    assert result.document == data
    assert result.endorsement.signed_by == "authority"
    with db.unit_of_work() as session:
        assert session.scalars(select(OutboxMessage.payload)).one() == data
    # The same document again is the same endorsement, not a second one.
    again = record(db, permit, data, trust)
    assert again.endorsement.id == result.endorsement.id


def test_signed_endorsement_confirms_the_matching_reservation(
    db: Database, make_permit: MakePermit, customs_identity: Identity, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    with db.unit_of_work() as session:
        held = service.reserve(
            session,
            issuing_party="XA",
            number=permit.number,
            side=Side.IMPORT,
            declaration_reference="MRN-9",
            lines=[service.LineInput("1", "10", "PCS")],
            ttl=timedelta(hours=1),
            actor=customs("XB"),
        )
    document = document_for(
        permit, declaration_reference="MRN-9", lines=(EndorsedLine("1", Decimal(10), "PCS"),)
    )
    result = record(db, permit, signed(document, customs_identity), trust)
    assert result.endorsement.reservation_id == held.id


def test_unregistered_signer_is_refused(
    db: Database, make_permit: MakePermit, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    impostor = make_identity("Not XB customs", party="XB")
    refused_with("EPIX-SIG-012", db, permit, signed(document_for(permit), impostor), trust)


def test_endorsement_of_other_permit_bytes_is_refused(
    db: Database, make_permit: MakePermit, customs_identity: Identity, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    data = signed(document_for(permit, permit_sha256="ab" * 32), customs_identity)
    refused_with("EPIX-STATE-009", db, permit, data, trust)


def test_signed_endorsement_goes_through_the_ledger_checks(
    db: Database, make_permit: MakePermit, customs_identity: Identity, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    too_many = document_for(permit, lines=(EndorsedLine("1", Decimal(11), "PCS"),))
    refused_with("EPIX-QTY-001", db, permit, signed(too_many, customs_identity), trust)
    bad_port = document_for(permit, port="QQABC")
    refused_with("EPIX-QTY-006", db, permit, signed(bad_port, customs_identity), trust)


def test_endorsement_by_another_party_than_the_caller_is_refused(
    db: Database, make_permit: MakePermit, customs_identity: Identity, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    data = signed(document_for(permit), customs_identity)
    refused_with("EPIX-AUTH-005", db, permit, data, trust, actor=customs("XC"))


def test_signed_endorsement_over_http_verifies_against_the_registry(
    db: Database, make_permit: MakePermit, customs_identity: Identity, tmp_path: Path
) -> None:
    secretariat = Principal(
        user_id=1,
        username="registrar",
        party=SECRETARIAT_PARTY,
        authority="CITES Secretariat",
        roles=frozenset({Role.SECRETARIAT}),
    )
    with db.unit_of_work() as session:
        registry.add_party(session, code="XB", name="Neverland B", actor=secretariat)
        authority = registry.add_authority(
            session, party="XB", kind="customs", name="XB Customs", actor=secretariat
        )
        registry.add_certificate(
            session, authority_id=authority.id, pem=customs_identity.cert_pem, actor=secretariat
        )
        user = auth_service.create_user(
            session,
            username="xb-customs",
            party="XB",
            authority="XB Customs",
            roles=(Role.CUSTOMS,),
        )
        _, raw_key = auth_service.issue_api_key(session, user)
    client = TestClient(
        create_app(Settings(data_dir=tmp_path / "data", node_party="XB"), db),
        raise_server_exceptions=False,
    )
    permit = make_permit()
    path = f"/v1/permits/XA/{permit.number}/endorsements/signed"
    headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/xml"}
    data = signed(document_for(permit), customs_identity)

    as_json = client.post(
        path, headers=headers | {"Content-Type": "application/json"}, content=data
    )
    assert as_json.status_code == 415
    garbage = client.post(path, headers=headers, content=b"<Endorsement")
    assert garbage.json()["code"] == "EPIX-XML-001"

    response = client.post(path, headers=headers, content=data)
    assert response.status_code == 201, response.text
    assert response.json()["signed_by"] == "authority"
    assert response.json()["permit"]["status"] == "used"


@pytest.mark.parametrize(
    "endorsement_id",
    [
        "XB/END/0001",  # a slash, as in permit numbers
        "XB END 0001",
        "XB-ENDÖ-1",
        "E" * 65,  # the endorsement id column (and an envelope id) holds 64
    ],
)
def test_an_endorsement_id_that_cannot_travel_as_a_message_id_is_refused(
    db: Database,
    make_permit: MakePermit,
    customs_identity: Identity,
    trust: StaticTrustStore,
    endorsement_id: str,
) -> None:
    """The document's ID is the message id it is forwarded under (X-EPIX-Message-Id). One the
    issuing node's envelope check refuses was accepted here and then failed delivery for good
    (EPIX-REQ-004 at the peer, EPIX-DLV-006 here): the issuer never got the endorsement."""
    permit = make_permit()
    data = signed(document_for(permit, endorsement_id=endorsement_id), customs_identity)
    refused_with("EPIX-SCHEMA-001", db, permit, data, trust)
    with db.unit_of_work() as session:
        assert session.scalars(select(OutboxMessage)).all() == []


def test_an_accepted_endorsement_travels_under_a_valid_envelope(
    db: Database, make_permit: MakePermit, customs_identity: Identity, trust: StaticTrustStore
) -> None:
    permit = make_permit()
    record(
        db,
        permit,
        signed(document_for(permit, endorsement_id="XB:END.0001_a-" + "9" * 50), customs_identity),
        trust,
    )
    with db.unit_of_work() as session:
        row = session.scalars(select(OutboxMessage)).one()
    envelope = envelope_from_headers(row.headers)
    assert (envelope.message_id, envelope.sender, envelope.recipient) == (
        row.message_id,
        "XB",
        "XA",
    )
