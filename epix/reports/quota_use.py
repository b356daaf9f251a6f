"""How much of each published export quota a Party's exports used in a year, across permits.

Screening sees one permit at a time (and box 11a, the issuer's own count); only the year's
records together show that two permits under the quota each add up to more than it. The
quotas are the published ones ``epix.compliance`` screens with; a record counts against every
quota that covers its taxon (a synonym as its accepted name, a row by the taxon's Species+ id
or name, a family or class quota by the taxon's higher taxa, as screening counts it),
appendix, term, source and purpose at its date (endorsement, else issue), in the quota's unit
(a number of specimens: NAR, PCS or none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from epix.compliance.quotas import Quota, quota_index
from epix.compliance.screening import same_measure
from epix.compliance.taxonomy import screened_as, taxonomy
from epix.reports.records import TradeRecord


@dataclass(slots=True)
class QuotaUse:
    """One quota and the year's exports counted against it."""

    quota: Quota
    used: Decimal = Decimal(0)
    permits: list[str] = field(default_factory=list)
    other_units: list[str] = field(default_factory=list)  # covered, in a unit not comparable

    @property
    def over(self) -> bool:
        return self.used > self.quota.quota

    def as_dict(self) -> dict[str, object]:
        quota = self.quota
        return {
            "taxon": quota.taxon,
            "exporter": quota.party,
            "kind": quota.label,
            "scope": quota.scope,
            "quota": format(quota.quota.normalize(), "f"),
            "unit": quota.unit,
            "used": format(self.used.normalize(), "f"),
            "over": self.over,
            "permits": self.permits,
            "not_counted_other_unit": self.other_units,
        }


def quota_use(records: Iterable[TradeRecord], exporter: str) -> list[QuotaUse]:
    """The quotas ``exporter``'s export permits (type E, the ones screening holds to export
    quotas) of the year fall under, each with their sum."""
    uses: dict[int, QuotaUse] = {}  # by id(): one entry per table row, two rows alike included
    for record in records:
        when = record.endorsed_on or record.issued_on
        if record.permit_type != "E" or record.taxon is None or when is None:
            continue
        taxon, within, ids = screened_as(record.taxon, taxonomy().naming(record.taxon))
        covering = quota_index().covering(
            exporter=exporter,
            taxon=taxon,
            appendix=record.appendix,
            term=record.term,
            source=record.source,
            purpose=record.purpose,
            at=when,
            within=within,
            ids=ids,
        )
        for quota in covering:
            use = uses.setdefault(id(quota), QuotaUse(quota))
            if not same_measure(record.unit, quota.unit):
                named = use.other_units
            else:
                use.used += record.quantity
                named = use.permits
            if record.permit_number not in named:  # a permit's other lines name it again
                named.append(record.permit_number)
    return list(uses.values())
