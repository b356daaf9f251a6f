"""Where each box lives, as readable XPaths of local names, and how to find their line numbers.

Findings name the element a reader of the permit would look at; ``line_of`` resolves such a
path against the parsed element (as deep as it exists) so that a missing box still points at
the line of its nearest ancestor.
"""

from __future__ import annotations

import re

from lxml import etree

ROOT = "/CITESEPermit"
HEADER = f"{ROOT}/HeaderExchangedDocument"
CONSIGNMENT = f"{ROOT}/SpecifiedSupplyChainConsignment"
SIGNATORY = f"{HEADER}/FirstSignatoryDocumentAuthentication"

DOCUMENT_TYPE = f"{HEADER}/TypeCode"
NUMBER = f"{HEADER}/ID"
ISSUED = f"{HEADER}/IssueDateTime"
PURPOSE = f"{HEADER}/PurposeCode"
VALID_FROM = f"{HEADER}/EffectiveSpecifiedPeriod/StartDateTime"
VALID_UNTIL = f"{HEADER}/EffectiveSpecifiedPeriod/EndDateTime"
AUTHORITY = f"{SIGNATORY}/ProviderTradeParty"
AUTHORITY_NAME = f"{AUTHORITY}/Name"
AUTHORITY_COUNTRY = f"{AUTHORITY}/PostalTradeAddress/CountryID"
EXPORTER = f"{CONSIGNMENT}/ConsignorTradeParty"
IMPORTER = f"{CONSIGNMENT}/ConsigneeTradeParty"
EXPORTER_COUNTRY = f"{EXPORTER}/PostalTradeAddress/CountryID"
IMPORTER_COUNTRY = f"{IMPORTER}/PostalTradeAddress/CountryID"
ITEMS = f"{CONSIGNMENT}/IncludedSupplyChainConsignmentItem"

# Relative to one consignment item.
LINE_ID = "ID"
PRODUCT = "IncludedSupplyChainTradeLineItem/SpecifiedTradeProduct"
SCIENTIFIC_NAME = f"{PRODUCT}/ScientificName"
DESCRIPTION = f"{PRODUCT}/Description"
TERM = f"{PRODUCT}/TypeCode"
APPENDIX = "IncludedSupplyChainTradeLineItem/TypeCode"
SOURCE = "IncludedSupplyChainTradeLineItem/TypeExtensionCode"
QUANTITY = "TransportLogisticsPackage/ItemQuantity"
UNIT = "TransportLogisticsPackage/ItemQuantity/@unitCode"
ORIGIN = "OriginTradeCountry/ID"
LAST_REEXPORT_COUNTRY = "ExportTradeCountry/ID"
DOCUMENTS = "AssociatedReferencedDocument"
PROCEDURE = "ApplicableCrossBorderRegulatoryProcedure"
QUOTA = f"{PROCEDURE}/AnnualQuotaQuantity"
ACQUISITION = f"{PROCEDURE}/AcquisitionDateTime"
OPERATION = f"{PROCEDURE}/PreviousReferencedDocument/ID"


def line(index: int, relative: str = "") -> str:
    """The path of (something inside) the ``index``-th consignment item, 1-based."""
    base = f"{ITEMS}[{index}]"
    return f"{base}/{relative}" if relative else base


_STEP = re.compile(r"^([A-Za-z]+)(?:\[(\d+)\])?$")


def source_line(element: etree._Element) -> int | None:
    """The element's line in its document (typed: lxml-stubs leave ``sourceline`` untyped)."""
    value: object = element.sourceline
    return value if isinstance(value, int) else None


def line_of(root: etree._Element, path: str) -> int | None:
    """The source line of the deepest existing element along ``path`` (None if unknown)."""
    steps = [step for step in path.split("/") if step and not step.startswith("@")]
    if not steps:
        return None
    node = root
    for step in steps[1:]:
        match = _STEP.match(step)
        if match is None:
            break
        name, position = match.group(1), int(match.group(2) or 1)
        found = [
            child
            for child in node.iterchildren()
            if isinstance(child.tag, str) and child.tag.rsplit("}", 1)[-1] == name
        ]
        if len(found) < position:
            break
        node = found[position - 1]
    return source_line(node)
