"""The Convention's business rules for a permit, each with its own EPIX-RULE code.

Severity is a judgement per rule (see ``epix/errors.py``): what makes a permit unusable under the
Convention is an error; what is suspicious but common in real, template-generated permits (such
as an origin permit referenced by date but without its number, as in the Toolkit v2 sample) is a
warning, so the real instance validates.

Reservations (Art. XXIII) live in ``epix.permits.reservations``; the caller passes a lookup in,
which keeps this module free of that data and easy to test, and lets the node pass
``epix.compliance.has_reservation``, which reads box 7 through the Species+ taxonomy. Appendix
I trade between two Parties that both hold a reservation for the taxon needs neither an import
permit (EPIX-RULE-011) nor a non-commercial purpose (EPIX-RULE-012).
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime

from lxml import etree

from epix.errors import Finding
from epix.permits import locations as loc
from epix.permits.model import DOC_IMPORT_PERMIT, Permit, PermitLine
from epix.xml.namespaces import CITES_PERMIT, CITES_RAM

ReservationCheck = Callable[[str, str, str | None, datetime], bool]
"""``(party, scientific_name, population, at) -> True`` when that Party holds a reservation
covering the taxon box 7 names and the specimen's population (ISO country, None: not shown)."""

MAX_NUMBER_LENGTH = 35
EXPORT_MONTHS = 6  # Art. VI.2
IMPORT_MONTHS = 12  # Res. Conf. 12.3
# Art. III.3(c): an Appendix I specimen is never traded for primarily commercial purposes. Only
# Art. VII lifts that: pre-Convention specimens (O, VII.2) and specimens bred or propagated
# commercially in registered operations (D, VII.4); A and C (VII.5) are rule 019's warning.
# Every other source is refused for purpose T: wild, ranched and F1 specimens, and equally the
# confiscated (I), the unknown (U) and plants from assisted production (Y, Res. Conf. 11.11),
# which are not artificially propagated.
NON_COMMERCIAL_SOURCES = frozenset("WXFRIUY")
# Art. III.2(d) makes the import permit a condition of every Appendix I export; Art. III.4(c)
# of a re-export only for a living specimen (live animals or plants, live eggs).
_IMPORT_PERMIT_FIRST = {"E": ("an export", "Art. III.2(d)"), "R": ("a re-export", "Art. III.4(c)")}
LIVE_TERMS = frozenset({"LIV", "EGL"})
# Art. VII.2, 4 and 5: pre-Convention, captive-bred/artificially propagated and registered
# operations trade without an import permit being required first.
NO_IMPORT_PERMIT_SOURCES = frozenset("ACDO")


def add_months(day: date, months: int) -> date:
    """``day`` plus calendar months, clamped to the month's last day (31 Aug + 6 = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    if day.day <= 28:  # every month has the day: no calendar lookup
        return date(year, month, day.day)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


_HEADER_BOXES = (
    ("Box 1: document type", loc.DOCUMENT_TYPE),
    ("Box 1: permit number", loc.NUMBER),
    ("Box 2: valid until", loc.VALID_UNTIL),
    ("Box 3: importer name", f"{loc.IMPORTER}/Name"),
    ("Box 3: importer country", loc.IMPORTER_COUNTRY),
    ("Box 4: exporter name", f"{loc.EXPORTER}/Name"),
    ("Box 4: exporter country", loc.EXPORTER_COUNTRY),
    ("Box 5a: purpose of the transaction", loc.PURPOSE),
    ("Box 6: issuing Management Authority", loc.AUTHORITY_NAME),
    ("Box 13: date of issue", loc.ISSUED),
)
_LINE_BOXES = (
    ("box 7: scientific name", loc.SCIENTIFIC_NAME),
    ("box 8: term code", loc.TERM),
    ("box 10: appendix", loc.APPENDIX),
    ("box 10: source", loc.SOURCE),
    ("box 11: quantity", loc.QUANTITY),
    ("box 11: unit", loc.UNIT),
)


def _mandatory(permit: Permit) -> list[Finding]:
    """EPIX-RULE-001 for every empty mandatory box; a complete permit builds no message."""
    missing: list[tuple[str, str]] = []
    importer, exporter = permit.importer, permit.exporter
    values = (
        permit.document_type,
        permit.number,
        permit.valid_until,
        importer.name,
        importer.address.country,
        exporter.name,
        exporter.address.country,
        permit.purpose,
        permit.issuing_authority.name,
        permit.issued_at,
    )
    if None in values:
        missing += [box for value, box in zip(values, _HEADER_BOXES, strict=True) if value is None]
    if not permit.lines:
        missing.append(("Boxes 7-12: at least one specimen line", loc.ITEMS))
    for index, line in enumerate(permit.lines, start=1):
        if (  # identity tests: ``None in boxes`` would call each value's ``__eq__``
            line.scientific_name is not None
            and line.term is not None
            and line.appendix is not None
            and line.source is not None
            and line.quantity is not None
            and line.unit is not None
        ):
            continue
        boxes = (line.scientific_name, line.term, line.appendix, line.source, line.quantity)
        missing += [
            (f"Line {line.line_id}, {what}", loc.line(index, where))
            for value, (what, where) in zip((*boxes, line.unit), _LINE_BOXES, strict=True)
            if value is None
        ]
    return [Finding("EPIX-RULE-001", f"{what} is missing.", where) for what, where in missing]


def _parties(permit: Permit) -> list[Finding]:
    exporter, importer = permit.exporter.country, permit.importer.country
    if exporter is not None and exporter == importer:
        return [
            Finding(
                "EPIX-RULE-002",
                f"Exporter (box 4) and importer (box 3) are both in '{exporter}'.",
                loc.IMPORTER_COUNTRY,
            )
        ]
    return []


_VALIDITY_LIMITS = {
    "E": ("EPIX-RULE-003", EXPORT_MONTHS, "Art. VI.2"),
    "R": ("EPIX-RULE-003", EXPORT_MONTHS, "Res. Conf. 12.3"),
    "I": ("EPIX-RULE-004", IMPORT_MONTHS, "Res. Conf. 12.3"),
}


def _validity(permit: Permit) -> list[Finding]:
    findings: list[Finding] = []
    start, end, issued = permit.valid_from, permit.valid_until, permit.issued_at
    if start is not None and end is not None and end < start:
        findings.append(
            Finding(
                "EPIX-RULE-005",
                f"Validity ends ({end.isoformat()}) before it starts ({start.isoformat()}).",
                loc.VALID_UNTIL,
            )
        )
    if start is not None and issued is not None and start.date() < issued.date():
        findings.append(
            Finding(
                "EPIX-RULE-005",
                f"Validity starts ({start.date()}) before the date of issue ({issued.date()}).",
                loc.VALID_FROM,
            )
        )
    granted = issued or start
    if granted is None or end is None:
        return findings
    limit = _VALIDITY_LIMITS.get(permit.document_type or "")
    if limit is not None:
        code, months, source = limit
        try:
            latest = add_months(granted.date(), months)
        except ValueError:  # the limit lies past 9999-12-31, later than any date can be
            return findings
        if end.date() > latest:
            findings.append(
                Finding(
                    code,
                    f"Valid until {end.date()} (box 2), more than {months} months after "
                    f"{granted.date()} (latest {latest}, {source}).",
                    loc.VALID_UNTIL,
                )
            )
    return findings


def _reexport(permit: Permit, index: int, line: PermitLine) -> list[Finding]:
    findings: list[Finding] = []
    where = loc.line(index)
    if line.origin_country is None:
        findings.append(
            Finding(
                "EPIX-RULE-006",
                f"Line {line.line_id}: a re-export needs the country of origin (box 12, "
                "Res. Conf. 12.3).",
                loc.line(index, loc.ORIGIN),
            )
        )
    elif line.origin_country == permit.issuing_country:
        findings.append(
            Finding(
                "EPIX-RULE-007",
                f"Line {line.line_id}: the country of origin '{line.origin_country}' is the "
                "re-exporting Party; that is an export, not a re-export.",
                loc.line(index, loc.ORIGIN),
            )
        )
    if line.origin_permit is None:
        findings.append(
            Finding(
                "EPIX-RULE-006",
                f"Line {line.line_id}: a re-export needs the origin permit (box 12, "
                "Res. Conf. 12.3).",
                f"{where}/{loc.DOCUMENTS}",
            )
        )
    elif line.origin_permit.id is None:
        findings.append(
            Finding(
                "EPIX-RULE-015",
                f"Line {line.line_id}: the origin permit (box 12) has no number.",
                f"{where}/{loc.DOCUMENTS}",
            )
        )
    has_country = line.reexport_country is not None
    has_certificate = line.last_reexport is not None and line.last_reexport.id is not None
    if has_country != has_certificate:
        lacking = "certificate number" if has_country else "country"
        findings.append(
            Finding(
                "EPIX-RULE-008",
                f"Line {line.line_id}: box 12a names a last re-export without its {lacking}.",
                loc.line(index, loc.LAST_REEXPORT_COUNTRY),
            )
        )
    return findings


def _import_permit_referenced(permit: Permit, line: PermitLine) -> bool:
    if line.import_permit is not None and line.import_permit.id is not None:
        return True
    return any(ref.type_code == DOC_IMPORT_PERMIT and ref.id for ref in permit.references)


def _line_rules(
    permit: Permit, index: int, line: PermitLine, has_reservation: ReservationCheck | None
) -> list[Finding]:
    findings: list[Finding] = []
    if permit.document_type == "R":
        findings += _reexport(permit, index, line)
    if line.source == "D":
        if line.appendix not in (None, "I"):
            findings.append(
                Finding(
                    "EPIX-RULE-009",
                    f"Line {line.line_id}: source D is only for Appendix I specimens from "
                    f"registered operations (Art. VII.4, Res. Conf. 12.3); box 10 says Appendix "
                    f"{line.appendix}.",
                    loc.line(index, loc.SOURCE),
                )
            )
        if line.registered_operation is None:
            findings.append(
                Finding(
                    "EPIX-RULE-016",
                    f"Line {line.line_id}: source D without the registered operation number "
                    "(box 12b, Res. Conf. 12.10).",
                    loc.line(index, loc.OPERATION),
                )
            )
    if line.source == "O" and line.acquisition_date is None:
        findings.append(
            Finding(
                "EPIX-RULE-010",
                f"Line {line.line_id}: a pre-Convention specimen (source O) needs its "
                "acquisition date (box 12b, Art. VII.2).",
                loc.line(index, loc.ACQUISITION),
            )
        )
    appendix_one = line.appendix == "I"
    article = _IMPORT_PERMIT_FIRST.get(permit.document_type or "")
    if (
        article is not None
        and appendix_one
        and (permit.document_type == "E" or line.term in LIVE_TERMS)
        and line.source not in NO_IMPORT_PERMIT_SOURCES
        and not _import_permit_referenced(permit, line)
        and not reserved_by_both(permit, line, has_reservation)
    ):
        specimen = "an Appendix I" if permit.document_type == "E" else "a living Appendix I"
        findings.append(
            Finding(
                "EPIX-RULE-011",
                f"Line {line.line_id}: {article[0]} of {specimen} specimen (source "
                f"{line.source}, term {line.term}) needs the import permit granted first, "
                f"referenced as document type {DOC_IMPORT_PERMIT} ({article[1]}).",
                f"{loc.line(index)}/{loc.DOCUMENTS}",
            )
        )
    refused_commercial = (
        appendix_one and line.source in NON_COMMERCIAL_SOURCES and permit.purpose == "T"
    )
    if refused_commercial and not reserved_by_both(permit, line, has_reservation):
        findings.append(
            Finding(
                "EPIX-RULE-012",
                f"Line {line.line_id}: Appendix I specimens of source {line.source} may not be "
                "traded for commercial purposes (T, Art. III.3(c)); only pre-Convention (O) or "
                "registered captive-bred or propagated (D) specimens may, unless a reservation "
                "applies (Art. XXIII).",
                loc.line(index, loc.SOURCE),
            )
        )
    bred_commercial = appendix_one and line.source in ("A", "C") and permit.purpose == "T"
    if bred_commercial and not reserved_by_both(permit, line, has_reservation):
        findings.append(
            Finding(
                "EPIX-RULE-019",
                f"Line {line.line_id}: Appendix I specimens bred in captivity or artificially "
                f"propagated for commercial purposes (T) are traded as source D from registered "
                f"operations (Art. VII.4); source {line.source} is for non-commercial trade "
                "(Art. VII.5).",
                loc.line(index, loc.SOURCE),
            )
        )
    if line.quantity is not None and line.quantity <= 0:
        findings.append(
            Finding(
                "EPIX-RULE-013",
                f"Line {line.line_id}: the quantity {line.quantity} is not positive.",
                loc.line(index, loc.QUANTITY),
            )
        )
    return findings


def specimen_population(permit: Permit, line: PermitLine) -> str | None:
    """The country whose population the specimen comes from, as far as the permit shows it:
    the country of origin (box 12), else for an export the exporting Party (a specimen imported
    before leaves as a re-export, Art. I(d)); None when the permit does not say."""
    if line.origin_country is not None:
        return line.origin_country
    return permit.exporter.country if permit.document_type == "E" else None


def reserved_by_both(
    permit: Permit, line: PermitLine, has_reservation: ReservationCheck | None
) -> bool:
    """True when both the exporting and the importing Party hold a reservation for the taxon.

    A reserving Party is a non-Party for that taxon (Art. XXIII.3), but the other Party is still
    bound: a Party without the reservation exports Appendix I only against an import permit
    and imports it only when not for primarily commercial purposes (Art. III). So the
    Convention's Appendix I controls fall away only between two reserving Parties (as for
    whale meat between Iceland, Japan and Norway), never because one side reserved."""
    exporter, importer = permit.exporter.country, permit.importer.country
    if has_reservation is None or line.scientific_name is None or not exporter or not importer:
        return False
    at = permit.issued_at or permit.valid_from or datetime.now(UTC)
    population = specimen_population(permit, line)
    return has_reservation(exporter, line.scientific_name, population, at) and has_reservation(
        importer, line.scientific_name, population, at
    )


def check_rules(
    permit: Permit, *, has_reservation: ReservationCheck | None = None
) -> list[Finding]:
    """Every business rule of the design brief, applied to the permit's boxes."""
    findings = _mandatory(permit) + _parties(permit) + _validity(permit)
    if permit.number is not None and len(permit.number) > MAX_NUMBER_LENGTH:
        findings.append(
            Finding(
                "EPIX-RULE-014",
                f"The permit number has {len(permit.number)} characters; at most "
                f"{MAX_NUMBER_LENGTH} are allowed.",
                loc.NUMBER,
            )
        )
    line_ids = [line.line_id for line in permit.lines]
    repeated = Counter(line_ids).items() if len(set(line_ids)) < len(line_ids) else ()
    for line_id, count in repeated:
        if count > 1:
            findings.append(
                Finding(
                    "EPIX-RULE-018", f"{count} lines carry the identifier '{line_id}'.", loc.ITEMS
                )
            )
    for index, line in enumerate(permit.lines, start=1):
        findings += _line_rules(permit, index, line, has_reservation)
    return findings


_NAMESPACES = {"p": CITES_PERMIT, "r": CITES_RAM}
_PURPOSE_CODES = etree.XPath(
    "count(p:HeaderExchangedDocument/r:PurposeCode[normalize-space()])",
    namespaces=_NAMESPACES,
    regexp=False,  # no EXSLT regular expressions to register on every call (~0.2 us)
)


# Aggregates the UN/CEFACT schema lets repeat inside a line, though each states a box once. The
# model (so the border check and the ledger) reads the first, so a second would go unseen.
_ONCE_PER_LINE = (
    ("IncludedSupplyChainTradeLineItem", "trade line (boxes 7, 8 and 10)"),
    ("TransportLogisticsPackage", "package with the quantity (box 11)"),
    (loc.SCIENTIFIC_NAME, "scientific name (box 7)"),
)


def _second(path: str) -> str:
    """XPath to a second occurrence of ``path``'s last step under one parent."""
    return "/".join(f"r:{step}" for step in path.split("/")) + "[2]"


_ITEMS = "p:SpecifiedSupplyChainConsignment/r:IncludedSupplyChainConsignmentItem"
_ANY_REPEATED_IN_A_LINE = etree.XPath(
    f"boolean({_ITEMS}[{' or '.join(_second(path) for path, _ in _ONCE_PER_LINE)}])",
    namespaces=_NAMESPACES,
    regexp=False,
)
_REPEATED = tuple(
    (etree.XPath(f"boolean({_second(path)})", namespaces=_NAMESPACES, regexp=False), path, what)
    for path, what in _ONCE_PER_LINE
)


def _repeated_in_lines(element: etree._Element) -> list[Finding]:
    findings = []
    for index, item in enumerate(element.iterfind(_ITEMS, _NAMESPACES), start=1):
        for repeated, path, what in _REPEATED:
            if repeated(item) is True:
                findings.append(
                    Finding(
                        "EPIX-RULE-020",
                        f"Line {index} repeats its {what}; a line states it once, and only the "
                        "first would be read.",
                        loc.line(index, path),
                    )
                )
    return findings


def check_element_rules(element: etree._Element) -> list[Finding]:
    """Rules the model cannot see because it keeps one value per box (box 5a's repetitions,
    a line's repeated trade line, package or scientific name)."""
    findings = []
    count = _PURPOSE_CODES(element)
    if isinstance(count, float) and count > 1:
        findings.append(
            Finding(
                "EPIX-RULE-017",
                f"Box 5a carries {int(count)} purpose codes; a permit has exactly one purpose.",
                loc.PURPOSE,
            )
        )
    if _ANY_REPEATED_IN_A_LINE(element) is True:
        findings += _repeated_in_lines(element)
    return findings
