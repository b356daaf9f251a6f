"""The endorsement document: schema-valid, signed EPIX-DSIG-1, and it names the exact permit."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import select

from epix.db import Database
from epix.delivery.models import OutboxMessage
from epix.endorsements import document as document_module
from epix.endorsements import service
from epix.endorsements.document import (
    MAX_LINES,
    EndorsedLine,
    EndorsementDocument,
    Side,
    check_schema,
    read_endorsement,
    write_endorsement,
)
from epix.endorsements.service import Signer
from epix.errors import ERROR_TABLE, EpixError
from epix.exchange.models import Message
from epix.signatures import StaticTrustStore, TrustedCertificate, verify_document
from epix.xml import parse_xml
from tests.conftest import need_command
from tests.endorsements.conftest import MakePermit, border, customs, document_for, lines
from tests.pki import Identity, make_identity
from tests.signatures.test_xmlsec_interop import xmlsec_verify


def test_endorsement_validates_signs_and_references_the_permit_bytes(
    db: Database, make_permit: MakePermit, signer: Signer, customs_identity: Identity
) -> None:
    permit = make_permit(valid_from=datetime(2026, 1, 1, tzinfo=UTC))  # endorsed on Jan 2
    with db.unit_of_work() as session:
        result = service.endorse(
            session,
            issuing_party="XA",
            number=permit.number,
            side=Side.IMPORT,
            details=border("nl rtm", on=date(2026, 1, 2)),
            lines=lines(("1", "7", "PCS"), ("2", "1.25", "KGM")),
            declaration_reference="MRN 26NL0000000000001",
            signer=signer,
            signed_by="authority",
            actor=customs("XB"),
        )
    root = parse_xml(result.document)
    assert check_schema(root) == []

    trust = StaticTrustStore(
        [TrustedCertificate.from_certificate(customs_identity.cert_pem, party="XB", role="customs")]
    )
    verdict = verify_document(result.document, party="XB", role="customs", trust=trust)
    assert verdict.valid, verdict.findings
    assert verdict.signed_element is not None
    document = read_endorsement(verdict.signed_element)
    assert document.permit_sha256 == permit.sha256
    assert (document.issuing_party, document.permit_number) == ("XA", permit.number)
    assert document.side is Side.IMPORT
    assert document.port == "NLRTM"
    assert document.endorsed_on == date(2026, 1, 2)
    assert document.declaration_reference == "MRN 26NL0000000000001"
    assert [(line.line_id, str(line.quantity), line.unit) for line in document.lines] == [
        ("1", "7", "PCS"),
        ("2", "1.25", "KGM"),
    ]

    # Another key is not trusted for XB customs: the same bytes do not verify against it.
    stranger = make_identity("XB impostor", party="XB")
    other_trust = StaticTrustStore(
        [TrustedCertificate.from_certificate(stranger.cert_pem, party="XB", role="customs")]
    )
    assert not verify_document(result.document, party="XB", role="customs", trust=other_trust).valid


def test_signed_permit_bytes_are_never_touched(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    with db.unit_of_work() as session:
        before = session.scalars(select(Message.body)).one()
        service.endorse(
            session,
            issuing_party="XA",
            number=permit.number,
            side=Side.EXPORT,
            details=border("XAABC"),
            lines=lines(("1", "3", "PCS")),
            declaration_reference=None,
            signer=signer,
            signed_by="authority",
            actor=customs("XA"),
        )
    with db.unit_of_work() as session:
        assert session.scalars(select(Message.body)).one() == before
        rows = session.scalars(select(OutboxMessage)).all()
    # The export endorsement goes to the issuer and to the importing Party.
    assert sorted(row.destination_party for row in rows) == ["XA", "XB"]
    assert all(row.payload != before for row in rows)


def test_schema_refuses_a_document_without_lines(
    db: Database, make_permit: MakePermit, signer: Signer
) -> None:
    permit = make_permit()
    with db.unit_of_work() as session:
        result = service.endorse(
            session,
            issuing_party="XA",
            number=permit.number,
            side=Side.IMPORT,
            details=border(),
            lines=lines(("1", "1", "PCS")),
            declaration_reference=None,
            signer=signer,
            signed_by="authority",
            actor=customs("XB"),
        )
    root = parse_xml(result.document)
    for line in root.findall("{urn:epix:endorsement:1}Line"):
        root.remove(line)
    findings = check_schema(root)
    assert [finding.code for finding in findings] == ["EPIX-SCHEMA-001"]


@pytest.mark.parametrize("issued_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_an_issue_time_outside_what_utc_can_hold_is_refused_not_crashed_on(
    db: Database,
    make_permit: MakePermit,
    customs_identity: Identity,
    issued_at: str,
) -> None:
    """Schema-valid, but a year-1 time east of UTC (or year 9999 west of it) has no UTC
    moment: customs posting it to /endorsements/signed got a 500 (OverflowError)."""
    permit = make_permit()
    root = parse_xml(write_endorsement(document_for(permit)))
    issued = root.find("{urn:epix:endorsement:1}IssuedAt")
    assert issued is not None
    issued.text = issued_at
    assert check_schema(root) == []
    with pytest.raises(EpixError) as caught:
        read_endorsement(root)
    assert [f.code for f in caught.value.findings] == ["EPIX-SCHEMA-001"]
    assert caught.value.findings[0].location == "e:IssuedAt"
    data = etree.tostring(root)
    with pytest.raises(EpixError) as refused, db.unit_of_work() as session:
        service.record_signed(
            session,
            issuing_party="XA",
            number=permit.number,
            data=data,
            trust=StaticTrustStore([]),
            actor=customs("XB"),
        )
    assert [f.code for f in refused.value.findings] == ["EPIX-SCHEMA-001"]


def _document(line_count: int) -> EndorsementDocument:
    return EndorsementDocument(
        endorsement_id="end-1",
        side=Side.EXPORT,
        issuing_party="XA",
        permit_number="XA/E/1",
        permit_sha256="a" * 64,
        endorsing_party="XB",
        authority="XB Customs",
        officer="Officer",
        port="XBABC",
        endorsed_on=date(2026, 1, 2),
        transport_document="AWB 1",
        declaration_reference="MRN 1",
        issued_at=datetime(2026, 1, 2, tzinfo=UTC),
        lines=tuple(EndorsedLine(str(i), Decimal(1), "PCS") for i in range(line_count)),
    )


def test_signed_endorsement_with_the_most_lines_passes_the_element_cap(signer: Signer) -> None:
    root = parse_xml(signer(write_endorsement(_document(MAX_LINES))))
    assert check_schema(root) == []


def test_endorsement_with_too_many_elements_is_refused_before_the_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """libxml2 costs O(preceding siblings) per schema error, so n invalid Lines were O(n^2):
    50,000 (4 MB) took 8.7 s. Past the cap the schema is never run."""
    too_many = 2 * MAX_LINES  # 6,000 elements and more
    data = write_endorsement(_document(too_many)).replace(b">1</Actual", b">-1</Actual")
    root = parse_xml(data)
    schemas: list[str] = []
    monkeypatch.setattr(document_module, "load_schema", lambda path: schemas.append(path))
    findings = check_schema(root)
    assert [finding.code for finding in findings] == ["EPIX-XML-008"]
    assert schemas == []
    assert ERROR_TABLE["EPIX-XML-008"].http_status == 413


@pytest.mark.xmlsec1
def test_the_endorsement_verifies_in_xmlsec1_and_a_changed_quantity_does_not(
    db: Database,
    make_permit: MakePermit,
    signer: Signer,
    customs_identity: Identity,
    tmp_path: Path,
) -> None:
    """The issuer may check the endorsement with the reference C implementation, not only
    with EPIX: the signed bytes as forwarded verify there, and box 14 cannot be changed."""
    xmlsec1 = need_command("xmlsec1")
    permit = make_permit()
    with db.unit_of_work() as session:
        result = service.endorse(
            session,
            issuing_party="XA",
            number=permit.number,
            side=Side.IMPORT,
            details=border("NLRTM"),
            lines=lines(("1", "7", "PCS")),
            declaration_reference=None,
            signer=signer,
            signed_by="authority",
            actor=customs("XB"),
        )
    with db.unit_of_work() as session:
        forwarded = session.scalars(select(OutboxMessage.payload)).one()
    assert forwarded == result.document
    assert xmlsec_verify(xmlsec1, forwarded, customs_identity, tmp_path)
    changed = forwarded.replace(b'unitCode="PCS">7<', b'unitCode="PCS">8<', 1)
    assert changed != forwarded
    assert not xmlsec_verify(xmlsec1, changed, customs_identity, tmp_path)
