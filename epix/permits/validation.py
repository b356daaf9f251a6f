"""Validate a permit's bytes: hardened parse, schema, then code lists and business rules.

The exchange pipeline calls the steps one by one (parse, ``check_schema``,
``check_codes_and_rules``, then signature and compliance) and stops at the first step that
reports an error; ``validate_permit_bytes`` runs the permit-only steps the same way for the CLI
and the benchmark. lxml's compiled schema is the hot path; only when it says "invalid" is the
slower xmlschema asked for path-precise, readable messages.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import xmlschema
from lxml import etree

from epix.errors import EpixError, Finding, Severity
from epix.permits import locations as loc
from epix.permits.codes import check_codes
from epix.permits.model import Permit
from epix.permits.reader import extract_permit_element, read_permit
from epix.permits.reservations import has_reservation as published_reservation
from epix.permits.rules import ReservationCheck, check_element_rules, check_rules
from epix.xml import SCHEMA_DIR, load_schema, parse_xml
from epix.xml.parse import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH

PERMIT_SCHEMA = "cites/CITESEPermit_2p0.xsd"
_PREFIX = re.compile(r"(?<=/)[^/:\[\]{}]+:")
_CLARK = re.compile(r"\{[^}]*\}")
MAX_SCHEMA_FINDINGS = 20
# Up to here (a permit of ~100 lines) a refused document's findings come from xmlschema.
READABLE_MAX_ELEMENTS = 5_000
# ... and no element has more attributes than this: xmlschema collects all of an element's
# attribute errors at once, each with a repr of all its attributes (1,000 unknown attributes, a
# 9 KB document, took 10 s; 4,000 over two minutes). Our schemas allow a few per element.
READABLE_MAX_ATTRIBUTES = 32
_ELEMENTS = etree.XPath("count(//*)", regexp=False)
_CROWDED = etree.XPath(f"boolean(//*[count(@*) > {READABLE_MAX_ATTRIBUTES}])", regexp=False)


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """What validation found; ``permit``/``element`` are set as far as the steps got.

    ``validate_permit_bytes`` parses without whitespace-only text between elements
    (``parse_xml(keep_blank_text=False)``): ``element`` serves locations and reading, never a
    signature check.
    """

    findings: tuple[Finding, ...]
    permit: Permit | None = None
    element: etree._Element | None = None

    @property
    def valid(self) -> bool:
        return not has_errors(self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)


def has_errors(findings: tuple[Finding, ...] | list[Finding]) -> bool:
    return any(finding.severity is Severity.ERROR for finding in findings)


@cache
def _readable_schema() -> Any:
    """The same XSDs in xmlschema, built only when a document already failed lxml's check."""
    return xmlschema.XMLSchema(str(SCHEMA_DIR / PERMIT_SCHEMA))


def _readable_path(path: str) -> str:
    """An XPath of local names: prefixes and ``{namespace}`` (used where the document's tree
    binds no prefix, e.g. a translated v1 permit) are dropped."""
    return _PREFIX.sub("", _CLARK.sub("", path))


def check_schema(element: etree._Element) -> list[Finding]:
    """EPIX-SCHEMA-001 findings (XPath + line) when the permit does not conform to our XSDs.

    xmlschema words the findings better than libxml2 but walks the document in Python (~0.75 s
    a megabyte to an error at its end), so a large document, or one with an element crowded
    with attributes, gets libxml2's own findings.
    """
    schema = load_schema(PERMIT_SCHEMA)
    if schema.validate(element):
        return []
    findings: list[Finding] = []
    count = _ELEMENTS(element)
    readable = isinstance(count, float) and count <= READABLE_MAX_ELEMENTS
    readable = readable and not _CROWDED(element)
    for error in _readable_schema().iter_errors(element) if readable else ():
        if len(findings) >= MAX_SCHEMA_FINDINGS:
            break
        findings.append(
            Finding(
                "EPIX-SCHEMA-001",
                str(error.reason or error.message),
                location=_readable_path(error.path) if error.path else None,
                line=getattr(error, "sourceline", None),
            )
        )
    if not findings:  # too large, or the two validators disagree: lxml's word, the hot path's
        log: Any = schema.error_log
        findings = [
            Finding(
                "EPIX-SCHEMA-001",
                entry.message,
                location=_readable_path(entry.path) if entry.path else None,
                line=entry.line,
            )
            for entry in list(log)[:MAX_SCHEMA_FINDINGS]
        ]
    return findings


def _with_line(lines: loc.LineFinder, finding: Finding) -> Finding:
    if finding.line is not None or finding.location is None:
        return finding
    return dataclasses.replace(finding, line=lines(finding.location))


def check_codes_and_rules(
    permit: Permit,
    element: etree._Element,
    *,
    has_reservation: ReservationCheck | None = published_reservation,
) -> list[Finding]:
    """Code lists (EPIX-CODE-*) and business rules (EPIX-RULE-*), each finding with its line.

    ``has_reservation`` decides the reservations that lift the Appendix I rules. The default
    takes box 7's name as written; the node and ``epix validate`` pass
    ``epix.compliance.has_reservation``, which reads it through the Species+ taxonomy (a
    synonym under its accepted name), known only above this core package."""
    findings = check_codes(permit) + check_element_rules(element)
    findings += check_rules(permit, has_reservation=has_reservation)
    lines = loc.LineFinder(element)  # one for all findings: a permit may have one per line
    return [_with_line(lines, finding) for finding in findings]


def validate_permit_bytes(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    has_reservation: ReservationCheck | None = published_reservation,
) -> ValidationReport:
    """Parse, schema, codes and rules, stopping at the first step that reports an error.

    ``has_reservation`` as for ``check_codes_and_rules``."""
    try:
        root = parse_xml(data, max_bytes=max_bytes, max_depth=max_depth, keep_blank_text=False)
        element = extract_permit_element(root, max_bytes=max_bytes, max_depth=max_depth)
    except EpixError as error:
        return ValidationReport(tuple(error.findings))
    schema_findings = check_schema(element)
    if schema_findings:
        return ValidationReport(tuple(schema_findings), element=element)
    try:
        permit = read_permit(element)
    except EpixError as error:
        return ValidationReport(tuple(error.findings), element=element)
    findings = check_codes_and_rules(permit, element, has_reservation=has_reservation)
    return ValidationReport(tuple(findings), permit=permit, element=element)
