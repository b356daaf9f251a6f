"""The endorsement document (``urn:epix:endorsement:1``): write, schema-check and read.

An endorsement is its own signed document. It points at the permit by issuing Party, number
and the SHA-256 of the signed permit bytes, so the permit's signed bytes stay untouched and
anyone holding both can check which exact permit was endorsed.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum

from lxml import etree

from epix.errors import EpixError, Finding
from epix.xml import load_schema
from epix.xml.namespaces import EPIX_ENDORSEMENT

SCHEMA_PATH = "epix/endorsement.xsd"
VERSION = "1.0"
_NS = {"e": EPIX_ENDORSEMENT}
# Lines one endorsement may hold: as many as the JSON routes take. A Line is three elements
# (Line, LineID, ActualQuantity); the header and the signature need fewer than 64 more.
MAX_LINES = 1000
MAX_ELEMENTS = 3 * MAX_LINES + 64


class Side(StrEnum):
    """Which border the endorsement was made at."""

    EXPORT = "export"  # export endorsement, permit box 14
    IMPORT = "import"  # import inspection, Art. VI.6: uses up the permit


@dataclass(frozen=True, slots=True)
class EndorsedLine:
    line_id: str
    quantity: Decimal
    unit: str


@dataclass(frozen=True, slots=True)
class EndorsementDocument:
    """The business content of one endorsement, exactly what is signed."""

    endorsement_id: str
    side: Side
    issuing_party: str
    permit_number: str
    permit_sha256: str
    endorsing_party: str
    authority: str
    officer: str
    port: str
    endorsed_on: date
    transport_document: str
    declaration_reference: str | None
    issued_at: datetime
    lines: tuple[EndorsedLine, ...]


def format_quantity(value: Decimal) -> str:
    """Plain decimal notation without exponent or trailing zeros (``12.5``, ``100``)."""
    return format(value.normalize(), "f")


def write_endorsement(document: EndorsementDocument) -> bytes:
    """The unsigned XML of an endorsement, ready for EPIX-DSIG-1 signing."""

    def sub(parent: etree._Element, name: str, text: str) -> etree._Element:
        child = etree.SubElement(parent, f"{{{EPIX_ENDORSEMENT}}}{name}")
        child.text = text
        return child

    root = etree.Element(
        f"{{{EPIX_ENDORSEMENT}}}Endorsement",
        nsmap={None: EPIX_ENDORSEMENT},  # type: ignore[dict-item]  # lxml: None = default ns
    )
    root.set("version", VERSION)
    sub(root, "ID", document.endorsement_id)
    sub(root, "Side", document.side.value)
    permit = etree.SubElement(root, f"{{{EPIX_ENDORSEMENT}}}Permit")
    sub(permit, "IssuingParty", document.issuing_party)
    sub(permit, "Number", document.permit_number)
    sub(permit, "SHA256", document.permit_sha256)
    sub(root, "EndorsingParty", document.endorsing_party)
    sub(root, "Authority", document.authority)
    sub(root, "Officer", document.officer)
    sub(root, "Port", document.port)
    sub(root, "Date", document.endorsed_on.isoformat())
    sub(root, "TransportDocumentID", document.transport_document)
    if document.declaration_reference is not None:
        sub(root, "DeclarationReference", document.declaration_reference)
    issued = document.issued_at.astimezone(UTC).isoformat(timespec="milliseconds")
    sub(root, "IssuedAt", issued.replace("+00:00", "Z"))
    for line in document.lines:
        element = etree.SubElement(root, f"{{{EPIX_ENDORSEMENT}}}Line")
        sub(element, "LineID", line.line_id)
        quantity = sub(element, "ActualQuantity", format_quantity(line.quantity))
        quantity.set("unitCode", line.unit)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def check_schema(root: etree._Element) -> list[Finding]:
    """Schema findings (``EPIX-SCHEMA-001``) for an endorsement element; empty when valid."""
    if root.tag != f"{{{EPIX_ENDORSEMENT}}}Endorsement":
        return [
            Finding(
                "EPIX-XML-005",
                f"Expected an Endorsement in {EPIX_ENDORSEMENT}, got {root.tag}.",
                location="/",
            )
        ]
    # libxml2 names each schema error's element by counting its preceding siblings, so a
    # document of n invalid Lines cost O(n^2) to validate (50,000 Lines, 4 MB: 8.7 s).
    elements = sum(1 for _ in itertools.islice(root.iter(), MAX_ELEMENTS + 1))
    if elements > MAX_ELEMENTS:
        return [
            Finding(
                "EPIX-XML-008",
                f"An endorsement has at most {MAX_ELEMENTS} elements, enough for "
                f"{MAX_LINES} lines and the signature; this one has more.",
                location="/",
            )
        ]
    schema = load_schema(SCHEMA_PATH)
    if schema.validate(root):
        return []
    return [
        Finding("EPIX-SCHEMA-001", error.message, location=error.path, line=error.line)
        for error in schema.error_log  # type: ignore[attr-defined]  # stubs lack __iter__
    ]


def _text(root: etree._Element, path: str) -> str:
    found = root.find(path, _NS)
    if found is None or found.text is None:
        raise EpixError.of("EPIX-SCHEMA-001", f"{path} is missing.", location=path)
    return found.text.strip()


# xs:date may carry a timezone ("2026-01-02Z", "2026-01-02+01:00"); the border date is the
# calendar day, so the suffix is dropped before Python reads it.
_DATE_ZONE = re.compile(r"(Z|[+-]\d{2}:\d{2})$")


def _moment(root: etree._Element, path: str) -> datetime:
    """The moment in UTC. xs:dateTime values Python cannot represent (year 10000, 24:00:00,
    or a year-1 time east of UTC and a year-9999 one west of it, which have no UTC moment)
    are refused, not crashed on: the schema accepts them, ``datetime`` does not."""
    value = _text(root, path)
    try:
        moment = datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise EpixError.of(
            "EPIX-SCHEMA-001", f"'{value}' is not a supported date and time.", location=path
        ) from None


def _day(root: etree._Element, path: str) -> date:
    value = _text(root, path)
    try:
        return date.fromisoformat(_DATE_ZONE.sub("", value))
    except ValueError:
        raise EpixError.of(
            "EPIX-SCHEMA-001", f"'{value}' is not a supported date.", location=path
        ) from None


def _read_line(element: etree._Element) -> EndorsedLine:
    quantity = element.find("e:ActualQuantity", _NS)
    if quantity is None or quantity.text is None:
        raise EpixError.of("EPIX-SCHEMA-001", "ActualQuantity is missing.", location="Line")
    return EndorsedLine(
        line_id=_text(element, "e:LineID"),
        quantity=Decimal(quantity.text.strip()),
        unit=str(quantity.get("unitCode", "")),
    )


def read_endorsement(root: etree._Element) -> EndorsementDocument:
    """The content of a schema-valid endorsement element (call ``check_schema`` first)."""
    findings = check_schema(root)
    if findings:
        raise EpixError(findings)
    declaration = root.find("e:DeclarationReference", _NS)
    lines = tuple(_read_line(line) for line in root.iterfind("e:Line", _NS))
    issued_at = _moment(root, "e:IssuedAt")
    return EndorsementDocument(
        endorsement_id=_text(root, "e:ID"),
        side=Side(_text(root, "e:Side")),
        issuing_party=_text(root, "e:Permit/e:IssuingParty"),
        permit_number=_text(root, "e:Permit/e:Number"),
        permit_sha256=_text(root, "e:Permit/e:SHA256"),
        endorsing_party=_text(root, "e:EndorsingParty"),
        authority=_text(root, "e:Authority"),
        officer=_text(root, "e:Officer"),
        port=_text(root, "e:Port"),
        endorsed_on=_day(root, "e:Date"),
        transport_document=_text(root, "e:TransportDocumentID"),
        declaration_reference=(
            declaration.text.strip() if declaration is not None and declaration.text else None
        ),
        issued_at=issued_at,
        lines=lines,
    )
