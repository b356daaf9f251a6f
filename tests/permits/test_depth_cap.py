"""The depth cap in ``validate_permit_bytes``: for a bare permit lxml found valid, only the
signature wildcard is walked (the schema bounds the rest); the errors stay those of a full walk."""

from __future__ import annotations

import dataclasses
from typing import Any

import xmlschema

from epix.permits.model import Endorsement
from epix.permits.validation import PERMIT_SCHEMA, PERMIT_SCHEMA_DEPTH, validate_permit_bytes
from epix.permits.writer import write_permit
from epix.xml import SCHEMA_DIR
from tests.permits.helpers import base

CLOSE = b"</rsm:CITESEPermit>"
DSIG = b'xmlns:ds="http://www.w3.org/2000/09/xmldsig#"'


def deepest(element: xmlschema.XsdElement, types: frozenset[str], wildcards: list[Any]) -> float:
    """Levels an instance of ``element`` can span (infinite when a type recurses); the
    wildcards met on the way are collected."""
    name = element.type.name or str(id(element.type))
    if name in types:
        return float("inf")
    below = [0.0]
    if element.type.has_complex_content():
        for child in element.type.content.iter_elements():
            if isinstance(child, xmlschema.XsdElement):
                below.append(deepest(child, types | {name}, wildcards))
            else:
                wildcards.append((element.local_name, child))
    return 1 + max(below)


def test_schema_depth_constant_matches_the_xsds() -> None:
    schema = xmlschema.XMLSchema(str(SCHEMA_DIR / PERMIT_SCHEMA))
    root = schema.elements["CITESEPermit"]
    wildcards: list[Any] = []
    assert deepest(root, frozenset(), wildcards) == PERMIT_SCHEMA_DEPTH
    # the only unbounded content: one skipped xmldsig element after the three fixed children
    assert [(parent, w.process_contents, list(w.namespace)) for parent, w in wildcards] == [
        ("CITESEPermit", "skip", ["http://www.w3.org/2000/09/xmldsig#"])
    ]
    assert [type(p) for p in root.type.content.iter_model()][3] is type(wildcards[0][1])
    assert root.type.content.model == "sequence"


def signed_with(depth: int) -> bytes:
    """A valid permit whose ds:Signature holds elements ``depth`` levels below the root."""
    levels = depth - 1  # the signature itself is at depth 2
    nested = b"<ds:x>" * (levels - 1) + b"</ds:x>" * (levels - 1)
    signature = b"<ds:Signature " + DSIG + b">" + nested + b"</ds:Signature>"
    return write_permit(base()).replace(CLOSE, signature + CLOSE)


def codes(data: bytes, max_depth: int = 64) -> list[str]:
    return [finding.code for finding in validate_permit_bytes(data, max_depth=max_depth).errors]


def test_a_too_deep_signature_of_a_valid_permit_is_refused() -> None:
    assert codes(signed_with(64)) == []
    assert codes(signed_with(65)) == ["EPIX-XML-003"]
    assert codes(signed_with(12), max_depth=11) == ["EPIX-XML-003"]
    assert codes(signed_with(11), max_depth=11) == []


def test_a_deep_invalid_permit_reports_the_depth_not_the_schema() -> None:
    nested = b"<x>" * 70 + b"</x>" * 70
    data = write_permit(base()).replace(CLOSE, nested + CLOSE)
    assert codes(data) == ["EPIX-XML-003"]


def test_a_cap_below_the_schema_depth_walks_the_whole_permit() -> None:
    permit = base(lines=1)
    endorsed = dataclasses.replace(
        permit.lines[0], endorsement=Endorsement(port="NLRTM", authority="Customs", officer="J")
    )
    data = write_permit(dataclasses.replace(permit, lines=(endorsed,)))  # 7 levels deep
    assert codes(data, max_depth=7) == []
    assert codes(data, max_depth=6) == ["EPIX-XML-003"]
