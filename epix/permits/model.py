"""The CITES permit/certificate as typed, immutable values: one field per box of the form.

Box numbers follow the standard CITES permit form (Res. Conf. 12.3 Annex 2) and the box map in
the design brief; the XML paths live in ``reader``/``writer``, not here, so the rest of EPIX
reasons about boxes and never about UN/CEFACT element names. Everything optional is ``None``
or an empty tuple: template-generated permits leave most elements empty and the rules, not
the model, decide what a box must hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# UN/EDIFACT 1001 document name codes EPIX gives a meaning to on a permit line.
DOC_ORIGIN_PERMIT = "861"  # box 12: permit/certificate of the country of origin
DOC_LAST_REEXPORT = "811"  # box 12a: certificate of the country of last re-export
DOC_IMPORT_PERMIT = "911"  # import permit an Appendix I export/re-export relies on


def printed_number(number: str) -> str:
    """A permit number as permits print it: capitals, no spaces. People type and write a
    number as they read it ('xb-ar 0012', 'XB-AR0012'); compared in this form, one number is
    one permit. (The check page tries it as epix.js ``printedForm`` does.)"""
    return "".join(number.split()).upper()


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A referenced document: its number, kind (UN/EDIFACT 1001 code), date and validity."""

    id: str | None = None
    type_code: str | None = None
    issued_at: datetime | None = None
    name: str | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class Address:
    street: str | None = None
    city: str | None = None
    postcode: str | None = None
    po_box: str | None = None
    subdivision: str | None = None
    country: str | None = None  # ISO 3166-1 alpha-2
    country_name: str | None = None


@dataclass(frozen=True, slots=True)
class TradeParty:
    """Importer (box 3), exporter (box 4), issuing Management Authority (box 6) or customs."""

    name: str | None = None
    address: Address = Address()
    id: str | None = None
    representative: str | None = None
    signatory: str | None = None  # the authorised signatory person (box 13 signature)

    @property
    def country(self) -> str | None:
        return self.address.country


@dataclass(frozen=True, slots=True)
class Endorsement:
    """Box 14: what customs saw at the border (per line, or for the whole consignment)."""

    occurred_at: datetime | None = None
    quantity: Decimal | None = None
    unit: str | None = None
    port: str | None = None  # UN/LOCODE
    port_name: str | None = None
    authority: str | None = None
    officer: str | None = None


@dataclass(frozen=True, slots=True)
class PermitLine:
    """One specimen line (boxes 7 to 12b, plus its box 14 endorsement).

    ``line_id`` is stable: the item's own ID in the XML, else its 1-based position. Endorsements
    and remaining-quantity ledgers refer to lines by it.
    """

    line_id: str
    scientific_name: str | None = None  # box 7
    common_name: str | None = None  # box 7
    description: str | None = None  # box 8
    term: str | None = None  # box 8 term code
    marks: tuple[str, ...] = ()  # box 9
    appendix: str | None = None  # box 10
    source: str | None = None  # box 10
    quantity: Decimal | None = None  # box 11
    unit: str | None = None  # box 11, UN/ECE Rec. 20 (or a historic CITES unit)
    quota_used: Decimal | None = None  # box 11a
    annual_quota: Decimal | None = None  # box 11a
    quota_unit: str | None = None
    origin_country: str | None = None  # box 12
    origin_country_name: str | None = None
    origin_permit: DocumentRef | None = None  # box 12, document type 861
    reexport_country: str | None = None  # box 12a
    reexport_country_name: str | None = None
    last_reexport: DocumentRef | None = None  # box 12a, document type 811
    import_permit: DocumentRef | None = None  # document type 911
    other_documents: tuple[DocumentRef, ...] = ()
    registered_operation: str | None = None  # box 12b
    acquisition_date: datetime | None = None  # box 12b
    procedure_categories: tuple[str, ...] = ()
    endorsement: Endorsement | None = None  # box 14 (line)


@dataclass(frozen=True, slots=True)
class Permit:
    """A CITES permit or certificate, box by box."""

    document_type: str | None  # box 1: E, R, I, O
    number: str | None  # box 1
    lines: tuple[PermitLine, ...] = ()
    document_name: str | None = None  # box 1, the certificate kind when the type is O
    valid_from: datetime | None = None  # box 2
    valid_until: datetime | None = None  # box 2
    importer: TradeParty = TradeParty()  # box 3
    exporter: TradeParty = TradeParty()  # box 4
    special_conditions: tuple[str, ...] = ()  # box 5
    purpose: str | None = None  # box 5a
    purpose_text: str | None = None
    security_stamp: str | None = None  # box 5b
    issuing_authority: TradeParty = TradeParty()  # box 6
    issued_at: datetime | None = None  # box 13
    place_of_issue: str | None = None  # box 13
    place_of_issue_id: str | None = None
    signed_at: datetime | None = None  # box 13, date of the MA signature
    copy: bool | None = None
    references: tuple[DocumentRef, ...] = ()
    endorsement: Endorsement | None = None  # box 14 (consignment)
    transport_document: DocumentRef | None = None  # box 15

    @property
    def issuing_country(self) -> str | None:
        """The issuing Party: the Management Authority's country, else the trader's on its side."""
        trader = self.importer if self.document_type == "I" else self.exporter
        return self.issuing_authority.country or trader.country

    def line(self, line_id: str) -> PermitLine | None:
        return next((line for line in self.lines if line.line_id == line_id), None)
