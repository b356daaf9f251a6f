"""The Toolkit v1 layout (CBFShip) is read by translating it to CITESEPermit v2."""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from epix.errors import EpixError
from epix.exchange.envelope import Envelope
from epix.exchange.service import check_document
from epix.permits.legacy import CBFSHIP, is_legacy_v1
from epix.permits.reader import extract_permit_element, read_permit
from epix.permits.validation import check_schema, validate_permit_bytes
from epix.settings import Settings
from epix.xml import parse_xml
from tests.conftest import FIXTURES
from tests.permits.helpers import SAMPLE

V1_SAMPLE = FIXTURES / "v1_get_non_final_cites_certificate.xml"


def _bare_v1() -> bytes:
    """The v1 permit on its own, as a Party's system would send it outside SOAP."""
    shipment = next(parse_xml(V1_SAMPLE.read_bytes()).iter("CBFShip"))
    return etree.tostring(shipment)


def test_the_v1_sample_maps_every_box_like_the_v2_sample() -> None:
    v1 = read_permit(extract_permit_element(parse_xml(V1_SAMPLE.read_bytes())))
    v2 = read_permit(extract_permit_element(parse_xml(SAMPLE.read_bytes())))
    # The one difference between the two Toolkit samples: v1 has no shipping marks (box 9).
    assert [line.marks for line in v2.lines] == [("XXX",), ("XXX",)]
    unmarked = tuple(dataclasses.replace(line, marks=()) for line in v2.lines)
    assert v1 == dataclasses.replace(v2, lines=unmarked)
    assert v1.exporter.country == "XA" and v1.importer.country == "XB"
    assert v1.issuing_authority.address.country_name == "Neverland"


@pytest.mark.parametrize("document", ["soap", "bare"])
def test_a_v1_permit_validates_with_the_v2_schema_codes_and_rules(document: str) -> None:
    data = V1_SAMPLE.read_bytes() if document == "soap" else _bare_v1()
    element = extract_permit_element(parse_xml(data))
    assert element.tag == "{urn:un:unece:uncefact:data:standard:CITESEPermit:2}CITESEPermit"
    assert not any(el.tag.startswith(f"{{{CBFSHIP}}}") for el in element.iter(etree.Element))
    assert check_schema(element) == []
    v1_report = validate_permit_bytes(data)
    v2_report = validate_permit_bytes(SAMPLE.read_bytes())
    assert v1_report.valid
    assert [f.code for f in v1_report.findings] == [f.code for f in v2_report.findings]
    # Lines point into the document as sent, not into the translation.
    assert all(f.line is not None for f in v1_report.findings)


def test_a_v1_sub_division_and_import_country_have_no_v2_place_and_are_dropped() -> None:
    element = extract_permit_element(parse_xml(_bare_v1()))
    names = {etree.QName(el).localname for el in element.iter(etree.Element)}
    assert "CountryIdentificationTradeCountry" not in names
    assert "ImportTradeCountry" not in names
    assert "ApplicableCrossBorderGovernmentProcedure" not in names
    assert "ApplicableCrossBorderRegulatoryProcedure" in names


def test_a_v1_document_is_refused_for_submission_with_a_code() -> None:
    data = _bare_v1()
    assert is_legacy_v1(parse_xml(data))
    with pytest.raises(EpixError) as refused:
        check_document(data, Envelope("m-1", "XA", "XB", "permit"), Settings())
    assert [f.code for f in refused.value.findings] == ["EPIX-MSG-004"]


def test_a_schema_error_in_a_v1_permit_has_a_readable_location_and_its_line() -> None:
    data = V1_SAMPLE.read_bytes().replace(
        b"<urn1:CityName>", b"<urn1:Bogus>x</urn1:Bogus><urn1:CityName>", 1
    )
    first = validate_permit_bytes(data).findings[0]
    assert first.code == "EPIX-SCHEMA-001"
    assert first.location == (
        "/CITESEPermit/HeaderExchangedDocument/FirstSignatoryDocumentAuthentication"
        "/ProviderTradeParty/PostalTradeAddress"
    )
    assert first.line is not None
    assert b"<urn1:PostalTradeAddress>" in data.splitlines()[first.line - 1]


def test_a_country_finding_in_a_v1_permit_points_at_the_line_of_the_v1_country_id() -> None:
    """v1 countries sit in a CountryIdentificationTradeCountry aggregate that the translation
    flattens into new elements; those keep the line of the v1 ID they were made from."""
    original = b"<urn1:ID>XA</urn1:ID>"
    data = V1_SAMPLE.read_bytes().replace(original, b"<urn1:ID>QQ</urn1:ID>", 1)
    findings = [f for f in validate_permit_bytes(data).findings if f.code == "EPIX-CODE-007"]
    assert [f.location for f in findings] == [
        "/CITESEPermit/HeaderExchangedDocument/FirstSignatoryDocumentAuthentication"
        "/ProviderTradeParty/PostalTradeAddress/CountryID"
    ]
    assert findings[0].line is not None
    assert b"<urn1:ID>QQ</urn1:ID>" in data.splitlines()[findings[0].line - 1]
