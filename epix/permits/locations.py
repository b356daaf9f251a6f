"""Where each box lives, as readable XPaths of local names, and how to find their line numbers.

Findings name the element a reader of the permit would look at; a ``LineFinder`` resolves such
paths against the parsed element (as deep as each exists) so that a missing box still points at
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


class LineFinder:
    """Resolves paths against one element to source lines.

    Each element's children are grouped by local name the first time a path steps through it,
    so a finding on each of a permit's N lines costs O(N) in all, not O(N) per finding: listing
    the consignment's items once per finding made a 4,000-line permit with one warning a line
    cost 15 s of CPU.
    """

    def __init__(self, root: etree._Element) -> None:
        self._root = root
        self._children: dict[etree._Element, dict[str, list[etree._Element]]] = {}

    def _named(self, node: etree._Element, name: str) -> list[etree._Element]:
        groups = self._children.get(node)
        if groups is None:
            groups = children_by_name(node)
            self._children[node] = groups
        return groups.get(name, [])

    def __call__(self, path: str) -> int | None:
        """The source line of the deepest existing element along ``path`` (None if unknown)."""
        steps = [step for step in path.split("/") if step and not step.startswith("@")]
        if not steps:
            return None
        node = self._root
        for step in steps[1:]:
            match = _STEP.match(step)
            if match is None:
                break
            name, position = match.group(1), int(match.group(2) or 1)
            found = self._named(node, name)
            if len(found) < position:
                break
            node = found[position - 1]
        return source_line(node)


def children_by_name(node: etree._Element) -> dict[str, list[etree._Element]]:
    """The element children of ``node`` by local name, in document order."""
    groups: dict[str, list[etree._Element]] = {}
    for child in node.iterchildren():
        if isinstance(child.tag, str):
            groups.setdefault(child.tag.rsplit("}", 1)[-1], []).append(child)
    return groups
