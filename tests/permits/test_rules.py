"""Every business rule of the design brief: a failing and a passing case each."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from epix.permits.model import Address, DocumentRef, Permit, TradeParty
from epix.permits.rules import add_months, check_rules
from epix.permits.validation import validate_permit_bytes
from epix.permits.writer import write_permit
from tests.permits.helpers import ISSUED, SAMPLE, base, change, change_line, codes, validate

VALID = base()
ISSUED_AT = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def reexport(**line_changes: object) -> Permit:
    """A valid re-export certificate from XA of a specimen that came from XC."""
    permit = change_line(
        change(base(lines=1), document_type="R"),
        origin_country="XC",
        origin_permit=DocumentRef(id="XC-2020-1", type_code="861"),
    )
    return change_line(permit, **line_changes)


def party(country: str) -> TradeParty:
    return TradeParty(name="Trader", address=Address(country=country))


def test_demo_permit_breaks_no_rule() -> None:
    report = validate(VALID)
    assert report.valid and report.findings == ()


# --- RULE-001 mandatory boxes --------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"number": None},
        {"document_type": None},
        {"valid_until": None},
        {"purpose": None},
        {"issued_at": None},
        {"importer": TradeParty()},
        {"exporter": TradeParty(name="No address")},
        {"issuing_authority": TradeParty()},
        {"lines": ()},
    ],
)
def test_missing_mandatory_box_is_refused(changes: dict[str, object]) -> None:
    report = validate(change(VALID, **changes))
    assert not report.valid
    assert "EPIX-RULE-001" in {f.code for f in report.findings}
    assert all(f.location and f.line for f in report.findings if f.code == "EPIX-RULE-001")


@pytest.mark.parametrize(
    "field", ["scientific_name", "term", "appendix", "source", "quantity", "unit"]
)
def test_missing_mandatory_line_box_is_refused(field: str) -> None:
    report = validate(change_line(VALID, 1, **{field: None}))
    missing = [f for f in report.findings if f.code == "EPIX-RULE-001"]
    assert missing and "Line 2" in missing[0].message
    assert "IncludedSupplyChainConsignmentItem[2]" in (missing[0].location or "")


# --- RULE-002 exporter = importer ----------------------------------------------------------


def test_exporter_and_importer_in_the_same_country_is_refused() -> None:
    assert "EPIX-RULE-002" in codes(change(VALID, importer=party("XA")))
    assert "EPIX-RULE-002" not in codes(change(VALID, importer=party("XB")))


# --- RULE-003/004/005 validity -------------------------------------------------------------


def test_export_permit_valid_over_six_months_is_refused() -> None:
    six_months = datetime.combine(add_months(ISSUED, 6), datetime.min.time(), UTC)
    assert "EPIX-RULE-003" not in codes(change(VALID, valid_until=six_months))
    assert "EPIX-RULE-003" in codes(change(VALID, valid_until=six_months + timedelta(days=1)))


def test_reexport_certificate_valid_over_six_months_is_refused() -> None:
    long = change(reexport(), valid_until=ISSUED_AT + timedelta(days=200))
    assert "EPIX-RULE-003" in codes(long)


def test_import_permit_may_last_twelve_months_but_not_more() -> None:
    permit = change(VALID, document_type="I", valid_until=ISSUED_AT + timedelta(days=300))
    assert "EPIX-RULE-004" not in codes(permit)
    assert "EPIX-RULE-003" not in codes(permit)
    assert "EPIX-RULE-004" in codes(change(permit, valid_until=ISSUED_AT + timedelta(days=400)))


def test_validity_ending_before_it_starts_or_starting_before_issue_is_refused() -> None:
    assert "EPIX-RULE-005" in codes(change(VALID, valid_until=ISSUED_AT - timedelta(hours=1)))
    assert "EPIX-RULE-005" in codes(change(VALID, valid_from=ISSUED_AT - timedelta(days=2)))
    assert "EPIX-RULE-005" not in codes(VALID)


@pytest.mark.parametrize("document_type", ["E", "R", "I"])
def test_validity_limit_past_year_9999_is_no_traceback(document_type: str) -> None:
    """Issued in the last months of 9999: the limit lies past ``date.max``, so the permit
    cannot exceed it; validation reports findings, never a ValueError."""
    late = datetime(9999, 12, 31, tzinfo=UTC)
    permit = change(VALID, document_type=document_type, issued_at=late, valid_until=late)
    assert not {"EPIX-RULE-003", "EPIX-RULE-004"} & {f.code for f in check_rules(permit)}
    assert not {"EPIX-RULE-003", "EPIX-RULE-004"} & codes(permit)


def test_add_months_clamps_to_the_end_of_the_month() -> None:
    assert add_months(date(2023, 8, 31), 6) == date(2024, 2, 29)
    assert add_months(date(2024, 12, 15), 12) == date(2025, 12, 15)


# --- RULE-006/007/008/015 re-export --------------------------------------------------------


def test_valid_reexport_passes() -> None:
    assert validate(reexport()).findings == ()


def test_reexport_without_origin_country_or_permit_is_refused() -> None:
    assert "EPIX-RULE-006" in codes(reexport(origin_country=None))
    assert "EPIX-RULE-006" in codes(reexport(origin_permit=None))


def test_reexport_whose_origin_is_the_reexporting_party_is_refused() -> None:
    report = validate(reexport(origin_country="XA"))
    assert not report.valid
    assert "EPIX-RULE-007" in {f.code for f in report.findings}


def test_origin_permit_without_number_is_a_warning() -> None:
    report = validate(reexport(origin_permit=DocumentRef(type_code="861", issued_at=ISSUED_AT)))
    assert report.valid
    assert {f.code for f in report.findings} == {"EPIX-RULE-015"}


def test_half_filled_box_12a_is_a_warning() -> None:
    assert "EPIX-RULE-008" in codes(reexport(reexport_country="XD"))
    complete = reexport(reexport_country="XD", last_reexport=DocumentRef(id="XD1", type_code="811"))
    assert "EPIX-RULE-008" not in codes(complete)


# --- RULE-009/016 source D, RULE-010 source O ----------------------------------------------


def test_source_d_outside_appendix_one_is_refused() -> None:
    permit = change_line(VALID, appendix="II", source="D", registered_operation="A-XA-501")
    assert "EPIX-RULE-009" in codes(permit)


def test_source_d_in_appendix_one_with_registered_operation_passes() -> None:
    permit = change_line(VALID, appendix="I", source="D", registered_operation="A-XA-501")
    assert validate(permit).findings == ()


def test_source_d_without_registered_operation_is_a_warning() -> None:
    report = validate(change_line(VALID, appendix="I", source="D"))
    assert report.valid and {f.code for f in report.findings} == {"EPIX-RULE-016"}


def test_pre_convention_specimen_needs_acquisition_date() -> None:
    assert "EPIX-RULE-010" in codes(change_line(VALID, source="O"))
    dated = change_line(VALID, source="O", acquisition_date=datetime(1970, 1, 1, tzinfo=UTC))
    assert "EPIX-RULE-010" not in codes(dated)


# --- RULE-011 Appendix I import permit, RULE-012 Appendix I wild commercial ----------------


def test_appendix_one_export_needs_import_permit_reference() -> None:
    permit = change(change_line(base(lines=1), appendix="I", source="W"), purpose="S")
    assert "EPIX-RULE-011" in codes(permit)
    on_line = change_line(permit, import_permit=DocumentRef(id="XB-IMP-1", type_code="911"))
    assert "EPIX-RULE-011" not in codes(on_line)
    in_header = change(permit, references=(DocumentRef(id="XB-IMP-1", type_code="911"),))
    assert validate(in_header).findings == ()


def sample_line_b(source: str, term: str) -> bytes:
    """The real Toolkit v2 re-export with line B, *Crocodylus siamensis* (Appendix I), from
    ``source`` as ``term`` for personal purposes (P), so only the import-permit rule speaks."""
    data = sample_with_line_b_source(source).replace(
        b"<urn1:PurposeCode>T</urn1:PurposeCode>", b"<urn1:PurposeCode>P</urn1:PurposeCode>"
    )
    line_b_term = b'listAgencyID="?">LPS</urn1:TypeCode>'
    assert data.count(line_b_term) == 2  # line A, then line B
    first = data.index(line_b_term) + len(line_b_term)
    return data[:first] + data[first:].replace(
        line_b_term, f'listAgencyID="?">{term}</urn1:TypeCode>'.encode()
    )


def test_a_reexport_needs_the_import_permit_only_for_a_living_appendix_one_specimen() -> None:
    """Art. III.4(c): a re-export certificate for an Appendix I specimen needs the import permit
    granted first only for a living specimen (Art. III.2(d) asks it of every export). The real
    sample re-exports small leather products (LPS) of Crocodylus siamensis: not living."""
    leather = validate_permit_bytes(sample_line_b("W", "LPS"))
    assert "EPIX-RULE-011" not in {f.code for f in leather.findings}
    assert leather.valid, leather.errors
    (live,) = [
        f
        for f in validate_permit_bytes(sample_line_b("W", "LIV")).findings
        if f.code == "EPIX-RULE-011"
    ]
    assert live.message == (
        "Line B: a re-export of a living Appendix I specimen (source W, term LIV) needs the "
        "import permit granted first, referenced as document type 911 (Art. III.4(c))."
    )
    exported = change_line(base(lines=1), appendix="I", source="W", term="LPS")
    assert "EPIX-RULE-011" in codes(change(exported, purpose="P"))


def test_appendix_one_wild_for_commercial_purpose_is_refused() -> None:
    permit = change_line(
        VALID, appendix="I", source="W", import_permit=DocumentRef(id="XB-1", type_code="911")
    )
    assert "EPIX-RULE-012" in codes(permit)
    assert "EPIX-RULE-012" not in codes(change(permit, purpose="S"))


def sample_with_line_b_source(source: str) -> bytes:
    """The real Toolkit v2 sample (a commercial re-export, purpose T) with line B, *Crocodylus
    siamensis* in Appendix I, declared from another source than its D."""
    data = SAMPLE.read_bytes()
    line_b = b"<urn1:TypeExtensionCode>D</urn1:TypeExtensionCode>"
    assert data.count(line_b) == 1
    return data.replace(
        line_b, f"<urn1:TypeExtensionCode>{source}</urn1:TypeExtensionCode>".encode()
    )


@pytest.mark.parametrize("source", ["I", "U", "Y"])
def test_appendix_one_commercial_trade_is_refused_for_every_source_but_d_and_o(source: str) -> None:
    """Art. III.3(c) bars Appendix I specimens from commercial trade whatever their source;
    only pre-Convention (O) and registered-operation (D) specimens are exempt (Art. VII.2, 4).
    Confiscated (I), unknown (U) and assisted-production (Y) specimens are not."""
    report = validate_permit_bytes(sample_with_line_b_source(source))
    refusals = [f for f in report.findings if f.code == "EPIX-RULE-012"]
    assert not report.valid
    assert [f.location for f in refusals] == [
        "/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[2]"
        "/IncludedSupplyChainTradeLineItem/TypeExtensionCode"
    ]
    assert f"source {source}" in refusals[0].message and "Art. III" in refusals[0].message
    for allowed in ("D", "O"):
        codes_found = {
            f.code for f in validate_permit_bytes(sample_with_line_b_source(allowed)).findings
        }
        assert "EPIX-RULE-012" not in codes_found


def test_appendix_one_wild_commercial_is_allowed_when_a_reservation_applies() -> None:
    permit = change_line(VALID, appendix="I", source="W", scientific_name="Reserved species")

    def reservation(party: str, taxon: str, population: str | None, at: datetime) -> bool:
        return party in ("XA", "XB") and taxon == "Reserved species"

    assert "EPIX-RULE-012" not in {f.code for f in check_rules(permit, has_reservation=reservation)}
    assert "EPIX-RULE-012" in {f.code for f in check_rules(permit, has_reservation=None)}


def minke_whale_meat(exporter: str, importer: str) -> Permit:
    """Wild minke whale (Appendix I) for commercial purposes, without an import permit."""
    return change_line(
        change(VALID, exporter=party(exporter), importer=party(importer)),
        appendix="I",
        source="W",
        scientific_name="Balaenoptera acutorostrata",
        term="MEA",
        unit="KGM",
    )


def test_published_reservations_of_both_parties_lift_the_appendix_one_rules() -> None:
    # Norway (since 1986) and Japan (since 1986) both hold reservations on the minke whale:
    # between them it is outside the Convention (Art. XXIII.3), traded as if in Appendix II
    # (Res. Conf. 4.25), with neither an import permit nor a non-commercial purpose.
    found = codes(minke_whale_meat("NO", "JP"))
    assert "EPIX-RULE-012" not in found and "EPIX-RULE-011" not in found


@pytest.mark.parametrize(("exporter", "importer"), [("NO", "DE"), ("DE", "NO"), ("NO", "XB")])
def test_one_partys_reservation_does_not_free_the_other_party(exporter: str, importer: str) -> None:
    """Germany holds no reservation on the minke whale, so it stays bound by Art. III: it
    neither imports Appendix I specimens for commercial purposes nor exports them without an
    import permit, whatever Norway's reservation (Art. XXIII.3 makes only Norway a non-Party)."""
    assert {"EPIX-RULE-011", "EPIX-RULE-012"} <= codes(minke_whale_meat(exporter, importer))


@pytest.mark.parametrize("source", ["A", "C"])
def test_appendix_one_bred_or_propagated_for_commercial_purpose_is_a_warning(source: str) -> None:
    """Art. VII.4: bred or propagated for commercial purposes, an Appendix I specimen is traded
    as source D; A and C are the non-commercial sources of Art. VII.5 (Res. Conf. 12.3)."""
    permit = change_line(VALID, appendix="I", source=source)
    report = validate(permit)
    assert [(f.code, f.severity) for f in report.findings] == [("EPIX-RULE-019", "warning")]
    assert report.valid
    assert "EPIX-RULE-019" not in codes(change(permit, purpose="S"))
    assert "EPIX-RULE-019" not in codes(change_line(permit, appendix="II"))
    assert "EPIX-RULE-019" not in codes(
        change_line(permit, source="D", registered_operation="A-XA-501")
    )


# --- RULE-013, 014, 017, 018 ---------------------------------------------------------------


@pytest.mark.parametrize("quantity", [Decimal(0), Decimal(-3)])
def test_quantity_must_be_positive(quantity: Decimal) -> None:
    assert "EPIX-RULE-013" in codes(change_line(VALID, quantity=quantity))


def test_permit_number_over_35_characters_is_refused() -> None:
    assert "EPIX-RULE-014" in codes(change(VALID, number="X" * 36))
    assert "EPIX-RULE-014" not in codes(change(VALID, number="X" * 35))


@pytest.mark.parametrize(
    ("end_tag", "second", "where"),
    [
        (
            b"</ram:TransportLogisticsPackage>",
            b'<ram:TransportLogisticsPackage><ram:ItemQuantity unitCode="NAR">900'
            b"</ram:ItemQuantity></ram:TransportLogisticsPackage>",
            "TransportLogisticsPackage",
        ),
        (
            b"</ram:ScientificName>",
            b"<ram:ScientificName>Crocodylus siamensis</ram:ScientificName>",
            "IncludedSupplyChainTradeLineItem/SpecifiedTradeProduct/ScientificName",
        ),
        (
            b"</ram:IncludedSupplyChainTradeLineItem>",
            b"<ram:IncludedSupplyChainTradeLineItem><ram:TypeCode>I</ram:TypeCode>"
            b"</ram:IncludedSupplyChainTradeLineItem>",
            "IncludedSupplyChainTradeLineItem",
        ),
    ],
    ids=["package", "scientific name", "trade line"],
)
def test_a_line_that_states_a_box_twice_is_refused(
    end_tag: bytes, second: bytes, where: str
) -> None:
    """The schema lets these repeat; the model reads the first, so a second quantity or
    species would pass unseen by the border check and the ledger."""
    data = write_permit(base(lines=2))
    at = data.rindex(end_tag) + len(end_tag)  # in the second line
    report = validate_permit_bytes(data[:at] + second + data[at:])
    assert [f.code for f in report.findings] == ["EPIX-RULE-020"]
    finding = report.findings[0]
    assert finding.location == (
        f"/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[2]/{where}"
    )
    assert finding.line is not None and finding.message.startswith("Line 2 repeats its ")
    assert validate_permit_bytes(data).findings == ()


def test_two_purpose_codes_are_refused() -> None:
    data = write_permit(VALID).replace(
        b"<ram:PurposeCode>T</ram:PurposeCode>",
        b"<ram:PurposeCode>T</ram:PurposeCode><ram:PurposeCode>S</ram:PurposeCode>",
    )
    report = validate_permit_bytes(data)
    assert [f.code for f in report.findings] == ["EPIX-RULE-017"]
    assert report.findings[0].line is not None


def test_duplicate_line_identifiers_are_refused() -> None:
    assert "EPIX-RULE-018" in codes(change_line(VALID, 1, line_id="1"))


def test_convention_rule_findings_cite_their_article_or_resolution() -> None:
    """A customs officer who is refused a permit is told which provision it breaks."""
    long_export = change(VALID, valid_until=ISSUED_AT + timedelta(days=200))
    long_import = change(VALID, document_type="I", valid_until=ISSUED_AT + timedelta(days=400))
    appendix_one = change_line(base(lines=1), appendix="I", source="W")
    permits = [
        long_export,
        long_import,
        change(reexport(), valid_until=ISSUED_AT + timedelta(days=200)),
        reexport(origin_country=None, origin_permit=None),
        change_line(VALID, source="D"),
        change_line(VALID, source="O"),
        appendix_one,
        change_line(VALID, appendix="I", source="C"),
    ]
    findings = [f for permit in permits for f in validate(permit).findings]
    cited = {"EPIX-RULE-003", "EPIX-RULE-004", "EPIX-RULE-006", "EPIX-RULE-009"}
    cited |= {"EPIX-RULE-010", "EPIX-RULE-011", "EPIX-RULE-012", "EPIX-RULE-016", "EPIX-RULE-019"}
    assert cited <= {f.code for f in findings}
    for finding in findings:
        if finding.code in cited:
            assert "Art. " in finding.message or "Res. Conf. " in finding.message, finding
