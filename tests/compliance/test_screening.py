"""Compliance screening warns (never refuses) on quotas, zero quotas, reservations and box 11a."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from epix.compliance import has_reservation, screen_permit
from epix.errors import ERROR_TABLE, Severity
from epix.permits.model import Address, Permit, TradeParty
from epix.permits.samples import demo_permit
from tests.permits.helpers import change, change_line

ISSUED = date(2024, 3, 1)


def exported_from(country: str, **line: object) -> Permit:
    permit = demo_permit(issued=ISSUED, lines=1, exporter_country=country)
    exporter = TradeParty(name="Exporter", address=Address(country=country))
    cleared = change_line(permit, quota_used=None, annual_quota=None, quota_unit=None)
    return change_line(change(cleared, exporter=exporter), **line)


def codes(permit: Permit) -> list[str]:
    return [finding.code for finding in screen_permit(permit)]


def test_demo_permit_raises_no_compliance_warning() -> None:
    assert screen_permit(demo_permit(issued=ISSUED)) == []


def test_zero_quota_is_flagged() -> None:
    permit = exported_from("MX", scientific_name="Crocodylus acutus", source="W")
    assert codes(permit) == ["EPIX-COMP-002"]
    assert codes(exported_from("MX", scientific_name="Crocodylus acutus", source="C")) == []


def test_trade_over_a_published_quota_is_flagged() -> None:
    leopard = {"scientific_name": "Panthera pardus", "term": "TRO", "unit": "NAR"}
    within = exported_from("NA", quantity=Decimal(2), **leopard)
    assert codes(change(within, purpose="H")) == []
    over = exported_from("NA", quantity=Decimal(2), quota_used=Decimal(249), **leopard)
    over = change_line(over, annual_quota=Decimal(250))
    assert "EPIX-COMP-001" in codes(change(over, purpose="H"))


def test_inconsistent_box_11a_is_flagged() -> None:
    permit = demo_permit(issued=ISSUED, lines=1)
    assert codes(change_line(permit, quota_used=Decimal(10), annual_quota=Decimal(5))) == [
        "EPIX-COMP-004"
    ]
    assert codes(change_line(permit, annual_quota=Decimal(5000), quota_used=None)) == [
        "EPIX-COMP-004"
    ]
    full = change_line(permit, quota_used=Decimal(4900), annual_quota=Decimal(5000))
    assert codes(full) == ["EPIX-COMP-001"]


def test_exporter_reservation_is_flagged() -> None:
    permit = exported_from("NO", scientific_name="Balaenoptera acutorostrata")
    assert "EPIX-COMP-003" in codes(permit)


def test_every_screening_code_is_a_warning() -> None:
    for code in ("EPIX-COMP-001", "EPIX-COMP-002", "EPIX-COMP-003", "EPIX-COMP-004"):
        assert ERROR_TABLE[code].severity is Severity.WARNING


def test_has_reservation_respects_party_taxon_and_dates() -> None:
    assert has_reservation("NO", "Balaenoptera acutorostrata", date(2024, 1, 1))
    assert not has_reservation("XA", "Balaenoptera acutorostrata", date(2024, 1, 1))
    assert not has_reservation("NO", "Python reticulatus", date(2024, 1, 1))
    # Austria's reservation on Equus africanus ran 1983-07-29 to 1989-01-06.
    assert has_reservation("AT", "Equus africanus", date(1985, 1, 1))
    assert not has_reservation("AT", "Equus africanus", date(1990, 1, 1))
