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


class _Kids:
    """An element's children grouped by tag, read in one pass.

    lxml's ``find`` runs ElementPath in Python; a permit has ~150 elements and is read on the
    hot path, so each aggregate is scanned once and its children looked up in a dict.
    """

    __slots__ = ("_by_tag",)

    def __init__(self, element: etree._Element | None) -> None:
        by_tag: dict[str, list[etree._Element]] = {}
        if element is not None:
            # Elements only: comments and processing instructions are skipped in C.
            for child in element.iterchildren(etree.Element):
                found = by_tag.get(child.tag)
                if found is None:
                    by_tag[child.tag] = [child]
                else:
                    found.append(child)
        self._by_tag = by_tag

    def all(self, name: str, namespace: str = _R) -> list[etree._Element]:
        return self._by_tag.get(namespace + name, [])

    def first(self, name: str, namespace: str = _R) -> etree._Element | None:
        found = self._by_tag.get(namespace + name)
        return found[0] if found else None

    def sub(self, name: str, namespace: str = _R) -> _Kids:
        found = self._by_tag.get(namespace + name)
        return _Kids(found[0] if found else None)

    def text(self, name: str) -> str | None:
        found = self._by_tag.get(_R + name)
        if not found:
            return None
        value = found[0].text
        if value is None:
            return None
        value = value.strip()
        return value or None

    def texts(self, name: str) -> tuple[str, ...]:
        return tuple(value for child in self.all(name) if (value := _text(child)))

    def datetime(self, name: str) -> datetime | None:
        return _datetime(self.first(name))

    def quantity(self, name: str) -> tuple[Decimal | None, str | None]:
        return _quantity(self.first(name))


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    value = element.text
    if value is None:
        return None
    value = value.strip()
    return value or None


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
    kids = _Kids(element)
    period = kids.sub("EffectiveSpecifiedPeriod")
    ref = DocumentRef(
        id=kids.text("ID"),
        type_code=kids.text("TypeCode"),
        issued_at=kids.datetime("IssueDateTime"),
        name=kids.text("Name"),
        valid_from=period.datetime("StartDateTime"),
        valid_until=period.datetime("EndDateTime"),
    )
    return None if ref == _NO_DOCUMENT else ref


_NO_DOCUMENT = DocumentRef()


def _party(element: etree._Element | None) -> TradeParty:
    if element is None:
        return TradeParty()
    kids = _Kids(element)
    address = kids.sub("PostalTradeAddress")
    return TradeParty(
        name=kids.text("Name"),
        id=kids.text("ID"),
        address=Address(
            street=address.text("StreetName"),
            city=address.text("CityName"),
            postcode=address.text("PostcodeCode"),
            po_box=address.text("PostOfficeBox"),
            subdivision=address.text("CountrySubDivisionName"),
            country=address.text("CountryID"),
            country_name=address.text("CountryName"),
        ),
        representative=kids.sub("SpecifiedRepresentativePerson").text("Name"),
        signatory=kids.sub("SpecifiedAuthoritativeSignatoryPerson").text("Name"),
    )


_NO_ENDORSEMENT = Endorsement()


def _endorsement(element: etree._Element | None) -> Endorsement | None:
    if element is None:
        return None
    kids = _Kids(element)
    quantity, unit = kids.quantity("UnitQuantity")
    location = kids.sub("OccurrenceLogisticsLocation")
    certifier = kids.sub("CertifyingTradeParty")
    endorsement = Endorsement(
        occurred_at=kids.datetime("ActualOccurrenceDateTime"),
        quantity=quantity,
        unit=unit,
        port=location.text("ID"),
        port_name=location.text("Name"),
        authority=certifier.text("Name"),
        officer=certifier.sub("SpecifiedAuthoritativeSignatoryPerson").text("Name"),
    )
    return None if endorsement == _NO_ENDORSEMENT else endorsement


_LINE_DOCUMENTS = (DOC_ORIGIN_PERMIT, DOC_LAST_REEXPORT, DOC_IMPORT_PERMIT)


def _line(item: etree._Element, index: int) -> PermitLine:
    kids = _Kids(item)
    trade = kids.sub("IncludedSupplyChainTradeLineItem")
    product = trade.sub("SpecifiedTradeProduct")
    quantity, unit = kids.sub("TransportLogisticsPackage").quantity("ItemQuantity")
    origin = kids.sub("OriginTradeCountry")
    last = kids.sub("ExportTradeCountry")
    procedure = kids.sub("ApplicableCrossBorderRegulatoryProcedure")
    used, quota_unit = procedure.quantity("UsedToDateQuotaQuantity")
    annual, annual_unit = procedure.quantity("AnnualQuotaQuantity")

    by_kind: dict[str, DocumentRef] = {}
    others: list[DocumentRef] = []
    for element in kids.all("AssociatedReferencedDocument"):
        ref = _document(element)
        if ref is None:
            continue
        kind = ref.type_code
        if kind in _LINE_DOCUMENTS and kind not in by_kind:
            by_kind[kind] = ref
        else:
            others.append(ref)

    marks = tuple(
        mark
        for marks_element in kids.all("PhysicalLogisticsShippingMarks")
        for mark in _Kids(marks_element).texts("Marking")
    )
    return PermitLine(
        line_id=kids.text("ID") or str(index),
        scientific_name=product.text("ScientificName"),
        common_name=product.text("CommonName"),
        description=product.text("Description"),
        term=product.text("TypeCode"),
        marks=marks,
        appendix=trade.text("TypeCode"),
        source=trade.text("TypeExtensionCode"),
        quantity=quantity,
        unit=unit,
        quota_used=used,
        annual_quota=annual,
        quota_unit=quota_unit or annual_unit,
        origin_country=origin.text("ID"),
        origin_country_name=origin.text("Name"),
        origin_permit=by_kind.get(DOC_ORIGIN_PERMIT),
        reexport_country=last.text("ID"),
        reexport_country_name=last.text("Name"),
        last_reexport=by_kind.get(DOC_LAST_REEXPORT),
        import_permit=by_kind.get(DOC_IMPORT_PERMIT),
        other_documents=tuple(others),
        registered_operation=procedure.sub("PreviousReferencedDocument").text("ID"),
        acquisition_date=procedure.datetime("AcquisitionDateTime"),
        procedure_categories=procedure.texts("CategoryCode"),
        endorsement=_endorsement(kids.first("ExaminationTransportEvent")),
    )


def read_permit(element: etree._Element) -> Permit:
    """Map a ``CITESEPermit`` element (as returned by ``extract_permit_element``) to a Permit.

    Raises ``EpixError`` (EPIX-SCHEMA-001) only for values the schema would also refuse.
    """
    root = _Kids(element)
    header = root.sub("HeaderExchangedDocument", _P)
    consignment = root.sub("SpecifiedSupplyChainConsignment", _P)
    period = header.sub("EffectiveSpecifiedPeriod")
    signatory = header.sub("FirstSignatoryDocumentAuthentication")
    place = header.sub("IssueLogisticsLocation")
    copy_text = header.text("CopyIndicator")
    references = tuple(
        ref
        for child in header.all("ReferenceReferencedDocument")
        if (ref := _document(child)) is not None
    )
    items = consignment.all("IncludedSupplyChainConsignmentItem")
    return Permit(
        document_type=header.text("TypeCode"),
        number=header.text("ID"),
        document_name=header.text("Name"),
        issued_at=header.datetime("IssueDateTime"),
        copy=None if copy_text is None else copy_text in ("true", "1"),
        purpose_text=header.text("Purpose"),
        purpose=header.text("PurposeCode"),
        special_conditions=header.texts("Information"),
        references=references,
        valid_from=period.datetime("StartDateTime"),
        valid_until=period.datetime("EndDateTime"),
        place_of_issue_id=place.text("ID"),
        place_of_issue=place.text("Name"),
        security_stamp=signatory.text("ID"),
        signed_at=signatory.datetime("ActualDateTime"),
        issuing_authority=_party(signatory.first("ProviderTradeParty")),
        exporter=_party(consignment.first("ConsignorTradeParty")),
        importer=_party(consignment.first("ConsigneeTradeParty")),
        transport_document=_document(consignment.first("TransportContractReferencedDocument")),
        endorsement=_endorsement(consignment.first("ExaminationTransportEvent")),
        lines=tuple(_line(item, index) for index, item in enumerate(items, start=1)),
    )
