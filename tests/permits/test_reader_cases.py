"""The reader's mapping, pinned down where a faster reader could drift: random permits round
trip through the writer, and hand-made XML covers duplicates, blanks, comments, foreign
namespaces, empty aggregates and which bad value is reported first."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from epix.errors import EpixError
from epix.permits.model import (
    DOC_IMPORT_PERMIT,
    DOC_LAST_REEXPORT,
    DOC_ORIGIN_PERMIT,
    Address,
    DocumentRef,
    Endorsement,
    Permit,
    PermitLine,
    TradeParty,
)
from epix.permits.reader import read_permit
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.xml import parse_xml
from tests.permits.helpers import ISSUED, base

# --- random permits round trip -----------------------------------------------------------

_TEXT = st.from_regex(
    r"[A-Za-z0-9éü/.,-]([A-Za-z0-9 éü/.,&<-]{0,10}[A-Za-z0-9éü/.,-])?", fullmatch=True
)
_MAYBE = st.none() | _TEXT
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]
)
_WHEN = st.none() | st.datetimes(min_value=datetime(1900, 1, 1), timezones=_ZONES)
_AMOUNT = st.none() | st.decimals(
    min_value=-1_000_000, max_value=1_000_000, places=3, allow_nan=False, allow_infinity=False
)


def _documents(type_code: st.SearchStrategy[str | None]) -> st.SearchStrategy[DocumentRef]:
    refs = st.builds(DocumentRef, _MAYBE, type_code, _WHEN, _MAYBE, _WHEN, _WHEN)
    return refs.filter(lambda ref: ref != DocumentRef())


_OTHER_KIND = st.none() | _TEXT.filter(
    lambda code: code not in (DOC_ORIGIN_PERMIT, DOC_LAST_REEXPORT, DOC_IMPORT_PERMIT)
)
_ENDORSEMENT = st.builds(
    Endorsement, _WHEN, _AMOUNT, _MAYBE, _MAYBE, _MAYBE, _MAYBE, _MAYBE
).filter(lambda endorsement: endorsement != Endorsement())
_PARTY = st.builds(
    TradeParty,
    _MAYBE,
    st.builds(Address, _MAYBE, _MAYBE, _MAYBE, _MAYBE, _MAYBE, _MAYBE, _MAYBE),
    _MAYBE,
    _MAYBE,
    _MAYBE,
)


@st.composite
def _lines(draw: st.DrawFn, index: int) -> PermitLine:
    used, annual = draw(_AMOUNT), draw(_AMOUNT)
    return PermitLine(
        line_id=draw(_TEXT | st.just(str(index))),
        scientific_name=draw(_MAYBE),
        common_name=draw(_MAYBE),
        description=draw(_MAYBE),
        term=draw(_MAYBE),
        marks=tuple(draw(st.lists(_TEXT, max_size=3))),
        appendix=draw(_MAYBE),
        source=draw(_MAYBE),
        quantity=draw(_AMOUNT),
        unit=draw(_MAYBE),
        quota_used=used,
        annual_quota=annual,
        # the writer only writes the quota unit on a quota quantity
        quota_unit=draw(_MAYBE) if used is not None or annual is not None else None,
        origin_country=draw(_MAYBE),
        origin_country_name=draw(_MAYBE),
        origin_permit=draw(st.none() | _documents(st.just(DOC_ORIGIN_PERMIT))),
        reexport_country=draw(_MAYBE),
        reexport_country_name=draw(_MAYBE),
        last_reexport=draw(st.none() | _documents(st.just(DOC_LAST_REEXPORT))),
        import_permit=draw(st.none() | _documents(st.just(DOC_IMPORT_PERMIT))),
        other_documents=tuple(draw(st.lists(_documents(_OTHER_KIND), max_size=2))),
        registered_operation=draw(_MAYBE),
        acquisition_date=draw(_WHEN),
        procedure_categories=tuple(draw(st.lists(_TEXT, max_size=2))),
        endorsement=draw(st.none() | _ENDORSEMENT),
    )


@st.composite
def _permits(draw: st.DrawFn) -> Permit:
    count = draw(st.integers(0, 3))
    return Permit(
        document_type=draw(_MAYBE),
        number=draw(_MAYBE),
        lines=tuple(draw(_lines(index)) for index in range(1, count + 1)),
        document_name=draw(_MAYBE),
        valid_from=draw(_WHEN),
        valid_until=draw(_WHEN),
        importer=draw(_PARTY),
        exporter=draw(_PARTY),
        special_conditions=tuple(draw(st.lists(_TEXT, max_size=2))),
        purpose=draw(_MAYBE),
        purpose_text=draw(_MAYBE),
        security_stamp=draw(_MAYBE),
        issuing_authority=draw(_PARTY),
        issued_at=draw(_WHEN),
        place_of_issue=draw(_MAYBE),
        place_of_issue_id=draw(_MAYBE),
        signed_at=draw(_WHEN),
        copy=draw(st.none() | st.booleans()),
        references=tuple(draw(st.lists(_documents(st.none() | _TEXT), max_size=2))),
        endorsement=draw(st.none() | _ENDORSEMENT),
        transport_document=draw(st.none() | _documents(st.none() | _TEXT)),
    )


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_permits())
def test_random_permits_round_trip(permit: Permit) -> None:
    assert read_permit(parse_xml(write_permit(permit))) == permit


@pytest.mark.parametrize("lines", [0, 1, 2, 5, 9])
@pytest.mark.parametrize("document_type", ["E", "R", "I", "O"])
def test_demo_permits_round_trip(lines: int, document_type: str) -> None:
    permit = demo_permit(lines=lines, document_type=document_type, issued=ISSUED)
    assert read_permit(parse_xml(write_permit(permit))) == permit


def test_read_values_are_plain_frozen_model_instances() -> None:
    """The reader builds dataclasses through slot-compatible twins; nothing of them may show."""
    permit = demo_permit(lines=2, issued=ISSUED)
    read = read_permit(parse_xml(write_permit(permit)))
    values = [read, read.lines[0], read.exporter, read.exporter.address, read.transport_document]
    originals = [
        permit,
        permit.lines[0],
        permit.exporter,
        permit.exporter.address,
        permit.transport_document,
    ]
    for value, original in zip(values, originals, strict=True):
        assert type(value) is type(original)
        assert (repr(value), hash(value)) == (repr(original), hash(original))
        assert copy.deepcopy(value) == value
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.__setattr__(dataclasses.fields(value)[0].name, None)


# --- hand-made XML ---------------------------------------------------------------------------

RAM = "urn:un:unece:uncefact:data:draft:ReusableAggregateBusinessInformationEntity:1"


def _read(data: bytes) -> Permit:
    return read_permit(parse_xml(data))


def _edit(old: bytes, new: bytes, permit: Permit | None = None) -> bytes:
    data = write_permit(permit or base(lines=2))
    assert old in data
    return data.replace(old, new, 1)


def test_the_first_of_repeated_children_wins_even_when_it_is_empty() -> None:
    permit = _read(
        _edit(
            b"<ram:ScientificName>Python reticulatus</ram:ScientificName>",
            b"<ram:ScientificName> </ram:ScientificName>"
            b"<ram:ScientificName>Second</ram:ScientificName>",
        )
    )
    assert permit.lines[0].scientific_name is None
    permit = _read(_edit(b"<ram:ID>1</ram:ID>", b"<ram:ID>first</ram:ID><ram:ID>second</ram:ID>"))
    assert permit.lines[0].line_id == "first"


def test_a_repeated_aggregate_is_read_from_its_first_occurrence() -> None:
    data = _edit(
        b"<ram:ConsignorTradeParty>",
        b"<ram:ConsignorTradeParty><ram:PostalTradeAddress><ram:CityName>First</ram:CityName>"
        b"</ram:PostalTradeAddress>",
    )
    exporter = _read(data).exporter
    assert exporter.address == Address(city="First")
    assert exporter.name == "Neverland Reptile Leather Ltd"


def test_blank_text_comments_and_processing_instructions_read_as_nothing() -> None:
    data = _edit(
        b"<ram:CityName>Port Never</ram:CityName>",
        b"<!-- before --><ram:CityName>\n  Port Never\t</ram:CityName><?pi x?>"
        b"<ram:PostOfficeBox>   </ram:PostOfficeBox>",
    )
    data = data.replace(b"<ram:Marking>CRATE 001</ram:Marking>", b"<ram:Marking/><!--m-->", 1)
    permit = _read(data)
    assert permit.exporter.address.city == "Port Never"
    assert permit.exporter.address.po_box is None
    assert permit.lines[0].marks == ("XA-2024-000123/1",)


def test_a_comment_before_the_text_hides_it_as_in_lxml() -> None:
    data = _edit(b"<ram:CityName>Port Never", b"<ram:CityName><!--c-->Port Never")
    assert _read(data).exporter.address.city is None


def test_children_in_another_namespace_are_not_read() -> None:
    data = _edit(
        b"<ram:CityName>Port Never</ram:CityName>",
        b'<x:CityName xmlns:x="urn:example:x">Elsewhere</x:CityName>',
    )
    assert _read(data).exporter.address.city is None


def test_repeated_marks_documents_and_categories_keep_document_order() -> None:
    moment = datetime(2024, 3, 5, tzinfo=UTC)
    line = dataclasses.replace(
        base(lines=1).lines[0],
        origin_permit=DocumentRef(id="O1", type_code=DOC_ORIGIN_PERMIT),
        other_documents=(DocumentRef(id="X1", type_code="740"), DocumentRef(name="untyped")),
        procedure_categories=("C1", "C2"),
        acquisition_date=moment,
    )
    permit = dataclasses.replace(base(lines=1), lines=(line,))
    data = write_permit(permit)
    # after the written documents: a second marks element (marks concatenate), a second
    # origin permit (the first stays box 12, this one is "other") and an empty document
    data = data.replace(
        b"<ram:TransportLogisticsPackage>",
        b"<ram:PhysicalLogisticsShippingMarks><ram:Marking>CRATE 999</ram:Marking>"
        b"</ram:PhysicalLogisticsShippingMarks>"
        b"<ram:AssociatedReferencedDocument><ram:TypeCode>861</ram:TypeCode>"
        b"<ram:ID>O2</ram:ID></ram:AssociatedReferencedDocument>"
        b"<ram:AssociatedReferencedDocument/><ram:TransportLogisticsPackage>",
        1,
    )
    read = _read(data).lines[0]
    assert read.marks == (*line.marks, "CRATE 999")
    assert read.origin_permit == DocumentRef(id="O1", type_code=DOC_ORIGIN_PERMIT)
    assert read.other_documents == (
        *line.other_documents,
        DocumentRef(id="O2", type_code=DOC_ORIGIN_PERMIT),
    )
    assert read.procedure_categories == ("C1", "C2")
    assert read.acquisition_date == moment


def test_empty_documents_and_endorsements_read_as_absent() -> None:
    data = _edit(
        b"</rsm:SpecifiedSupplyChainConsignment>",
        b"<ram:ExaminationTransportEvent><ram:OccurrenceLogisticsLocation><ram:ID> </ram:ID>"
        b"</ram:OccurrenceLogisticsLocation></ram:ExaminationTransportEvent>"
        b"</rsm:SpecifiedSupplyChainConsignment>",
    )
    data = data.replace(
        b"<ram:ID>176-12345675</ram:ID>", b"<ram:EffectiveSpecifiedPeriod/>"
    ).replace(b'<ram:TypeCode listID="1001" listAgencyID="6">740</ram:TypeCode>', b"")
    permit = _read(data)
    assert permit.endorsement is None
    assert permit.transport_document is None


def test_an_endorsement_with_only_a_zero_quantity_is_kept() -> None:
    data = _edit(
        b"</rsm:SpecifiedSupplyChainConsignment>",
        b"<ram:ExaminationTransportEvent><ram:UnitQuantity>0</ram:UnitQuantity>"
        b"</ram:ExaminationTransportEvent></rsm:SpecifiedSupplyChainConsignment>",
    )
    assert _read(data).endorsement == Endorsement(quantity=Decimal(0))


@pytest.mark.parametrize(
    ("unit", "expected"), [(b"", None), (b" ? ", None), (b"?", None), (b" KGM ", "KGM")]
)
def test_unit_codes_are_trimmed_and_placeholders_dropped(unit: bytes, expected: str | None) -> None:
    data = _edit(b'unitCode="NAR">150<', b'unitCode="' + unit + b'">150<')
    assert _read(data).lines[0].unit == expected


def test_the_quota_unit_falls_back_to_the_annual_quota_unit() -> None:
    data = _edit(b'<ram:UsedToDateQuotaQuantity unitCode="NAR">', b"<ram:UsedToDateQuotaQuantity>")
    data = data.replace(
        b'<ram:AnnualQuotaQuantity unitCode="NAR">', b'<ram:AnnualQuotaQuantity unitCode="KGM">'
    )
    line = _read(data).lines[0]
    assert (line.quota_used, line.annual_quota, line.quota_unit) == (
        Decimal(1200),
        Decimal(5000),
        "KGM",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [(b"true", True), (b"1", True), (b"false", False), (b"0", False), (b" ", None)],
)
def test_copy_indicator(text: bytes, expected: bool | None) -> None:
    data = _edit(b"<ram:CopyIndicator>false<", b"<ram:CopyIndicator>" + text + b"<")
    assert _read(data).copy is expected


def test_a_date_without_offset_is_utc_and_a_date_alone_is_midnight() -> None:
    data = _edit(b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00", b"<ram:IssueDateTime>2024-03-01")
    assert _read(data).issued_at == datetime(2024, 3, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "offset"),
    [(b"2024-03-01Z", 0), (b"2024-03-01+02:00", 120), (b"2024-03-01-05:30", -330)],
)
def test_a_date_with_a_time_zone_is_midnight_there(value: bytes, offset: int) -> None:
    """xs:date allows a zone; Python's fromisoformat would refuse 'Z' and read '+02:00' as
    the time of day 02:00."""
    data = _edit(b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00", b"<ram:IssueDateTime>" + value)
    zone = timezone(timedelta(minutes=offset))
    issued_at = _read(data).issued_at
    assert issued_at == datetime(2024, 3, 1, tzinfo=zone)
    assert issued_at is not None and issued_at.utcoffset() == timedelta(minutes=offset)


@pytest.mark.parametrize(
    ("value", "offset"), [(b"2024-08-31", 0), (b"2024-08-31Z", 0), (b"2024-08-31+02:00", 120)]
)
def test_a_validity_period_ending_on_a_date_includes_that_day(value: bytes, offset: int) -> None:
    """Read as midnight, a permit 'valid until 31 August' would expire as that day begins."""
    data = _edit(b"<ram:EndDateTime>2024-08-31T23:59:59+00:00", b"<ram:EndDateTime>" + value)
    permit = _read(data)
    zone = timezone(timedelta(minutes=offset))
    assert permit.valid_until == datetime(2024, 8, 31, 23, 59, 59, tzinfo=zone)
    start = _edit(b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00", b"<ram:IssueDateTime>" + value)
    assert _read(start).issued_at == datetime(2024, 8, 31, tzinfo=zone)


def _error(data: bytes) -> tuple[str, str | None, int | None, str]:
    with pytest.raises(EpixError) as caught:
        _read(data)
    finding = caught.value.findings[0]
    return finding.code, finding.location, finding.line, finding.message


@pytest.mark.parametrize("value", [b"9999-12-31T23:59:59-14:00", b"0001-01-01T00:00:00+14:00"])
def test_a_moment_outside_the_years_1_to_9999_in_utc_is_a_bad_value(value: bytes) -> None:
    """Read as given it would overflow wherever it is turned into UTC (storing the permit)."""
    data = _edit(b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00", b"<ram:IssueDateTime>" + value)
    code, location, _line, message = _error(data)
    assert code == "EPIX-SCHEMA-001"
    assert location is not None and location.endswith("/IssueDateTime")
    assert "is not a valid date and time" in message


def test_the_last_moments_of_year_9999_in_utc_are_read() -> None:
    data = _edit(
        b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00",
        b"<ram:IssueDateTime>9999-12-31T23:59:59+14:00",
    )
    assert _read(data).issued_at == datetime(9999, 12, 31, 9, 59, 59, tzinfo=UTC)


def test_the_first_bad_value_in_reading_order_is_reported() -> None:
    permit = base(lines=2)
    data = write_permit(permit)
    bad_quantity = data.replace(b'unitCode="NAR">400<', b'unitCode="NAR">four hundred<', 1)
    code, location, line, message = _error(bad_quantity)
    assert code == "EPIX-SCHEMA-001"
    assert location == (
        "/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[2]"
        "/TransportLogisticsPackage/ItemQuantity"
    )
    assert message == "ItemQuantity: 'four hundred' is not a valid decimal quantity."
    assert line == bad_quantity.split(b"four hundred")[0].count(b"\n") + 1
    # a bad validity end is read before any line, a bad reference date before the issue date
    both = bad_quantity.replace(
        b"<ram:EndDateTime>2024-08-31T23:59:59+00:00", b"<ram:EndDateTime>x"
    )
    assert _error(both)[1] == (
        "/CITESEPermit/HeaderExchangedDocument/EffectiveSpecifiedPeriod/EndDateTime"
    )
    first = both.replace(
        b"<ram:PurposeCode>",
        b"<ram:ReferenceReferencedDocument><ram:IssueDateTime>soon</ram:IssueDateTime>"
        b"</ram:ReferenceReferencedDocument><ram:PurposeCode>",
    ).replace(b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00", b"<ram:IssueDateTime>y", 1)
    assert _error(first)[1] == (
        "/CITESEPermit/HeaderExchangedDocument/ReferenceReferencedDocument/IssueDateTime"
    )


@pytest.mark.parametrize("value", [b"NaN", b"Infinity", b"-Infinity", b"sNaN", b"1,5"])
def test_non_finite_or_malformed_quantities_are_schema_errors(value: bytes) -> None:
    data = _edit(b'unitCode="NAR">150<', b'unitCode="NAR">' + value + b"<")
    assert _error(data)[0] == "EPIX-SCHEMA-001"


def test_an_unknown_namespace_root_child_leaves_the_permit_empty() -> None:
    data = _edit(b"<rsm:HeaderExchangedDocument>", b'<x:HeaderExchangedDocument xmlns:x="urn:x">')
    data = data.replace(b"</rsm:HeaderExchangedDocument>", b"</x:HeaderExchangedDocument>")
    permit = _read(data)
    assert (permit.number, permit.issued_at, permit.issuing_authority) == (None, None, TradeParty())
    assert len(permit.lines) == 2


# --- lxml's text and attribute rules, as the compiled mapping reads libxml2's nodes ------------


@pytest.mark.parametrize(
    ("city", "expected"),
    [
        (b"<![CDATA[Port ]]>Never", "Port Never"),  # CDATA and text nodes make one text
        (b"Port<!--c--> Never", "Port"),  # the text ends at the first other node
        (b"A &amp; B &#x263A;", "A & B \u263a"),  # references are resolved by the parser
        (b"\xc2\xa0Z\xc3\xbcrich\xe2\x80\x83", "Z\u00fcrich"),  # str.strip's Unicode spaces
        (b"<![CDATA[]]>", None),
    ],
)
def test_text_is_what_lxml_gives_stripped(city: bytes, expected: str | None) -> None:
    data = _edit(
        b"<ram:CityName>Port Never</ram:CityName>", b"<ram:CityName>" + city + b"</ram:CityName>"
    )
    assert _read(data).exporter.address.city == expected


def test_the_unit_is_the_unit_code_attribute_in_no_namespace() -> None:
    data = _edit(b'unitCode="NAR">400<', b'unitCode=" K&amp;G ">400<')
    assert _read(data).lines[1].unit == "K&G"
    foreign = _edit(b'unitCode="NAR">400<', b'xmlns:x="urn:x" x:unitCode="KGM">400<')
    assert _read(foreign).lines[1].unit is None


def test_a_bad_value_is_located_among_its_namesakes_in_its_own_namespace_only() -> None:
    data = write_permit(base(lines=2))
    data = data.replace(b'unitCode="NAR">400<', b'unitCode="NAR">lots<', 1)
    foreign_item = b'<x:IncludedSupplyChainConsignmentItem xmlns:x="urn:x"/>'
    data = data.replace(
        b"<ram:IncludedSupplyChainConsignmentItem>",
        foreign_item + b"<ram:IncludedSupplyChainConsignmentItem>",
        1,
    )
    assert _error(data)[1] == (
        "/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[2]"
        "/TransportLogisticsPackage/ItemQuantity"
    )


def test_a_bad_value_beyond_line_65535_reports_its_line() -> None:
    """libxml2 keeps line numbers above 65535 outside the node's 16-bit field."""
    data = _edit(b"<ram:IssueDateTime>2024-03-01T09:30:00+00:00", b"<ram:IssueDateTime>later")
    data = data.replace(
        b"<rsm:HeaderExchangedDocument>", b"\n" * 70_000 + b"<rsm:HeaderExchangedDocument>", 1
    )
    assert _error(data)[2] == data.split(b">later")[0].count(b"\n") + 1


def test_only_an_element_is_mapped() -> None:
    with pytest.raises(TypeError):
        read_permit(None)  # type: ignore[arg-type]
