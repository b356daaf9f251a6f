"""The CITES e-permit Toolkit v1 layout (``CBFShip``), read by translating it to v2.

Parties still running Toolkit v1 systems send the same boxes in an older shape: root
``CBFShip`` in ``urn:un:unece:uncefact:data:draft:CBFShip:1``, countries in addresses as a
``CountryIdentificationTradeCountry`` aggregate, ``InspectedUnitQuantity`` for the endorsed
quantity and ``ApplicableCrossBorderGovernmentProcedure`` for box 11a/12b. The reusable
aggregates share v2's namespace. Translating the tree in place lets the one v2 schema, reader,
code lists and rules serve both layouts; the differences were taken from the two Toolkit
samples in ``shared/reference/epix`` (same permit, v1 and v2).

What v1 has and v2 cannot hold is dropped: the sub-division of an origin or re-export country,
and the consignment's ``ImportTradeCountry`` (the importer's address carries the country).
"""

from __future__ import annotations

from lxml import etree

from epix.xml.namespaces import CITES_PERMIT, CITES_RAM

CBFSHIP = "urn:un:unece:uncefact:data:draft:CBFShip:1"
LEGACY_ROOT_TAGS = frozenset({"CBFShip", f"{{{CBFSHIP}}}CBFShip"})

_V1 = f"{{{CBFSHIP}}}"
_V2 = f"{{{CITES_PERMIT}}}"
_R = f"{{{CITES_RAM}}}"
_RENAMED = {
    _R + old: _R + new
    for old, new in (
        ("InspectedUnitQuantity", "UnitQuantity"),
        ("ApplicableCrossBorderGovernmentProcedure", "ApplicableCrossBorderRegulatoryProcedure"),
    )
}
_COUNTRY_AGGREGATE = f"{_R}CountryIdentificationTradeCountry"
_SUBDIVISION = f"{_R}SubordinateTradeCountrySubDivision"
_TRADE_COUNTRIES = (f"{_R}OriginTradeCountry", f"{_R}ExportTradeCountry")
_IMPORT_COUNTRY = f"{_R}ImportTradeCountry"


def is_legacy_v1(element: etree._Element) -> bool:
    return element.tag in LEGACY_ROOT_TAGS


def translate_v1(root: etree._Element) -> etree._Element:
    """Rewrite a ``CBFShip`` tree (in place) into a ``CITESEPermit`` v2 tree and return it."""
    for consignment in root.iterchildren(f"{_V1}SpecifiedSupplyChainConsignment"):
        for imported in consignment.findall(_IMPORT_COUNTRY):
            consignment.remove(imported)
    for element in root.iter(etree.Element):
        tag = element.tag
        if not isinstance(tag, str):
            continue
        if tag.startswith(_V1):
            element.tag = _V2 + tag[len(_V1) :]
        elif tag in _RENAMED:
            element.tag = _RENAMED[tag]
    for aggregate in list(root.iter(_COUNTRY_AGGREGATE)):
        _flatten_country(aggregate)
    for country in root.iter(*_TRADE_COUNTRIES):
        for subdivision in country.findall(_SUBDIVISION):
            country.remove(subdivision)
    root.tag = f"{_V2}CITESEPermit"
    etree.cleanup_namespaces(root)
    return root


def _flatten_country(aggregate: etree._Element) -> None:
    """``CountryIdentificationTradeCountry`` (ID, Name, sub-division Name) becomes v2's
    ``CountryID``, ``CountryName``, ``CountrySubDivisionName`` at the same place."""
    address = aggregate.getparent()
    assert address is not None  # found by iterating below the root
    position = address.index(aggregate)
    flat: list[etree._Element] = []
    for source, target in (
        (aggregate.find(f"{_R}ID"), "CountryID"),
        (aggregate.find(f"{_R}Name"), "CountryName"),
        (aggregate.find(f"{_SUBDIVISION}/{_R}Name"), "CountrySubDivisionName"),
    ):
        if source is None:
            continue
        element = etree.Element(_R + target)
        for name, value in source.attrib.items():
            element.set(name, value)
        element.text = source.text
        element.tail = source.tail
        element.sourceline = source.sourceline  # findings point into the v1 document as sent
        flat.append(element)
    address.remove(aggregate)
    for offset, element in enumerate(flat):
        address.insert(position + offset, element)
