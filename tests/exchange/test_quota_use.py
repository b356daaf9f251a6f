"""Quota use across a year's records (``epix.reports.quota_use``), counted as screening counts
a permit's lines against the published export quotas."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from epix.reports.quota_use import quota_use
from epix.reports.records import TradeRecord


def exported(number: str, name: str, skins: int, permit_type: str = "E") -> TradeRecord:
    """One record of wild skins exported by Tanzania this year (published quota: 1,600 wild
    Nile crocodiles a year)."""
    return TradeRecord(
        *(date.today().year, "export", permit_type, number, date.today(), "TZ", "II", name),
        *("SKI", Decimal(skins), "NAR", "permit issued", "TZ", "XB", None, None, "T", "W"),
        *(None, None, "valid"),
    )


def test_only_export_permits_count_against_an_export_quota() -> None:
    """Screening holds export permits (type E) to the export quotas; a certificate of another
    type (O: pre-Convention, captive-bred...) is an export record, but not quota use."""
    records = [
        exported("TZ-1", "Crocodylus niloticus", 1000),
        exported("TZ-2", "Crocodylus niloticus", 800, permit_type="O"),
    ]
    [use] = quota_use(records, "TZ")
    assert (use.quota.taxon, use.used, use.over, use.permits) == (
        "Crocodylus niloticus",
        Decimal(1000),
        False,
        ["TZ-1"],
    )
