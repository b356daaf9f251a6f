"""The hardened parser refuses hostile XML quickly and with a code."""

from __future__ import annotations

import time

import pytest

from epix.errors import EpixError
from epix.xml import parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"""
XXE = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"""


def code_of(data: bytes, **kwargs: int) -> str:
    with pytest.raises(EpixError) as caught:
        parse_xml(data, **kwargs)
    return caught.value.findings[0].code


def test_well_formed_document_parses() -> None:
    assert parse_xml(b"<a><b>1</b></a>").findtext("b") == "1"


@pytest.mark.parametrize("document", [BILLION_LAUGHS, XXE, b"<!DOCTYPE r><r/>"])
def test_doctype_and_entities_refused_fast(document: bytes) -> None:
    started = time.perf_counter()
    assert code_of(document) == "EPIX-XML-002"
    assert time.perf_counter() - started < 0.5


def test_doctype_in_utf16_is_refused() -> None:
    document = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r><r/>'.encode("utf-16")
    assert code_of(document) == "EPIX-XML-002"


def test_deep_nesting_refused() -> None:
    assert code_of(b"<a>" * 65 + b"</a>" * 65) == "EPIX-XML-003"
    assert parse_xml(b"<a>" * 64 + b"</a>" * 64).tag == "a"


def test_oversized_refused_before_parsing() -> None:
    assert code_of(b"<a>" + b"x" * 2000 + b"</a>", max_bytes=1000) == "EPIX-XML-004"


def test_malformed_reports_line() -> None:
    with pytest.raises(EpixError) as caught:
        parse_xml(b"<a>\n<b>\n</a>")
    finding = caught.value.findings[0]
    assert finding.code == "EPIX-XML-001"
    assert finding.line == 3


def test_empty_refused() -> None:
    assert code_of(b"  ") == "EPIX-XML-006"
