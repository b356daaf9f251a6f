"""A realistic, valid, current export permit for demos, tests and benchmarks.

It passes the schema, code lists, business rules and compliance screening without a single
warning, so any finding a test sees comes from the change the test made. The Parties default to
the ISO 3166 user-assigned codes XA/XB, which EPIX accepts as test Parties.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from epix.permits.model import Address, DocumentRef, Permit, PermitLine, TradeParty
from epix.permits.rules import add_months


@dataclass(frozen=True, slots=True)
class _Specimen:
    scientific_name: str
    common_name: str
    description: str
    term: str
    quantity: Decimal
    unit: str
    appendix: str = "II"
    source: str = "W"


_SPECIMENS = (
    _Specimen(
        "Python reticulatus",
        "Reticulated python",
        "tanned skins, whole",
        "SKI",
        Decimal("150"),
        "NAR",
    ),
    _Specimen(
        "Crocodylus niloticus",
        "Nile crocodile",
        "watch straps",
        "LPS",
        Decimal("400"),
        "NAR",
        source="C",
    ),
    _Specimen(
        "Aloe ferox", "Cape aloe", "dried leaf extract (bitters)", "EXT", Decimal("1250.5"), "KGM"
    ),
    _Specimen(
        "Varanus salvator", "Water monitor", "tanned skins, flanks", "SKI", Decimal("75"), "NAR"
    ),
)


def _party(
    name: str, street: str, city: str, postcode: str, country: str, label: str, contact: str
) -> TradeParty:
    return TradeParty(
        name=name,
        representative=contact,
        address=Address(
            street=street, city=city, postcode=postcode, country=country, country_name=label
        ),
    )


def demo_permit(
    *,
    number: str = "XA-2024-000123",
    exporter_country: str = "XA",
    importer_country: str = "XB",
    issued: date | None = None,
    lines: int = 4,
    document_type: str = "E",
    purpose: str = "T",
) -> Permit:
    """A valid export permit with ``lines`` specimen lines, issued at 09:30 UTC on ``issued``,
    or by default at the start of today (UTC), so that a permit made now is valid now, whatever
    the hour."""
    day = issued or datetime.now(UTC).date()
    issued_at = datetime.combine(day, time(9, 30) if issued else time(0, 0), tzinfo=UTC)
    valid_until = datetime.combine(add_months(day, 6) - timedelta(days=1), time(23, 59, 59), UTC)
    specimens = [_SPECIMENS[index % len(_SPECIMENS)] for index in range(lines)]
    permit_lines = tuple(
        PermitLine(
            line_id=str(index),
            scientific_name=specimen.scientific_name,
            common_name=specimen.common_name,
            description=specimen.description,
            term=specimen.term,
            marks=(f"{number}/{index}", f"CRATE {index:03d}"),
            appendix=specimen.appendix,
            source=specimen.source,
            quantity=specimen.quantity,
            unit=specimen.unit,
            quota_used=Decimal("1200") if index == 1 else None,
            annual_quota=Decimal("5000") if index == 1 else None,
            quota_unit="NAR" if index == 1 else None,
        )
        for index, specimen in enumerate(specimens, start=1)
    )
    return Permit(
        document_type=document_type,
        number=number,
        issued_at=issued_at,
        valid_from=issued_at,
        valid_until=valid_until,
        copy=False,
        purpose=purpose,
        special_conditions=(
            "Live specimens must be transported in accordance with the CITES Guidelines for the "
            "non-air transport of live wild animals and plants or the IATA Live Animals "
            "Regulations.",
            "This permit is valid only for one consignment and must be endorsed at export.",
        ),
        security_stamp="SEC-00012345",
        place_of_issue="Neverland City",
        place_of_issue_id=f"{exporter_country}NVC",
        signed_at=issued_at,
        issuing_authority=TradeParty(
            name=f"CITES Management Authority of {exporter_country}",
            address=Address(
                street="1 Ministry Road",
                city="Neverland City",
                postcode="10001",
                country=exporter_country,
                country_name="Neverland",
            ),
            signatory="A. Official, Director",
        ),
        exporter=_party(
            "Neverland Reptile Leather Ltd",
            "12 Tannery Lane",
            "Port Never",
            "10420",
            exporter_country,
            "Neverland",
            "N. Exporter, Export Manager",
        ),
        importer=_party(
            "Wonderland Fashion Imports GmbH",
            "7 Looking-Glass Street",
            "Wonder City",
            "20815",
            importer_country,
            "Wonderland",
            "W. Importer, Head of Sourcing",
        ),
        transport_document=DocumentRef(id="176-12345675", type_code="740"),
        lines=permit_lines,
    )
