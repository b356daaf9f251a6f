"""Hostile permits are refused fast with a code; our XSDs are themselves valid XSD 1.0."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import xmlschema
from lxml import etree

from epix.permits import validation
from epix.permits.validation import check_schema, validate_permit_bytes
from epix.permits.writer import write_permit
from epix.xml import SCHEMA_DIR, parse_xml
from tests.permits.helpers import base, envelope

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE CITESEPermit [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<CITESEPermit xmlns="urn:un:unece:uncefact:data:standard:CITESEPermit:2">&lol3;</CITESEPermit>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE CITESEPermit [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<CITESEPermit xmlns="urn:un:unece:uncefact:data:standard:CITESEPermit:2">&x;</CITESEPermit>"""
CITES_SCHEMAS = sorted((SCHEMA_DIR / "cites").glob("*.xsd"))


def only_code(data: bytes, **limits: int) -> str:
    started = time.perf_counter()
    report = validate_permit_bytes(data, **limits)
    assert time.perf_counter() - started < 0.5
    assert not report.valid and report.permit is None
    return report.findings[0].code


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE])
def test_doctype_entities_are_refused_fast(document: bytes) -> None:
    assert only_code(document) == "EPIX-XML-002"


def test_doctype_inside_an_envelope_payload_is_refused() -> None:
    assert only_code(envelope(XXE)) == "EPIX-XML-002"


def test_deep_nesting_is_refused() -> None:
    deep = b"<a>" * 200 + b"</a>" * 200
    assert only_code(deep) == "EPIX-XML-003"
    assert only_code(write_permit(base()), max_depth=5) == "EPIX-XML-003"


def test_oversized_permit_is_refused() -> None:
    data = write_permit(base())
    assert only_code(data, max_bytes=len(data) - 1) == "EPIX-XML-004"


def test_oversized_envelope_payload_is_refused() -> None:
    data = write_permit(base())
    # the envelope (base64) fits, the decoded payload is checked against the same cap
    assert only_code(envelope(data + b" " * 3000), max_bytes=len(envelope(data)) + 10) in {
        "EPIX-XML-004"
    }


def test_not_well_formed_permit_reports_its_line() -> None:
    report = validate_permit_bytes(b"<CITESEPermit>\n<a>\n</CITESEPermit>")
    assert report.findings[0].code == "EPIX-XML-001"
    assert report.findings[0].line == 3


@pytest.mark.parametrize("path", CITES_SCHEMAS, ids=lambda p: Path(p).name)
def test_our_xsds_are_valid_schemas(path: Path) -> None:
    meta = xmlschema.XMLSchema10.meta_schema
    meta.build()
    meta.validate(str(path))
    assert etree.parse(str(path)).getroot().get("version") == "2.0.0-epix.1"


def test_root_schema_builds_and_declares_the_permit_element() -> None:
    schema = xmlschema.XMLSchema(str(SCHEMA_DIR / "cites" / "CITESEPermit_2p0.xsd"))
    element = schema.elements["CITESEPermit"]
    assert element.name == "{urn:un:unece:uncefact:data:standard:CITESEPermit:2}CITESEPermit"


def signed(data: bytes, where: str = "end") -> etree._Element:
    root = parse_xml(data)
    signature = etree.Element(
        "{http://www.w3.org/2000/09/xmldsig#}Signature",
        nsmap={"ds": "http://www.w3.org/2000/09/xmldsig#"},
    )
    etree.SubElement(signature, "{http://www.w3.org/2000/09/xmldsig#}SignedInfo")
    if where == "end":
        root.append(signature)
    else:
        root.insert(0, signature)
    return root


def test_enveloped_signature_is_allowed_as_the_last_child() -> None:
    assert check_schema(signed(write_permit(base()))) == []


def test_signature_elsewhere_is_a_schema_error() -> None:
    findings = check_schema(signed(write_permit(base()), where="start"))
    assert findings and findings[0].code == "EPIX-SCHEMA-001"
    assert findings[0].location == "/CITESEPermit"


def test_a_large_refused_permit_gets_libxml2s_findings_not_a_python_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """xmlschema words findings better but walks the document in Python (~0.75 s a megabyte
    to an error at its end); past READABLE_MAX_ELEMENTS the findings are libxml2's own."""
    small = write_permit(base(lines=2)).replace(b'unitCode="NAR">400<', b'unitCode="NAR">x<')
    large = write_permit(base(lines=400)).replace(b'unitCode="NAR">400<', b'unitCode="NAR">x<')
    readable = check_schema(parse_xml(small))
    assert len(readable) == 1 and str(readable[0].location).endswith("/ItemQuantity")

    def walk(*args: object) -> object:
        raise AssertionError("xmlschema walked a large document")

    monkeypatch.setattr(validation, "_readable_schema", walk)
    findings = validate_permit_bytes(large).findings
    assert findings and {f.code for f in findings} == {"EPIX-SCHEMA-001"}
    assert len(findings) <= validation.MAX_SCHEMA_FINDINGS
    first = findings[0]
    assert first.location is not None and first.location.endswith("/ItemQuantity")
    assert first.line is not None


def _crowded_permit(attributes: int) -> bytes:
    """A permit whose root carries ``attributes`` attributes no schema allows."""
    permit = write_permit(base(lines=1))
    start = permit.index(b"CITESEPermit") + len(b"CITESEPermit")
    crowd = b"".join(b' a%d="1"' % i for i in range(attributes))
    return permit[:start] + crowd + permit[start:]


def test_an_element_crowded_with_attributes_gets_libxml2s_findings_fast(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """xmlschema collects an element's attribute errors at once, each with a repr of all its
    attributes: 1,000 unknown attributes (9 KB) took 10 s in the submit pipeline's schema step,
    4,000 over two minutes, holding the pipeline (one submission at a time by default)."""
    crowded = _crowded_permit(3_000)
    started = time.monotonic()
    findings = validate_permit_bytes(crowded).findings
    assert time.monotonic() - started < 5  # was about a minute
    assert findings and {f.code for f in findings} == {"EPIX-SCHEMA-001"}
    assert len(findings) == validation.MAX_SCHEMA_FINDINGS
    assert all(f.line == 2 for f in findings), findings[:2]

    def walk(*args: object) -> object:
        raise AssertionError("xmlschema walked a crowded element")

    monkeypatch.setattr(validation, "_readable_schema", walk)
    assert validate_permit_bytes(_crowded_permit(validation.READABLE_MAX_ATTRIBUTES + 1)).findings
    monkeypatch.undo()
    few = check_schema(parse_xml(_crowded_permit(2)))  # a few: still xmlschema's wording
    assert [f.message for f in few] == [
        "'a0' attribute not allowed for element",
        "'a1' attribute not allowed for element",
    ]
