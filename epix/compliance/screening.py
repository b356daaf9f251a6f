"""Screen a permit against published quotas, reservations, trade suspensions, the CITES
taxonomy and its own box 11a: warnings only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from epix.compliance.quotas import Quota, quota_index
from epix.compliance.suspensions import Suspension, describe, suspensions_concerning
from epix.compliance.taxonomy import Naming, screened_as, taxonomy
from epix.errors import Finding
from epix.permits import locations as loc
from epix.permits import reservations
from epix.permits.model import Permit, PermitLine
from epix.permits.reservations import reservations_in_force
from epix.permits.rules import reserved_by_both, specimen_population
from epix.permits.sapi_dates import taxon_in_words

# Units that count specimens: a quota (or box 11) without a unit is a number of specimens.
COUNT_UNITS = frozenset({"NAR", "PCS"})


def same_measure(first: str | None, second: str | None) -> bool:
    """True when two quantities can be compared: the same unit, or both numbers of specimens."""
    return first == second or {first, second} <= COUNT_UNITS | {None}


def has_reservation(
    party: str, scientific_name: str, population: str | None, at: datetime | date
) -> bool:
    """The reservation lookup (``rules.ReservationCheck``) the node's rules and screening use:
    box 7's name as the Species+ taxonomy reads it, a synonym under its accepted name, met by
    reservations on the higher taxa Species+ places it under. The core's
    ``reservations.has_reservation`` takes names as written; only here is the taxonomy known
    (epix.permits does not import epix.compliance)."""
    naming = taxonomy().naming(scientific_name)
    taxon, within, ids = screened_as(scientific_name, naming)
    return reservations.has_reservation(party, taxon, population, at, within, ids)


def _at(permit: Permit) -> date:
    moment = permit.issued_at or permit.valid_from or datetime.now(UTC)
    return moment.date()


def _exported_this_year(lines: list[tuple[int, PermitLine]], unit: str | None) -> Decimal | None:
    """What the permit's lines under one quota tell of the year's exports in ``unit``.

    Box 11a states the total exported in the current year including this permit (Res. Conf.
    12.3, Annex 2), so the permit's lines are not added to it, nor its repetitions on several
    lines to each other; without it, at least the sum of the lines' quantities. None: nothing
    comparable.
    """
    totals = [
        line.quota_used
        for _, line in lines
        if line.quota_used is not None and same_measure(line.quota_unit, unit)
    ]
    quantities = [
        line.quantity
        for _, line in lines
        if line.quantity is not None and same_measure(line.unit, unit)
    ]
    known = [*totals, sum(quantities, Decimal(0))] if quantities else totals
    return max(known, default=None)


def _quota_terms(quota: Quota) -> str:
    """Where the quota comes from, the trade it limits and when it applies, for a finding."""
    parts = [quota.label, quota.scope]
    if quota.start is not None or quota.end is not None:
        since = f"from {quota.start.isoformat()}" if quota.start is not None else ""
        until = f"until {quota.end.isoformat()}" if quota.end is not None else ""
        parts.append(" ".join(part for part in (since, until) if part))
    return "; ".join(part for part in parts if part)


def _label(lines: list[tuple[int, PermitLine]], exporter: str) -> str:
    """'Line 1: Panthera pardus from NA', or for lines summed under one quota
    'Lines 1 and 2 (summed): Diceros bicornis from NA'."""
    ids = [line.line_id for _, line in lines]
    names = ", ".join(dict.fromkeys(str(line.scientific_name) for _, line in lines))
    if len(ids) == 1:
        return f"Line {ids[0]}: {names} from {exporter}"
    listed = f"{', '.join(ids[:-1])} and {ids[-1]}"
    return f"Lines {listed} (summed): {names} from {exporter}"


def _quota_findings(
    lines: list[tuple[int, PermitLine]], quota: Quota, exporter: str
) -> list[Finding]:
    """The findings for the permit's lines that one quota covers, judged together: a quota
    limits the year's exports, so two lines of one permit count as one shipment against it."""
    if quota.quota == 0:
        return [
            Finding(
                "EPIX-COMP-002",
                f"{_label([entry], exporter)}: a zero export quota applies "
                f"({_quota_terms(quota)}). {quota.notes}".strip(),
                loc.line(entry[0], loc.QUANTITY),
            )
            for entry in lines
        ]
    amount = f"{quota.quota} {quota.unit or 'specimens'}"
    findings: list[Finding] = []
    counted: list[tuple[int, PermitLine]] = []
    for index, line in lines:
        if _exported_this_year([(index, line)], quota.unit) is not None:
            counted.append((index, line))
        elif line.quantity is not None:
            findings.append(
                Finding(
                    "EPIX-COMP-005",
                    f"{_label([(index, line)], exporter)}: the published export quota of "
                    f"{amount} ({_quota_terms(quota)}) cannot be checked against "
                    f"{line.quantity} {line.unit}; check the year's exports by hand.",
                    loc.line(index, loc.QUANTITY),
                )
            )
    exported = _exported_this_year(counted, quota.unit)
    if exported is not None and exported > quota.quota:
        findings.append(
            Finding(
                "EPIX-COMP-001",
                f"{_label(counted, exporter)}: {exported} exported this year with this permit "
                f"exceeds the published export quota of {amount} ({_quota_terms(quota)}). "
                f"{quota.notes}".strip(),
                loc.line(counted[0][0], loc.QUANTITY),
            )
        )
    return findings


def _box_11a(index: int, line: PermitLine) -> list[Finding]:
    """Box 11a: the total exported this year including this permit, and the annual quota."""
    where = loc.line(index, loc.QUOTA)
    used, annual = line.quota_used, line.annual_quota
    if used is None and annual is None:
        return []
    if used is None or annual is None:
        return [
            Finding(
                "EPIX-COMP-004",
                f"Line {line.line_id}: box 11a gives "
                f"{'the annual quota' if annual is not None else 'the total exported'} without "
                f"{'the total exported' if annual is not None else 'the annual quota'}.",
                where,
            )
        ]
    if used < 0 or annual < 0:
        return [
            Finding(
                "EPIX-COMP-004",
                f"Line {line.line_id}: box 11a says {used} exported of an annual quota of "
                f"{annual}.",
                where,
            )
        ]
    quantity = line.quantity
    if quantity is not None and same_measure(line.quota_unit, line.unit) and used < quantity:
        return [
            Finding(
                "EPIX-COMP-004",
                f"Line {line.line_id}: box 11a says {used} exported this year including this "
                f"permit, fewer than the {quantity} on this line.",
                where,
            )
        ]
    if used > annual:
        return [
            Finding(
                "EPIX-COMP-001",
                f"Line {line.line_id}: box 11a says {used} exported this year including this "
                f"permit, over the annual quota of {annual}.",
                where,
            )
        ]
    return []


def _reservations(
    index: int,
    line: PermitLine,
    taxon: str,
    permit: Permit,
    at: date,
    within: frozenset[str],
    ids: frozenset[int],
) -> list[Finding]:
    """EPIX-COMP-003 for each Party of the trade holding a reservation for the taxon, with its
    note and what EPIX made of it: a species or population the note leaves out, seen on the
    permit, leaves the Party bound; a limit no box shows (a stock, an area) is named for the
    officer to check, since EPIX took the reservation as covering the specimen."""
    population = specimen_population(permit, line)
    parties = (("exporter", permit.exporter.country), ("importer", permit.importer.country))
    lifted = line.appendix == "I" and reserved_by_both(permit, line, has_reservation)
    findings = []
    for role, party in parties:
        if not party:
            continue
        for entry in reservations_in_force(party, taxon, at, within, ids):
            since = f" since {entry.start.isoformat()}" if entry.start is not None else ""
            holds = (
                f"Line {line.line_id}: {party} ({role}) holds a reservation for "
                f"{taxon_in_words(entry.taxon, entry.rank)}"
            )
            note = f" Reservation note: {entry.notes}" if entry.notes else ""
            excluded = entry.exclusion(taxon, population)
            if excluded is not None:
                message = (
                    f"{holds}{since}, but it does not cover {excluded}: for this specimen "
                    f"{party} is bound as a Party (Art. XXIII).{note}"
                )
            else:
                message = f"{holds}{since}; it trades this taxon as a non-Party (Art. XXIII).{note}"
                doubt = entry.doubt(population)
                if doubt:
                    message += (
                        f" The permit cannot show whether this specimen is within that limit "
                        f"({doubt}); EPIX took the reservation as covering it: check it."
                    )
                if lifted:
                    message += (
                        " Both Parties hold a reservation, so EPIX does not hold this line to "
                        "the Appendix I rules on the import permit and the commercial purpose "
                        "(Art. XXIII.3)."
                    )
            findings.append(Finding("EPIX-COMP-003", message, loc.line(index, loc.SCIENTIFIC_NAME)))
    return findings


def _taxonomy(index: int, line: PermitLine, naming: Naming) -> list[Finding]:
    """EPIX-COMP-007 when box 7 names a synonym (the line is screened under the accepted
    name), EPIX-COMP-008 when box 10 declares an appendix Species+ does not list the taxon in.
    Warnings only: the listing may have changed since the permit was issued."""
    findings = []
    concept = naming.concept
    if naming.synonym:
        # not exact: a subspecies written under a synonym of its species
        written = _synonym_as_written(line, under_species=not naming.exact)
        findings.append(
            Finding(
                "EPIX-COMP-007",
                f"Line {line.line_id}: {written} is a synonym of "
                f"{concept.full_name} in the CITES taxonomy (Species+); the line was screened "
                f"as {naming.screened_name} for quotas, reservations and suspensions.",
                loc.line(index, loc.SCIENTIFIC_NAME),
            )
        )
    declared = line.appendix
    if (
        naming.exact
        and concept.listing is not None
        and declared in ("I", "II", "III")
        and declared not in concept.appendices
    ):
        listed = (
            f"in Appendix {'/'.join(a for a in ('I', 'II', 'III') if a in concept.appendices)}"
            if concept.appendices
            else "in no Appendix (NC)"
        )
        findings.append(
            Finding(
                "EPIX-COMP-008",
                f"Line {line.line_id}: box 10 declares Appendix {declared}, but the CITES "
                f"taxonomy (Species+) lists {concept.full_name} {listed}; check the listing "
                f"in force on the date of issue.",
                loc.line(index, loc.APPENDIX),
            )
        )
    return findings


def _synonym_as_written(line: PermitLine, *, under_species: bool) -> str:
    """Box 7 as written, for a finding on the synonym it names; ``under_species``: a subspecies
    written under a synonym of its species, whose species part follows ('Loxodonta cyclotis
    pumilio: Loxodonta cyclotis')."""
    written = " ".join(str(line.scientific_name).split())
    return f"{written}: {' '.join(written.split()[:2])}" if under_species else written


def _shared_synonym(index: int, line: PermitLine, accepted: tuple[str, ...]) -> Finding:
    """EPIX-COMP-009: box 7 names a synonym of several accepted taxa, so EPIX cannot tell
    which the specimen is; it screened the name as written (reservations then lift no
    Appendix I rule), and the officer decides."""
    subspecies = len(str(line.scientific_name).split()) > 2  # under the shared synonym
    written = _synonym_as_written(line, under_species=subspecies)
    return Finding(
        "EPIX-COMP-009",
        f"Line {line.line_id}: {written} is a synonym of {' and of '.join(accepted)} in the "
        "CITES taxonomy (Species+); EPIX cannot tell which taxon the specimen is, so the line "
        "was screened as written for quotas, reservations and suspensions: check them for "
        "the taxon it is.",
        loc.line(index, loc.SCIENTIFIC_NAME),
    )


def _suspensions(
    index: int,
    line: PermitLine,
    taxon: str,
    permit: Permit,
    at: date,
    published: tuple[Suspension, ...],
    within: frozenset[str],
    ids: frozenset[int],
) -> list[Finding]:
    """EPIX-COMP-006 for each published suspension the line is traded under, never a refusal:
    EPIX holds only the suspensions of its Species+ data, and most are in words alone."""
    exporter, importer = permit.exporter.country, permit.importer.country
    return [
        Finding(
            "EPIX-COMP-006",
            f"Line {line.line_id}: {taxon}: {describe(suspension)}",
            loc.line(index, loc.SCIENTIFIC_NAME),
        )
        for suspension in published
        if suspension.covers(
            exporter=exporter,
            importer=importer,
            taxon=taxon,
            term=line.term,
            source=line.source,
            purpose=permit.purpose,
            at=at,
            within=within,
            ids=ids,
        )
    ]


def screen_permit(permit: Permit) -> list[Finding]:
    """Compliance warnings for the permit (EPIX-COMP-*); never an error."""
    findings: list[Finding] = []
    at = _at(permit)
    exporter = permit.exporter.country
    exporting = permit.document_type == "E"
    under_quota: dict[Quota, list[tuple[int, PermitLine]]] = {}
    published = suspensions_concerning(exporter, permit.importer.country)
    names = taxonomy()
    for index, line in enumerate(permit.lines, start=1):
        findings += _box_11a(index, line)
        if line.scientific_name is None:
            continue
        naming = names.naming(line.scientific_name)
        if naming is not None:
            findings += _taxonomy(index, line, naming)
        elif accepted := names.accepted_names(line.scientific_name):
            findings.append(_shared_synonym(index, line, accepted))
        taxon, within, ids = screened_as(line.scientific_name, naming)
        if exporter is None:
            continue
        if exporting:
            for quota in quota_index().covering(
                exporter=exporter,
                taxon=taxon,
                appendix=line.appendix,
                term=line.term,
                source=line.source,
                purpose=permit.purpose,
                at=at,
                within=within,
                ids=ids,
            ):
                under_quota.setdefault(quota, []).append((index, line))
        findings += _reservations(index, line, taxon, permit, at, within, ids)
        findings += _suspensions(index, line, taxon, permit, at, published, within, ids)
    if exporter is not None:
        for quota, lines in under_quota.items():
            findings += _quota_findings(lines, quota, exporter)
    return findings
