"""``parse_xml(keep_blank_text=False)``: a leaner tree for validation that changes no verdict.

``validate_permit_bytes`` parses this way. The differential test runs the validation steps on
the lean tree and on the ordinary one for permits with whitespace, comments, processing
instructions, CDATA sections and stray elements spliced in where text may stand.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from lxml import etree

from epix.errors import EpixError
from epix.permits.reader import extract_permit_element, read_permit
from epix.permits.validation import check_codes_and_rules, check_schema, validate_permit_bytes
from epix.permits.writer import write_permit
from epix.xml import parse_xml
from tests.permits.helpers import SAMPLE, base

PERMIT = write_permit(base(lines=2))
COUNTRY = b"<ram:CountryID>XA</ram:CountryID>"


def lean(data: bytes) -> etree._Element:
    return parse_xml(data, keep_blank_text=False)


def test_lean_tree_drops_whitespace_between_elements_only() -> None:
    ordinary, leaner = parse_xml(PERMIT), lean(PERMIT)
    assert ordinary[0].tail is not None and not ordinary[0].tail.strip()
    assert leaner[0].tail is None and leaner.text is None
    assert [e.text for e in leaner.iter()] == [
        None if e.text is not None and len(e) and not e.text.strip() else e.text
        for e in ordinary.iter()
    ]


def test_whitespace_only_values_are_kept() -> None:
    data = PERMIT.replace(COUNTRY, b"<ram:CountryID> \n </ram:CountryID>", 1)
    values = [e.text for e in lean(data).iter() if e.tag.endswith("}CountryID")]
    assert values[0] == " \n "


def test_ordinary_parse_keeps_every_whitespace() -> None:
    assert etree.tostring(parse_xml(PERMIT)) == etree.tostring(etree.fromstring(PERMIT))


@pytest.mark.parametrize(
    "data",
    [
        b"<r>\n  <a/>\n</r>",
        b'<?xml version="1.0"?>\n<r> <a/> </r>',
        b"<?xml version='1.0' encoding='utf-8'?><r> <a/> </r>",
        b'<?xml version="1.0" encoding="US-ASCII" standalone="yes"?><r> <a/> </r>',
        b'<r x="?!"> <a>Why? Because!</a> </r>',
    ],
)
def test_documents_of_elements_and_text_are_parsed_lean(data: bytes) -> None:
    assert lean(data).text is None


@pytest.mark.parametrize(
    "data",
    [
        b"<r> <!-- a comment --> <a/> </r>",
        b"<r> <?pi data?> <a/> </r>",
        b"<r> <![CDATA[ ]]> <a/> </r>",
        b"<!-- prolog comment --><r> <a/> </r>",
        b'<?xml version="1.0"?><?stylesheet href="x"?><r> <a/> </r>',
        b'<?xml version="1.0" encoding="ISO-8859-1"?><r> <a/> </r>',
        b'<?xml version="1.0" encoding="UTF-7"?><r> <a/>+ADw-!-- --+AD4- </r>',
        b"\xef\xbb\xbf<r> <a/> </r>",
        "<r> <a/> </r>".encode("utf-16"),
        "<r> <a/> </r>".encode("utf-16-le"),
    ],
)
def test_other_documents_are_parsed_as_usual(data: bytes) -> None:
    try:
        expected = etree.tostring(parse_xml(data))
    except EpixError as error:
        with pytest.raises(EpixError) as caught:
            lean(data)
        assert caught.value.findings == error.findings
        return
    assert etree.tostring(lean(data)) == expected


def test_validate_permit_bytes_reads_a_lean_tree() -> None:
    element = validate_permit_bytes(PERMIT).element
    assert element is not None and element[0].tail is None


# --- differential: lean and ordinary trees give the same findings and the same permit ----

SPLICES = [
    b" ",
    b"\n",
    b"  \n\t",
    b"\r\n ",
    b"&#32;",
    b"&#10;",
    b"A",
    b" B ",
    b"&amp;",
    b"<!--c-->",
    b" <!--c--> ",
    b"<?pi x?>",
    b" <?pi?> ",
    b"<![CDATA[ ]]>",
    b" <![CDATA[A]]> ",
    b"<x:e xmlns:x='urn:x'/>",
    b" <x:e xmlns:x='urn:x'> </x:e> ",
    b"<ram:ID>Z</ram:ID> ",
]
LEAF = re.compile(rb">([^<>]*)</")
VALUES = [b"", b" ", b"\n", b"X A", b" XA ", b"<!--c--> <!--d-->XA", b" 2026-01-01 ", b" 5 "]


def spliced(rng: random.Random, data: bytes) -> bytes:
    """Snippets spliced in next to tags (where text may stand), and maybe one value replaced."""
    for _ in range(rng.randint(1, 5)):
        spots = [m.start() for m in re.finditer(rb"<", data)] + [
            m.end() for m in re.finditer(rb">", data)
        ]
        spot = rng.choice(spots)
        data = data[:spot] + rng.choice(SPLICES) + data[spot:]
    if rng.random() < 0.4:
        value = rng.choice(list(LEAF.finditer(data)))
        data = data[: value.start(1)] + rng.choice(VALUES) + data[value.end(1) :]
    return data


def outcome(root: etree._Element) -> tuple[Any, ...]:
    try:
        element = extract_permit_element(root)
        findings = check_schema(element)
        if findings:
            return tuple(findings), None
        permit = read_permit(element)
        return tuple(check_codes_and_rules(permit, element)), permit
    except EpixError as error:
        return tuple(error.findings), None


def outcomes(data: bytes, *, keep_blank_text: bool) -> tuple[Any, ...]:
    try:
        root = parse_xml(data, keep_blank_text=keep_blank_text)
    except EpixError as error:
        return tuple(error.findings), None
    return outcome(root)


@pytest.mark.parametrize("seed", range(8))
def test_lean_and_ordinary_trees_validate_and_read_alike(seed: int) -> None:
    rng = random.Random(seed)
    documents = [PERMIT, write_permit(base(lines=1)), SAMPLE.read_bytes()]
    for _ in range(25):
        data = spliced(rng, rng.choice(documents))
        assert outcomes(data, keep_blank_text=False) == outcomes(data, keep_blank_text=True)


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>',
        b'<?xml version="1.0"?>\n<!DOCTYPE r><r/>',
        b"<r><!DOCTYPE r></r>",
        '<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'.encode("utf-16"),
    ],
)
def test_a_doctype_is_refused_in_lean_parses_too(data: bytes) -> None:
    with pytest.raises(EpixError) as caught:
        lean(data)
    assert caught.value.findings[0].code in {"EPIX-XML-001", "EPIX-XML-002"}
    with pytest.raises(EpixError) as ordinary:
        parse_xml(data)
    assert caught.value.findings == ordinary.value.findings
