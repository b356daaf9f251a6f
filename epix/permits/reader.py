"""From XML to ``Permit``: find the ``CITESEPermit`` element wherever it travels, then map boxes.

A permit arrives bare, inside an EPIX envelope (base64 payload, byte-exact, parsed again with the
same hardened parser) or inside the SOAP body of the UNEP-WCMC EPIX hub, whose ``CITESEPermit``
root is unqualified while its children are qualified. Whatever the wrapping, the caller gets the
permit element in the ``CITESEPermit:2`` namespace.
"""

from __future__ import annotations

import binascii
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from lxml import etree

from epix.errors import EpixError
from epix.permits.legacy import LEGACY_ROOT_TAGS, translate_v1
from epix.permits.locations import source_line
from epix.permits.model import (
    DOC_IMPORT_PERMIT,
    DOC_LAST_REEXPORT,
    DOC_ORIGIN_PERMIT,
    Address,
    DocumentRef,
    Endorsement,
    Permit,
    PermitLine,
    TradeParty,
)
from epix.xml import parse_xml
from epix.xml.namespaces import CITES_PERMIT, CITES_RAM, EPIX_ENVELOPE
from epix.xml.parse import DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH

PERMIT_TAG = f"{{{CITES_PERMIT}}}CITESEPermit"
ENVELOPE_TAG = f"{{{EPIX_ENVELOPE}}}Envelope"
PAYLOAD_TAG = f"{{{EPIX_ENVELOPE}}}Payload"
SOAP_NAMESPACES = (
    "http://schemas.xmlsoap.org/soap/envelope/",
    "http://www.w3.org/2003/05/soap-envelope",
)
ROOT_PATH = "/CITESEPermit"

_P = f"{{{CITES_PERMIT}}}"
_R = f"{{{CITES_RAM}}}"


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _qualify(element: etree._Element) -> etree._Element:
    """Put the unqualified root of the Toolkit v2 SOAP sample into the permit namespace."""
    element.tag = PERMIT_TAG
    return element


def envelope_payload(envelope: etree._Element) -> bytes:
    """The signed document an EPIX envelope carries: its ``Payload`` base64-decoded, byte-exact."""
    payload = next(envelope.iter(PAYLOAD_TAG), None)
    if payload is None or not (payload.text or "").strip():
        raise EpixError.of(
            "EPIX-XML-005",
            "The EPIX envelope has no Payload.",
            location="/Envelope/Payload",
            line=source_line(envelope),
        )
    try:
        return binascii.a2b_base64(
            "".join((payload.text or "").split()).encode("ascii"), strict_mode=True
        )
    except (binascii.Error, UnicodeEncodeError):
        raise EpixError.of(
            "EPIX-XML-005",
            "The EPIX envelope's Payload is not valid base64.",
            location="/Envelope/Payload",
            line=source_line(payload),
        ) from None


def extract_permit_element(
    root: etree._Element,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> etree._Element:
    """The ``CITESEPermit`` element in a bare document, an EPIX envelope or a SOAP body.

    A Toolkit v1 ``CBFShip`` (bare or in a SOAP body) is translated to v2 in place
    (``epix.permits.legacy``). Raises ``EpixError`` (EPIX-XML-005) when no permit in the right
    namespace is there.
    """
    tag = root.tag
    if tag == PERMIT_TAG:
        return root
    if tag == "CITESEPermit":
        return _qualify(root)
    if tag in LEGACY_ROOT_TAGS:
        return translate_v1(root)
    if tag == ENVELOPE_TAG:
        inner = parse_xml(envelope_payload(root), max_bytes=max_bytes, max_depth=max_depth)
        if inner.tag == "CITESEPermit":
            return _qualify(inner)
        if inner.tag != PERMIT_TAG:
            raise _wrong_root(inner, "The envelope's payload is not a CITESEPermit")
        return inner
    if isinstance(tag, str) and tag.startswith("{") and tag[1:].split("}")[0] in SOAP_NAMESPACES:
        for candidate in root.iter(PERMIT_TAG, "CITESEPermit", *LEGACY_ROOT_TAGS):
            if candidate.tag in LEGACY_ROOT_TAGS:
                return translate_v1(candidate)
            return candidate if candidate.tag == PERMIT_TAG else _qualify(candidate)
        raise _wrong_root(root, "The SOAP message carries no CITESEPermit")
    raise _wrong_root(root, "The document is not a CITESEPermit")


def _wrong_root(element: etree._Element, what: str) -> EpixError:
    tag = str(element.tag)
    namespace = tag[1:].split("}")[0] if tag.startswith("{") else ""
    found = f"{_local_name(tag)} in namespace '{namespace}'" if namespace else _local_name(tag)
    return EpixError.of(
        "EPIX-XML-005",
        f"{what}: found {found}; expected CITESEPermit in namespace '{CITES_PERMIT}'.",
        location="/" + _local_name(tag),
        line=source_line(element),
    )


# --- value helpers -------------------------------------------------------------------------
#
# A permit has ~150 elements and is read on the hot path. Reading an element's ``tag`` builds a
# new "{namespace}name" string each time a proxy is created, and lxml's ``find`` runs ElementPath
# in Python, so each aggregate's children are walked once into a dict keyed by Clark tag (the
# tags below are built once, at import) and the fields are picked from it.

_ACQUISITION = _R + "AcquisitionDateTime"
_ACTUAL = _R + "ActualDateTime"
_ADDRESS = _R + "PostalTradeAddress"
_ANNUAL_QUOTA = _R + "AnnualQuotaQuantity"
_APPENDIX_OR_TYPE = _R + "TypeCode"
_CATEGORY = _R + "CategoryCode"
_CERTIFIER = _R + "CertifyingTradeParty"
_CITY = _R + "CityName"
_CONSIGNEE = _R + "ConsigneeTradeParty"
_CONSIGNMENT = _P + "SpecifiedSupplyChainConsignment"
_CONSIGNOR = _R + "ConsignorTradeParty"
_COPY = _R + "CopyIndicator"
_COUNTRY = _R + "CountryID"
_COUNTRY_NAME = _R + "CountryName"
_DESCRIPTION = _R + "Description"
_END = _R + "EndDateTime"
_EVENT = _R + "ExaminationTransportEvent"
_EXPORT_COUNTRY = _R + "ExportTradeCountry"
_HEADER = _P + "HeaderExchangedDocument"
_ID = _R + "ID"
_INFORMATION = _R + "Information"
_ISSUED = _R + "IssueDateTime"
_ITEM = _R + "IncludedSupplyChainConsignmentItem"
_ITEM_QUANTITY = _R + "ItemQuantity"
_LINE_DOCUMENT = _R + "AssociatedReferencedDocument"
_LOCATION = _R + "OccurrenceLogisticsLocation"
_MARKING = _R + "Marking"
_MARKS = _R + "PhysicalLogisticsShippingMarks"
_NAME = _R + "Name"
_OCCURRED = _R + "ActualOccurrenceDateTime"
_ORIGIN_COUNTRY = _R + "OriginTradeCountry"
_PACKAGE = _R + "TransportLogisticsPackage"
_PERIOD = _R + "EffectiveSpecifiedPeriod"
_PLACE = _R + "IssueLogisticsLocation"
_PO_BOX = _R + "PostOfficeBox"
_POSTCODE = _R + "PostcodeCode"
_PREVIOUS_DOCUMENT = _R + "PreviousReferencedDocument"
_PROCEDURE = _R + "ApplicableCrossBorderRegulatoryProcedure"
_PRODUCT = _R + "SpecifiedTradeProduct"
_PROVIDER = _R + "ProviderTradeParty"
_PURPOSE = _R + "PurposeCode"
_PURPOSE_TEXT = _R + "Purpose"
_QUOTA_USED = _R + "UsedToDateQuotaQuantity"
_REFERENCE = _R + "ReferenceReferencedDocument"
_REPRESENTATIVE = _R + "SpecifiedRepresentativePerson"
_SCIENTIFIC_NAME = _R + "ScientificName"
_COMMON_NAME = _R + "CommonName"
_SIGNATORY = _R + "FirstSignatoryDocumentAuthentication"
_SIGNATORY_PERSON = _R + "SpecifiedAuthoritativeSignatoryPerson"
_SOURCE = _R + "TypeExtensionCode"
_START = _R + "StartDateTime"
_STREET = _R + "StreetName"
_SUBDIVISION = _R + "CountrySubDivisionName"
_TRADE = _R + "IncludedSupplyChainTradeLineItem"
_TRANSPORT_DOCUMENT = _R + "TransportContractReferencedDocument"
_UNIT_QUANTITY = _R + "UnitQuantity"

_Kids = dict[object, etree._Element]
_NO_KIDS: _Kids = {}
_Leaves = dict[object, str | None]
_NO_LEAVES: _Leaves = {}


def _kids(element: etree._Element | None) -> _Kids:
    """The element's first child of each tag (comments and PIs key on their tag factory)."""
    if element is None:
        return _NO_KIDS
    kids: _Kids = {}
    for child in element[::-1]:  # type: ignore[index]  # backwards: the first child wins
        kids[child.tag] = child
    return kids


def _leaves(element: etree._Element | None) -> _Leaves:
    """Like ``_kids``, but each first child's text (as ``_text`` gives it) for leaf aggregates."""
    if element is None:
        return _NO_LEAVES
    leaves: _Leaves = {}
    for child in element[::-1]:  # type: ignore[index]
        value = child.text
        leaves[child.tag] = (value and value.strip()) or None
    return leaves


def _every(element: etree._Element, kids: _Kids, tag: str) -> list[etree._Element]:
    """Every child named ``tag`` in document order; ``kids`` is ``_kids(element)``."""
    if tag not in kids:
        return []
    if len(element) == len(kids):  # no tag repeats: the one child is all there is
        return [kids[tag]]
    return [child for child in element[:] if child.tag == tag]  # type: ignore[index]


def _child(element: etree._Element | None, tag: str) -> etree._Element | None:
    """The first child named ``tag``: cheaper than ``_kids`` when one child is wanted."""
    if element is not None:
        for child in element[:]:  # type: ignore[index]  # a slice is built faster than an iterator
            if child.tag == tag:
                return child
    return None


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    value = element.text
    return (value and value.strip()) or None


def _texts(parents: list[etree._Element], tag: str) -> tuple[str, ...]:
    """The non-empty texts of every ``tag`` child of each parent, in document order."""
    values: list[str] = []
    for parent in parents:
        for child in parent[:]:  # type: ignore[index]
            if child.tag == tag and (value := (child.text or "").strip()):
                values.append(value)
    return tuple(values)


def _bad_value(element: etree._Element, what: str, value: str) -> EpixError:
    return EpixError.of(
        "EPIX-SCHEMA-001",
        f"{_local_name(str(element.tag))}: '{value}' is not a valid {what}.",
        location=_path_of(element),
        line=source_line(element),
    )


def parse_datetime(value: str, *, end_of_day: bool = False) -> datetime:
    """An xs:dateTime or xs:date as an aware datetime; without an offset, UTC is assumed.

    An xs:date (no ``T``) is the start of that day in its zone (``2024-03-01Z`` or
    ``2024-03-01+02:00`` may carry one; ``fromisoformat`` would refuse the first and read the
    second as the time of day 02:00), or with ``end_of_day`` its last second: a validity period
    that ends on a date includes that day. A moment outside the years 1-9999 in UTC
    (``9999-12-31T23:00-14:00``) raises ``OverflowError``: it could be neither stored nor
    compared with "now".
    """
    if "T" not in value:
        value = f"{value[:10]}T{'23:59:59' if end_of_day else '00:00:00'}{value[10:]}"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    if moment.year in (1, 9999):  # only there can an offset carry it out of range
        moment.astimezone(UTC)
    return moment


def _datetime(element: etree._Element | None, *, end_of_day: bool = False) -> datetime | None:
    value = _text(element)
    if value is None or element is None:
        return None
    try:
        return parse_datetime(value, end_of_day=end_of_day)
    except (ValueError, OverflowError):
        raise _bad_value(element, "date and time", value) from None


def _quantity(element: etree._Element | None) -> tuple[Decimal | None, str | None]:
    if element is None:
        return None, None
    unit = (element.get("unitCode") or "").strip()
    unit_code = unit if unit and unit != "?" else None
    value = _text(element)
    if value is None:
        return None, unit_code
    try:
        quantity = Decimal(value)
    except InvalidOperation:
        raise _bad_value(element, "decimal quantity", value) from None
    if not quantity.is_finite():
        raise _bad_value(element, "decimal quantity", value)
    return quantity, unit_code


def _path_of(element: etree._Element) -> str:
    """A readable XPath of local names with positions, rooted at CITESEPermit."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = _local_name(str(node.tag))
        parent = node.getparent()
        if parent is None or name == "CITESEPermit":
            steps.append(name)
            break
        same = list(parent.iterchildren(node.tag))
        steps.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        node = parent
    return "/" + "/".join(reversed(steps))


_T = TypeVar("_T")


def _builder(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for the frozen, slotted dataclass ``cls``, ~4x faster.

    A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__`` (~70 ns a
    field, 1.8 us for a ``PermitLine``). This twin has the same slots, so its ``__init__`` fills
    them with plain attribute stores, and its ``__post_init__`` then makes the instance a
    ``cls``: the same layout, frozen from then on, equal to and printed like ``cls(...)``.
    """

    def become(instance: Any) -> None:
        instance.__class__ = cls

    return dataclasses.make_dataclass(
        f"_{cls.__name__}Builder",
        list(cls.__slots__),  # type: ignore[attr-defined]
        namespace={"__post_init__": become},
        eq=False,
        repr=False,
        match_args=False,
        slots=True,
    )


# --- aggregates ----------------------------------------------------------------------------
#
# Fields are read in the order the schema-error precedence needs (the first bad date or
# quantity in reading order is the one reported), and dataclasses are built positionally.

_Address = _builder(Address)
_DocumentRef = _builder(DocumentRef)
_Endorsement = _builder(Endorsement)
_Permit = _builder(Permit)
_PermitLine = _builder(PermitLine)
_TradeParty = _builder(TradeParty)


def _document(element: etree._Element | None) -> DocumentRef | None:
    """A referenced document, or None when every one of its fields is empty."""
    if element is None:
        return None
    kids = _kids(element)
    issued_at = _datetime(kids.get(_ISSUED))
    period = _kids(kids.get(_PERIOD))
    valid_from = _datetime(period.get(_START))
    valid_until = _datetime(period.get(_END), end_of_day=True)
    number = _text(kids.get(_ID))
    type_code = _text(kids.get(_APPENDIX_OR_TYPE))
    name = _text(kids.get(_NAME))
    if number or type_code or issued_at or name or valid_from or valid_until:
        return _DocumentRef(number, type_code, issued_at, name, valid_from, valid_until)
    return None


_NO_PARTY = TradeParty()


def _party(element: etree._Element | None) -> TradeParty:
    if element is None:
        return _NO_PARTY
    kids = _kids(element)
    address = _leaves(kids.get(_ADDRESS))
    return _TradeParty(
        _text(kids.get(_NAME)),
        _Address(
            address.get(_STREET),
            address.get(_CITY),
            address.get(_POSTCODE),
            address.get(_PO_BOX),
            address.get(_SUBDIVISION),
            address.get(_COUNTRY),
            address.get(_COUNTRY_NAME),
        ),
        _text(kids.get(_ID)),
        _text(_child(kids.get(_REPRESENTATIVE), _NAME)),
        _text(_child(kids.get(_SIGNATORY_PERSON), _NAME)),
    )


def _endorsement(element: etree._Element | None) -> Endorsement | None:
    """Box 14, or None when every one of its fields is empty."""
    if element is None:
        return None
    kids = _kids(element)
    quantity, unit = _quantity(kids.get(_UNIT_QUANTITY))
    occurred_at = _datetime(kids.get(_OCCURRED))
    location = _leaves(kids.get(_LOCATION))
    certifier = _kids(kids.get(_CERTIFIER))
    port = location.get(_ID)
    port_name = location.get(_NAME)
    authority = _text(certifier.get(_NAME))
    officer = _text(_child(certifier.get(_SIGNATORY_PERSON), _NAME))
    if occurred_at or quantity is not None or unit or port or port_name or authority or officer:
        return _Endorsement(occurred_at, quantity, unit, port, port_name, authority, officer)
    return None


_LINE_DOCUMENTS = (DOC_ORIGIN_PERMIT, DOC_LAST_REEXPORT, DOC_IMPORT_PERMIT)


def _line(item: etree._Element, index: int) -> PermitLine:
    kids = _kids(item)
    trade = _kids(kids.get(_TRADE))
    product = _leaves(trade.get(_PRODUCT))
    quantity, unit = _quantity(_child(kids.get(_PACKAGE), _ITEM_QUANTITY))
    procedure_element = kids.get(_PROCEDURE)
    procedure = _kids(procedure_element)
    used, quota_unit = _quantity(procedure.get(_QUOTA_USED))
    annual, annual_unit = _quantity(procedure.get(_ANNUAL_QUOTA))

    by_kind: dict[str | None, DocumentRef] = {}
    others: list[DocumentRef] = []
    for element in _every(item, kids, _LINE_DOCUMENT):
        ref = _document(element)
        if ref is None:
            continue
        kind = ref.type_code
        if kind in _LINE_DOCUMENTS and kind not in by_kind:
            by_kind[kind] = ref
        else:
            others.append(ref)

    origin = _leaves(kids.get(_ORIGIN_COUNTRY))
    last = _leaves(kids.get(_EXPORT_COUNTRY))
    return _PermitLine(
        _text(kids.get(_ID)) or str(index),
        product.get(_SCIENTIFIC_NAME),
        product.get(_COMMON_NAME),
        product.get(_DESCRIPTION),
        product.get(_APPENDIX_OR_TYPE),
        _texts(_every(item, kids, _MARKS), _MARKING),
        _text(trade.get(_APPENDIX_OR_TYPE)),
        _text(trade.get(_SOURCE)),
        quantity,
        unit,
        used,
        annual,
        quota_unit or annual_unit,
        origin.get(_ID),
        origin.get(_NAME),
        by_kind.get(DOC_ORIGIN_PERMIT),
        last.get(_ID),
        last.get(_NAME),
        by_kind.get(DOC_LAST_REEXPORT),
        by_kind.get(DOC_IMPORT_PERMIT),
        tuple(others),
        _text(_child(procedure.get(_PREVIOUS_DOCUMENT), _ID)),
        _datetime(procedure.get(_ACQUISITION)),
        _texts([procedure_element], _CATEGORY) if procedure_element is not None else (),
        _endorsement(kids.get(_EVENT)),
    )


def read_permit(element: etree._Element) -> Permit:
    """Map a ``CITESEPermit`` element (as returned by ``extract_permit_element``) to a Permit.

    Raises ``EpixError`` (EPIX-SCHEMA-001) only for values the schema would also refuse.
    """
    root = _kids(element)
    header_element = root.get(_HEADER)
    header = _kids(header_element)
    consignment_element = root.get(_CONSIGNMENT)
    consignment = _kids(consignment_element)
    references = (
        tuple(
            ref
            for child in _every(header_element, header, _REFERENCE)
            if (ref := _document(child)) is not None
        )
        if header_element is not None
        else ()
    )
    issued_at = _datetime(header.get(_ISSUED))
    period = _kids(header.get(_PERIOD))
    valid_from = _datetime(period.get(_START))
    valid_until = _datetime(period.get(_END), end_of_day=True)
    signatory = _kids(header.get(_SIGNATORY))
    signed_at = _datetime(signatory.get(_ACTUAL))
    transport_document = _document(consignment.get(_TRANSPORT_DOCUMENT))
    endorsement = _endorsement(consignment.get(_EVENT))
    items = (
        _every(consignment_element, consignment, _ITEM) if consignment_element is not None else []
    )
    lines = tuple(_line(item, index) for index, item in enumerate(items, start=1))
    place = _leaves(header.get(_PLACE))
    copy_text = _text(header.get(_COPY))
    return _Permit(
        _text(header.get(_APPENDIX_OR_TYPE)),
        _text(header.get(_ID)),
        lines,
        _text(header.get(_NAME)),
        valid_from,
        valid_until,
        _party(consignment.get(_CONSIGNEE)),
        _party(consignment.get(_CONSIGNOR)),
        _texts([header_element], _INFORMATION) if header_element is not None else (),
        _text(header.get(_PURPOSE)),
        _text(header.get(_PURPOSE_TEXT)),
        _text(signatory.get(_ID)),
        _party(signatory.get(_PROVIDER)),
        issued_at,
        place.get(_NAME),
        place.get(_ID),
        signed_at,
        None if copy_text is None else copy_text in ("true", "1"),
        references,
        endorsement,
        transport_document,
    )
