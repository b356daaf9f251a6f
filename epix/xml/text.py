"""Free text that will be written into an XML document must be text XML 1.0 can carry.

lxml refuses NUL, most C0 control characters and lone surrogates when a document is built, so
such input is refused where it enters (EPIX-REQ-004 naming the field) instead of failing later
while a status change, endorsement or registry document is written.
"""

from __future__ import annotations

import re

from epix.errors import EpixError

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str, location: str) -> str:
    """``value`` unchanged, or ``EpixError`` EPIX-REQ-004 at ``location``."""
    found = _NOT_XML.search(value)
    if found is not None:
        raise EpixError.of(
            "EPIX-REQ-004",
            f"{location} contains a control character ({ord(found.group()):#06x}) that an XML "
            "document cannot carry.",
            location,
        )
    return value
