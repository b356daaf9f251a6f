"""The hardened parser looks for a DOCTYPE only where XML allows one: in the prolog."""

from __future__ import annotations

import pytest

from epix.errors import EpixError
from epix.permits.writer import write_permit
from epix.xml import parse_xml
from tests.permits.helpers import base

DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'


def code_of(data: bytes) -> str:
    with pytest.raises(EpixError) as caught:
        parse_xml(data)
    return caught.value.findings[0].code


@pytest.mark.parametrize(
    "prolog",
    [
        b"",
        DECLARATION,
        b"\xef\xbb\xbf" + DECLARATION,
        DECLARATION + b"\n<!-- a comment with <tags> in it -->\n",
        DECLARATION + b"<?stylesheet href='x'?><!---->",
        b"  \n",
    ],
)
def test_doctype_after_any_prolog_is_refused(prolog: bytes) -> None:
    assert code_of(prolog + b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>') == "EPIX-XML-002"


def test_doctype_text_inside_the_document_is_only_text() -> None:
    body = b"<!-- <!DOCTYPE r> <!ENTITY x 'y'> --><![CDATA[<!DOCTYPE r>]]>"
    data = write_permit(base()).replace(b"</rsm:CITESEPermit>", body + b"</rsm:CITESEPermit>")
    assert parse_xml(data).tag.endswith("CITESEPermit")


def test_doctype_text_in_a_prolog_comment_is_only_text() -> None:
    assert parse_xml(DECLARATION + b"<!-- <!DOCTYPE r> --><r/>").tag == "r"


@pytest.mark.parametrize(
    "document",
    [
        b"<r><!DOCTYPE r></r>",  # after the root's start tag
        b"<r/><!DOCTYPE r>",
        b"<!-- never closed <!DOCTYPE r><r/>",
    ],
)
def test_misplaced_doctype_is_still_refused(document: bytes) -> None:
    assert code_of(document) in {"EPIX-XML-001", "EPIX-XML-002"}


def test_whitespace_only_document_is_empty() -> None:
    assert code_of(b" \t\r\n\x0b\x0c") == "EPIX-XML-006"
    assert code_of(b"") == "EPIX-XML-006"
