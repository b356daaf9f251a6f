"""Reading the real Toolkit v2 instance box by box, and the lossless model-XML round trip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from lxml import etree

from epix.errors import EpixError
from epix.permits.model import DocumentRef, Endorsement, PermitLine
from epix.permits.reader import PERMIT_TAG, extract_permit_element, read_permit
from epix.permits.samples import demo_permit
from epix.permits.validation import check_schema, validate_permit_bytes
from epix.permits.writer import write_permit
from epix.xml import parse_xml
from tests.permits.helpers import SAMPLE, base, change, change_line, envelope

CET, CEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=2))


def sample_permit_element() -> etree._Element:
    return extract_permit_element(parse_xml(SAMPLE.read_bytes()))


def test_real_sample_validates_with_warnings_only() -> None:
    report = validate_permit_bytes(SAMPLE.read_bytes())
    assert report.valid, report.findings
    assert report.permit is not None
    assert {f.code for f in report.findings} == {"EPIX-CODE-101", "EPIX-RULE-015", "EPIX-RULE-016"}
    assert all(f.line is not None and f.location for f in report.findings)


def test_soap_sample_root_is_normalised_into_the_permit_namespace() -> None:
    element = sample_permit_element()
    assert element.tag == PERMIT_TAG
    assert element.getparent() is not None  # still inside the SOAP body: lines stay true
    assert check_schema(element) == []


def test_every_box_of_the_real_sample_is_mapped() -> None:
    permit = read_permit(sample_permit_element())
    # box 1
    assert (permit.document_type, permit.number) == ("R", "XA000000")
    # box 2
    assert permit.valid_from == datetime(2014, 1, 6, 12, 3, 52, tzinfo=CET)
    assert permit.valid_until == datetime(2014, 7, 5, 12, 3, 52, tzinfo=CEST)
    # boxes 3 and 4
    assert permit.importer.name == "Consignee name"
    assert permit.importer.country == "XB"
    assert permit.importer.address.country_name == "Wonderland"
    assert permit.exporter.name == "Consignor name"
    assert (permit.exporter.address.street, permit.exporter.address.city) == ("Street", "City")
    assert permit.exporter.address.postcode == "00000"
    assert permit.exporter.country == "XA"
    # boxes 5, 5a, 5b (the sample leaves the security stamp empty)
    assert permit.special_conditions[0].startswith("For live animals, this permit is only valid")
    assert permit.purpose == "T"
    assert permit.security_stamp is None
    # box 6
    assert permit.issuing_authority.name == "Authority name"
    assert permit.issuing_authority.country == "XA"
    # box 13 (place left empty in the sample), box 14 and 15 empty
    assert permit.issued_at == datetime(2014, 1, 6, 12, 3, 52, tzinfo=CET)
    assert permit.place_of_issue is None
    assert permit.endorsement is None
    assert permit.transport_document is None
    assert permit.copy is False

    alligator, crocodile = permit.lines
    # boxes 7-11
    assert alligator.line_id == "A"
    assert alligator.scientific_name == "Alligator mississippiensis"
    assert alligator.common_name == "American Alligator"
    assert (alligator.description, alligator.term, alligator.marks) == (
        "watchstraps",
        "LPS",
        ("XXX",),
    )
    assert (alligator.appendix, alligator.source) == ("II", "W")
    assert (alligator.quantity, alligator.unit) == (Decimal(5), "PCS")
    assert (crocodile.line_id, crocodile.scientific_name) == ("B", "Crocodylus siamensis")
    assert (crocodile.appendix, crocodile.source, crocodile.quantity) == ("I", "D", Decimal(10))
    # box 11a empty
    assert alligator.quota_used is None and alligator.annual_quota is None
    # box 12 origin, 12a last re-export
    assert alligator.origin_country == "XC"
    assert alligator.origin_country_name == "Pixieland"
    assert alligator.origin_permit == DocumentRef(
        id="XC12345", type_code="861", issued_at=datetime(2007, 7, 9, tzinfo=CEST)
    )
    assert (alligator.reexport_country, alligator.last_reexport) == (
        "XA",
        DocumentRef(id="XA12345", type_code="811", issued_at=datetime(2012, 2, 23, tzinfo=CET)),
    )
    assert (crocodile.origin_country, crocodile.reexport_country) == ("TH", "FR")
    assert crocodile.origin_permit is not None and crocodile.origin_permit.id is None
    assert crocodile.last_reexport is not None
    assert crocodile.last_reexport.id == "FR1202501030-R"
    # box 12b and the line endorsement (box 14) are empty in the sample
    assert crocodile.registered_operation is None and crocodile.acquisition_date is None
    assert crocodile.endorsement is None


def test_demo_permit_round_trips_losslessly_and_validates() -> None:
    permit = base()
    data = write_permit(permit)
    element = parse_xml(data)
    assert check_schema(element) == []
    assert read_permit(element) == permit


def test_every_optional_box_round_trips() -> None:
    moment = datetime(2024, 3, 5, 14, 0, tzinfo=UTC)
    stamp = Endorsement(
        occurred_at=moment,
        quantity=Decimal("149.5"),
        unit="NAR",
        port="XBWON",
        port_name="Wonder Port",
        authority="Customs of XB",
        officer="C. Officer",
    )
    permit = change_line(
        change(
            base(),
            document_name="Certificate of captive breeding",
            purpose_text="Commercial",
            references=(DocumentRef(id="XB-IMP-9", type_code="911"),),
            endorsement=stamp,
        ),
        origin_country="XC",
        origin_country_name="Pixieland",
        origin_permit=DocumentRef(id="XC1", type_code="861", issued_at=moment),
        reexport_country="XD",
        last_reexport=DocumentRef(id="XD2", type_code="811", valid_until=moment),
        import_permit=DocumentRef(id="XB3", type_code="911", name="Import permit"),
        other_documents=(DocumentRef(id="X4", type_code="740", valid_from=moment),),
        registered_operation="A-XA-501",
        acquisition_date=moment,
        procedure_categories=("CAT1",),
        endorsement=stamp,
    )
    assert read_permit(parse_xml(write_permit(permit))) == permit


def test_round_trip_of_the_real_sample_through_the_writer() -> None:
    permit = read_permit(sample_permit_element())
    assert read_permit(parse_xml(write_permit(permit))) == permit


def test_line_without_id_gets_its_position_as_identifier() -> None:
    data = write_permit(base(lines=2)).replace(b"<ram:ID>2</ram:ID>", b"")
    permit = read_permit(parse_xml(data))
    assert [line.line_id for line in permit.lines] == ["1", "2"]


def test_demo_permit_with_four_lines_is_a_realistic_size() -> None:
    size = len(write_permit(demo_permit(lines=4)))
    assert 6_000 < size < 12_000


def test_permit_inside_an_epix_envelope_is_decoded_byte_exact() -> None:
    data = write_permit(base())
    report = validate_permit_bytes(envelope(data))
    assert report.valid, report.findings
    assert report.permit == base()


def test_envelope_with_broken_base64_is_refused_with_a_code() -> None:
    bad = b'<e:Envelope xmlns:e="urn:epix:envelope:1"><e:Payload>@@@</e:Payload></e:Envelope>'
    report = validate_permit_bytes(bad)
    assert [f.code for f in report.findings] == ["EPIX-XML-005"]


@pytest.mark.parametrize(
    "document",
    [
        b'<CITESEPermit xmlns="urn:example:wrong"/>',
        b"<Invoice/>",
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>',
    ],
)
def test_wrong_root_or_namespace_is_refused(document: bytes) -> None:
    with pytest.raises(EpixError) as caught:
        extract_permit_element(parse_xml(document))
    finding = caught.value.findings[0]
    assert finding.code == "EPIX-XML-005"
    assert finding.location is not None and finding.line == 1


def test_children_in_a_wrong_namespace_fail_the_schema_with_path_and_line() -> None:
    data = write_permit(base()).replace(
        b'xmlns:ram="urn:un:unece:uncefact:data:draft:ReusableAggregateBusinessInformationEntity:1"',
        b'xmlns:ram="urn:example:not-cites"',
    )
    report = validate_permit_bytes(data)
    assert not report.valid
    finding = report.findings[0]
    assert finding.code == "EPIX-SCHEMA-001"
    assert finding.location and finding.location.startswith("/CITESEPermit")
    assert finding.line is not None and finding.line > 1


def test_bad_date_is_a_schema_error_not_a_crash() -> None:
    data = write_permit(base()).replace(b"2024-03-01T09:30:00+00:00", b"2024-13-45T09:30:00", 1)
    report = validate_permit_bytes(data)
    assert [f.code for f in report.findings][:1] == ["EPIX-SCHEMA-001"]
    assert "IssueDateTime" in (report.findings[0].location or "")


def test_empty_optional_elements_read_as_absent() -> None:
    permit = read_permit(sample_permit_element())
    assert permit.lines[0].endorsement is None  # every endorsement element is empty
    assert permit.lines[0].import_permit is None
    assert PermitLine(line_id="A").quota_unit is None
