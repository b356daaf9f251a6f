"""Code-list and mandatory-box findings name the exact box, on the right line of the permit."""

from __future__ import annotations

import dataclasses

import pytest
from lxml import etree

from epix.errors import Finding
from epix.permits import locations
from epix.permits.codes import check_codes
from epix.permits.model import TradeParty
from epix.permits.rules import check_rules
from epix.permits.samples import demo_permit
from epix.permits.validation import check_codes_and_rules
from epix.permits.writer import write_permit
from epix.xml import parse_xml
from tests.permits.helpers import base, change, change_line

ITEM_2 = "/CITESEPermit/SpecifiedSupplyChainConsignment/IncludedSupplyChainConsignmentItem[2]"


def test_code_findings_of_a_line_point_into_that_line() -> None:
    permit = change_line(
        base(lines=3), 1, appendix="IV", unit="BAG", term="LIV", origin_country="QQ"
    )
    assert check_codes(permit) == [
        Finding(
            "EPIX-CODE-004",
            "Unknown appendix 'IV'.",
            f"{ITEM_2}/IncludedSupplyChainTradeLineItem/TypeCode",
        ),
        Finding(
            "EPIX-CODE-101",
            "The unit of quantity 'BAG' is historic, no longer current.",
            f"{ITEM_2}/TransportLogisticsPackage/ItemQuantity/@unitCode",
        ),
        Finding(
            "EPIX-CODE-007",
            "Country of origin (box 12): 'QQ' is not an ISO 3166-1 alpha-2 code.",
            f"{ITEM_2}/OriginTradeCountry/ID",
        ),
        Finding(
            "EPIX-CODE-102",
            "Line 2: unit 'BAG' is unusual for term 'LIV'.",
            f"{ITEM_2}/TransportLogisticsPackage/ItemQuantity/@unitCode",
        ),
    ]


def test_header_code_findings_point_into_the_header() -> None:
    permit = change(base(), document_type="X", purpose="?")
    assert check_codes(permit) == [
        Finding(
            "EPIX-CODE-001",
            "Unknown document type 'X'.",
            "/CITESEPermit/HeaderExchangedDocument/TypeCode",
        ),
        Finding(
            "EPIX-CODE-002",
            "Unknown purpose code '?'.",
            "/CITESEPermit/HeaderExchangedDocument/PurposeCode",
        ),
    ]


def test_missing_boxes_are_listed_header_first_then_line_by_line() -> None:
    permit = change_line(
        change(base(lines=2), number=None, importer=TradeParty()), 1, quantity=None, unit=None
    )
    assert [(f.message, f.location) for f in check_rules(permit) if f.code == "EPIX-RULE-001"] == [
        ("Box 1: permit number is missing.", "/CITESEPermit/HeaderExchangedDocument/ID"),
        (
            "Box 3: importer name is missing.",
            "/CITESEPermit/SpecifiedSupplyChainConsignment/ConsigneeTradeParty/Name",
        ),
        (
            "Box 3: importer country is missing.",
            "/CITESEPermit/SpecifiedSupplyChainConsignment/ConsigneeTradeParty"
            "/PostalTradeAddress/CountryID",
        ),
        (
            "Line 2, box 11: quantity is missing.",
            f"{ITEM_2}/TransportLogisticsPackage/ItemQuantity",
        ),
        (
            "Line 2, box 11: unit is missing.",
            f"{ITEM_2}/TransportLogisticsPackage/ItemQuantity/@unitCode",
        ),
    ]


def test_a_finding_on_every_line_lists_each_element_s_children_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Line numbers for N findings cost O(N): a 4,000-line permit with one warning a line took
    15 s of CPU when each finding listed every consignment item again."""
    lines = 300
    permit = demo_permit(lines=lines)
    permit = dataclasses.replace(
        permit,
        lines=tuple(dataclasses.replace(line, term="SKI", unit="LTR") for line in permit.lines),
    )
    element = parse_xml(write_permit(permit))
    listed: list[int] = []
    group = locations.children_by_name

    def counting(node: etree._Element) -> dict[str, list[etree._Element]]:
        groups = group(node)
        listed.append(sum(len(children) for children in groups.values()))
        return groups

    monkeypatch.setattr(locations, "children_by_name", counting)
    findings = check_codes_and_rules(permit, element)
    unusual = [finding for finding in findings if finding.code == "EPIX-CODE-102"]
    assert len(unusual) == lines
    numbers = [finding.line or 0 for finding in unusual]
    assert all(numbers)
    assert numbers == sorted(set(numbers))  # each on its own line, in document order
    items = element.findall(".//{*}IncludedSupplyChainConsignmentItem")
    assert numbers == [
        item.find("{*}TransportLogisticsPackage/{*}ItemQuantity").sourceline  # type: ignore[union-attr]
        for item in items
    ]
    assert sum(listed) < 20 * lines  # was every item listed again for each finding
