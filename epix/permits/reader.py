"""From XML to ``Permit``: find the ``CITESEPermit`` element wherever it travels, then map boxes.

A permit arrives bare, inside an EPIX envelope (base64 payload, byte-exact, parsed again with the
same hardened parser) or inside the SOAP body of the UNEP-WCMC EPIX hub, whose ``CITESEPermit``
root is unqualified while its children are qualified. Whatever the wrapping, the caller gets the
permit element in the ``CITESEPermit:2`` namespace.
"""

from __future__ import annotations

import binascii
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from lxml import etree

from epix.errors import EpixError
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
        return binascii.a2b_base64("".join((payload.text or "").split()).encode("ascii"))
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

    Raises ``EpixError`` (EPIX-XML-005) when no permit in the right namespace is there.
    """
    tag = root.tag
    if tag == PERMIT_TAG:
        return root
    if tag == "CITESEPermit":
        return _qualify(root)
    if tag == ENVELOPE_TAG:
        inner = parse_xml(envelope_payload(root), max_bytes=max_bytes, max_depth=max_depth)
        if inner.tag == "CITESEPermit":
            return _qualify(inner)
        if inner.tag != PERMIT_TAG:
            raise _wrong_root(inner, "The envelope's payload is not a CITESEPermit")
        return inner
    if isinstance(tag, str) and tag.startswith("{") and tag[1:].split("}")[0] in SOAP_NAMESPACES:
        for candidate in root.iter(PERMIT_TAG, "CITESEPermit"):
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


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    value = (element.text or "").strip()
    return value or None


def _child_text(parent: etree._Element | None, name: str) -> str | None:
    if parent is None:
        return None
    return _text(parent.find(_R + name))


def _texts(parent: etree._Element | None, name: str) -> tuple[str, ...]:
    if parent is None:
        return ()
    return tuple(value for child in parent.iterchildren(_R + name) if (value := _text(child)))


def _bad_value(element: etree._Element, what: str, value: str) -> EpixError:
    return EpixError.of(
        "EPIX-SCHEMA-001",
        f"{_local_name(str(element.tag))}: '{value}' is not a valid {what}.",
        location=_path_of(element),
        line=source_line(element),
    )


def parse_datetime(value: str) -> datetime:
    """An xs:dateTime or xs:date as an aware datetime; without an offset, UTC is assumed."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _datetime(element: etree._Element | None) -> datetime | None:
    value = _text(element)
    if value is None or element is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError:
        raise _bad_value(element, "date and time", value) from None


def _child_datetime(parent: etree._Element | None, name: str) -> datetime | None:
    return None if parent is None else _datetime(parent.find(_R + name))


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


# --- aggregates ----------------------------------------------------------------------------


def _document(element: etree._Element | None) -> DocumentRef | None:
    if element is None:
        return None
    period = element.find(_R + "EffectiveSpecifiedPeriod")
    ref = DocumentRef(
        id=_child_text(element, "ID"),
        type_code=_child_text(element, "TypeCode"),
        issued_at=_child_datetime(element, "IssueDateTime"),
        name=_child_text(element, "Name"),
        valid_from=_child_datetime(period, "StartDateTime"),
        valid_until=_child_datetime(period, "EndDateTime"),
    )
    return None if ref == DocumentRef() else ref


def _party(element: etree._Element | None) -> TradeParty:
    if element is None:
        return TradeParty()
    address = element.find(_R + "PostalTradeAddress")
    return TradeParty(
        name=_child_text(element, "Name"),
        id=_child_text(element, "ID"),
        address=Address(
            street=_child_text(address, "StreetName"),
            city=_child_text(address, "CityName"),
            postcode=_child_text(address, "PostcodeCode"),
            po_box=_child_text(address, "PostOfficeBox"),
            subdivision=_child_text(address, "CountrySubDivisionName"),
            country=_child_text(address, "CountryID"),
            country_name=_child_text(address, "CountryName"),
        ),
        representative=_child_text(element.find(_R + "SpecifiedRepresentativePerson"), "Name"),
        signatory=_child_text(element.find(_R + "SpecifiedAuthoritativeSignatoryPerson"), "Name"),
    )


def _endorsement(element: etree._Element | None) -> Endorsement | None:
    if element is None:
        return None
    quantity, unit = _quantity(element.find(_R + "UnitQuantity"))
    location = element.find(_R + "OccurrenceLogisticsLocation")
    certifier = element.find(_R + "CertifyingTradeParty")
    endorsement = Endorsement(
        occurred_at=_child_datetime(element, "ActualOccurrenceDateTime"),
        quantity=quantity,
        unit=unit,
        port=_child_text(location, "ID"),
        port_name=_child_text(location, "Name"),
        authority=_child_text(certifier, "Name"),
        officer=_child_text(
            None
            if certifier is None
            else certifier.find(_R + "SpecifiedAuthoritativeSignatoryPerson"),
            "Name",
        ),
    )
    return None if endorsement == Endorsement() else endorsement


def _line(item: etree._Element, index: int) -> PermitLine:
    trade = item.find(_R + "IncludedSupplyChainTradeLineItem")
    product = None if trade is None else trade.find(_R + "SpecifiedTradeProduct")
    quantity, unit = _quantity(item.find(f"{_R}TransportLogisticsPackage/{_R}ItemQuantity"))
    origin = item.find(_R + "OriginTradeCountry")
    last = item.find(_R + "ExportTradeCountry")
    procedure = item.find(_R + "ApplicableCrossBorderRegulatoryProcedure")
    used, quota_unit = _quantity(
        None if procedure is None else procedure.find(_R + "UsedToDateQuotaQuantity")
    )
    annual, annual_unit = _quantity(
        None if procedure is None else procedure.find(_R + "AnnualQuotaQuantity")
    )
    operation = None
    if procedure is not None:
        operation = _child_text(procedure.find(_R + "PreviousReferencedDocument"), "ID")

    by_kind: dict[str, DocumentRef] = {}
    others: list[DocumentRef] = []
    for element in item.iterchildren(_R + "AssociatedReferencedDocument"):
        ref = _document(element)
        if ref is None:
            continue
        kind = ref.type_code
        if (
            kind in (DOC_ORIGIN_PERMIT, DOC_LAST_REEXPORT, DOC_IMPORT_PERMIT)
            and kind not in by_kind
        ):
            by_kind[kind] = ref
        else:
            others.append(ref)

    marks = tuple(
        mark
        for marks_element in item.iterchildren(_R + "PhysicalLogisticsShippingMarks")
        for mark in _texts(marks_element, "Marking")
    )
    return PermitLine(
        line_id=_child_text(item, "ID") or str(index),
        scientific_name=_child_text(product, "ScientificName"),
        common_name=_child_text(product, "CommonName"),
        description=_child_text(product, "Description"),
        term=_child_text(product, "TypeCode"),
        marks=marks,
        appendix=_child_text(trade, "TypeCode"),
        source=_child_text(trade, "TypeExtensionCode"),
        quantity=quantity,
        unit=unit,
        quota_used=used,
        annual_quota=annual,
        quota_unit=quota_unit or annual_unit,
        origin_country=_child_text(origin, "ID"),
        origin_country_name=_child_text(origin, "Name"),
        origin_permit=by_kind.get(DOC_ORIGIN_PERMIT),
        reexport_country=_child_text(last, "ID"),
        reexport_country_name=_child_text(last, "Name"),
        last_reexport=by_kind.get(DOC_LAST_REEXPORT),
        import_permit=by_kind.get(DOC_IMPORT_PERMIT),
        other_documents=tuple(others),
        registered_operation=operation,
        acquisition_date=_child_datetime(procedure, "AcquisitionDateTime"),
        procedure_categories=_texts(procedure, "CategoryCode"),
        endorsement=_endorsement(item.find(_R + "ExaminationTransportEvent")),
    )


def read_permit(element: etree._Element) -> Permit:
    """Map a ``CITESEPermit`` element (as returned by ``extract_permit_element``) to a Permit.

    Raises ``EpixError`` (EPIX-SCHEMA-001) only for values the schema would also refuse.
    """
    header = element.find(_P + "HeaderExchangedDocument")
    consignment = element.find(_P + "SpecifiedSupplyChainConsignment")
    period = None if header is None else header.find(_R + "EffectiveSpecifiedPeriod")
    signatory = None if header is None else header.find(_R + "FirstSignatoryDocumentAuthentication")
    place = None if header is None else header.find(_R + "IssueLogisticsLocation")
    copy_text = _child_text(header, "CopyIndicator")
    items = (
        ()
        if consignment is None
        else consignment.iterchildren(_R + "IncludedSupplyChainConsignmentItem")
    )
    references = (
        ()
        if header is None
        else tuple(
            ref
            for child in header.iterchildren(_R + "ReferenceReferencedDocument")
            if (ref := _document(child)) is not None
        )
    )
    return Permit(
        document_type=_child_text(header, "TypeCode"),
        number=_child_text(header, "ID"),
        document_name=_child_text(header, "Name"),
        issued_at=_child_datetime(header, "IssueDateTime"),
        copy=None if copy_text is None else copy_text in ("true", "1"),
        purpose_text=_child_text(header, "Purpose"),
        purpose=_child_text(header, "PurposeCode"),
        special_conditions=_texts(header, "Information"),
        references=references,
        valid_from=_child_datetime(period, "StartDateTime"),
        valid_until=_child_datetime(period, "EndDateTime"),
        place_of_issue_id=_child_text(place, "ID"),
        place_of_issue=_child_text(place, "Name"),
        security_stamp=_child_text(signatory, "ID"),
        signed_at=_child_datetime(signatory, "ActualDateTime"),
        issuing_authority=_party(
            None if signatory is None else signatory.find(_R + "ProviderTradeParty")
        ),
        exporter=_party(
            None if consignment is None else consignment.find(_R + "ConsignorTradeParty")
        ),
        importer=_party(
            None if consignment is None else consignment.find(_R + "ConsigneeTradeParty")
        ),
        transport_document=_document(
            None
            if consignment is None
            else consignment.find(_R + "TransportContractReferencedDocument")
        ),
        endorsement=_endorsement(
            None if consignment is None else consignment.find(_R + "ExaminationTransportEvent")
        ),
        lines=tuple(_line(item, index) for index, item in enumerate(items, start=1)),
    )
