"""One hardened parse function, used for every byte of XML that enters EPIX.

No DTD is loaded, no entity is expanded, nothing is fetched from the network, and a document
with a DOCTYPE is refused outright (billion laughs and XXE never reach the parser's entity
machinery). Size and depth are capped so hostile input costs little.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from lxml import etree

from epix.errors import EpixError

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64


def _parser(*, remove_blank_text: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=remove_blank_text,
        collect_ids=False,
    )


_PARSER = _parser(remove_blank_text=False)
_LEAN_PARSER = _parser(remove_blank_text=True)


@lru_cache(maxsize=8)
def _too_deep(max_depth: int) -> etree.XPath:
    # True when an element exists at depth max_depth + 1 (the root is depth 1). No EXSLT
    # regular expressions: registering them costs ~0.2 us per call.
    return etree.XPath("boolean(/" + "/".join(["*"] * (max_depth + 1)) + ")", regexp=False)


def _has_doctype_bytes(data: bytes) -> bool:
    """True when the prolog declares a DOCTYPE (entities can only be declared inside one).

    A DOCTYPE may only stand before the root element, among the XML declaration, comments and
    processing instructions, so the scan stops at the first other tag instead of reading the
    whole document. Encodings that are not ASCII-compatible are left to the post-parse check.
    """
    position = 0
    while (start := data.find(b"<", position)) >= 0:
        if data.startswith((b"<!DOCTYPE", b"<!ENTITY"), start):
            return True
        if data.startswith(b"<?", start):
            end = data.find(b"?>", start + 2)
        elif data.startswith(b"<!--", start):
            end = data.find(b"-->", start + 4)
        else:  # the root element's start tag, or bytes the parser refuses anyway
            return False
        if end < 0:
            return False
        position = end + 2
    return False


# The XML declaration, when the document has one, with no encoding or an ASCII-compatible one.
_DECLARATION = re.compile(
    rb"""<\?xml(?:\s+version\s*=\s*(["'])[^"']*\1)?"""
    rb"""(?:\s+encoding\s*=\s*(["'])(?:UTF-?8|US-ASCII|ASCII)\2)?"""
    rb"""(?:\s+standalone\s*=\s*(["'])[^"']*\3)?\s*\?>""",
    re.IGNORECASE,
)


def _only_elements_and_text(data: bytes) -> bool:
    """True when the bytes are UTF-8 (or ASCII) and hold no comment, CDATA section or
    processing instruction after the XML declaration.

    In such a document libxml2's "blank" removal (``remove_blank_text``) only drops
    whitespace-only text that has an element as sibling: element content, where XML Schema
    ignores it, or simple content that is invalid anyway because of that element. The scan
    looks for the bytes ``<!`` and ``<?``, so encodings that spell them otherwise (a byte-order
    mark, UTF-16/32, EBCDIC, a declared UTF-7 ...) are left to the ordinary parser.
    """
    if len(data) < 2 or data[0] != 0x3C or data[1] == 0:  # "<", then not UTF-16/32
        return False
    start = 0
    if data.startswith(b"<?xml"):
        declaration = _DECLARATION.match(data)
        if declaration is None:
            return False
        start = declaration.end()
    for mark in (b"!", b"?"):  # one byte: memchr, ~70x faster than finding b"<!"
        position = data.find(mark, start)
        while position >= 0:
            if data[position - 1] == 0x3C:  # "<"
                return False
            position = data.find(mark, position + 1)
    return True


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    keep_blank_text: bool = True,
) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise ``EpixError`` with an XML code.

    ``keep_blank_text=False`` is for trees that are only validated and read (``epix
    validate``): whitespace-only text between elements is then left out of the tree when that
    cannot change a schema verdict or a value (``_only_elements_and_text``), which makes
    parsing, validating and freeing the tree cheaper. Never for trees that are signed,
    verified or serialized: there every byte of whitespace counts.
    """
    if len(data) > max_bytes:
        raise EpixError.of(
            "EPIX-XML-004",
            f"The document is {len(data)} bytes; the limit is {max_bytes} bytes.",
            location="/",
        )
    if not data or data.isspace():  # no stripped copy of the whole document
        raise EpixError.of("EPIX-XML-006", "The document is empty.", location="/")
    # A document parsed lean holds no "<!" at all, so no DOCTYPE: both DOCTYPE checks are
    # for the others.
    lean = not keep_blank_text and _only_elements_and_text(data)
    if not lean and _has_doctype_bytes(data):
        raise EpixError.of(
            "EPIX-XML-002", "DOCTYPE and ENTITY declarations are not accepted.", location="/"
        )
    try:
        root = etree.fromstring(data, parser=_LEAN_PARSER if lean else _PARSER)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno else None
        raise EpixError.of(
            "EPIX-XML-001", f"Not well-formed XML: {exc.msg}", location="/", line=line
        ) from None
    except ValueError as exc:  # e.g. a str with an encoding declaration
        raise EpixError.of("EPIX-XML-001", f"Not well-formed XML: {exc}", location="/") from None
    docinfo: Any = None if lean else root.getroottree().docinfo
    if docinfo is not None and (docinfo.doctype or docinfo.internalDTD is not None):
        # Encodings such as UTF-16 slip past the byte scan; the parsed tree does not.
        raise EpixError.of(
            "EPIX-XML-002", "DOCTYPE and ENTITY declarations are not accepted.", location="/"
        )
    if _too_deep(max_depth)(root):
        raise EpixError.of(
            "EPIX-XML-003", f"Elements nest deeper than {max_depth} levels.", location="/"
        )
    return root
