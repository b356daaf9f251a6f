"""From ``Permit`` to ``CITESEPermit`` XML (unsigned), in the element order of our schema.

Only boxes that hold a value are written, so the output carries no template noise; reading it
back gives the same ``Permit`` (the round trip is tested), and it validates against
``schemas/cites/CITESEPermit_2p0.xsd``. The signature module signs these bytes as they are.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from lxml import etree

from epix.permits.model import (
    DocumentRef,
    Endorsement,
    Permit,
    PermitLine,
    TradeParty,
)
from epix.xml.namespaces import CITES_PERMIT, CITES_RAM

_P = f"{{{CITES_PERMIT}}}"
_R = f"{{{CITES_RAM}}}"
NSMAP = {"rsm": CITES_PERMIT, "ram": CITES_RAM}
EDIFACT_1001 = {"listID": "1001", "listAgencyID": "6"}


def _el(parent: etree._Element, name: str, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, _R + name, attributes)


def _text(parent: etree._Element, name: str, value: str | None, **attributes: str) -> None:
    if value is not None:
        _el(parent, name, **attributes).text = value


def _when(parent: etree._Element, name: str, value: datetime | None) -> None:
    if value is not None:
        _el(parent, name).text = value.isoformat()


def _quantity(parent: etree._Element, name: str, value: Decimal | None, unit: str | None) -> None:
    if value is None and unit is None:
        return
    element = _el(parent, name, **({"unitCode": unit} if unit else {}))
    if value is not None:
        element.text = format(value, "f")


def _any(*values: object) -> bool:
    return any(value not in (None, ()) for value in values)


def _period(parent: etree._Element, start: datetime | None, end: datetime | None) -> None:
    if _any(start, end):
        period = _el(parent, "EffectiveSpecifiedPeriod")
        _when(period, "StartDateTime", start)
        _when(period, "EndDateTime", end)


def _document(parent: etree._Element, name: str, ref: DocumentRef | None) -> None:
    if ref is None or ref == DocumentRef():
        return
    element = _el(parent, name)
    _when(element, "IssueDateTime", ref.issued_at)
    _text(element, "TypeCode", ref.type_code, **EDIFACT_1001)
    _text(element, "ID", ref.id)
    _text(element, "Name", ref.name)
    _period(element, ref.valid_from, ref.valid_until)


def _person(parent: etree._Element, name: str, person: str | None) -> None:
    if person is not None:
        _text(_el(parent, name), "Name", person)


def _party(parent: etree._Element, name: str, party: TradeParty) -> None:
    if party == TradeParty():
        return
    element = _el(parent, name)
    _text(element, "ID", party.id)
    _text(element, "Name", party.name)
    address = party.address
    if _any(*(getattr(address, field) for field in address.__slots__)):
        postal = _el(element, "PostalTradeAddress")
        _text(postal, "PostcodeCode", address.postcode)
        _text(postal, "PostOfficeBox", address.po_box)
        _text(postal, "StreetName", address.street)
        _text(postal, "CityName", address.city)
        _text(postal, "CountryID", address.country)
        _text(postal, "CountryName", address.country_name)
        _text(postal, "CountrySubDivisionName", address.subdivision)
    _person(element, "SpecifiedRepresentativePerson", party.representative)
    _person(element, "SpecifiedAuthoritativeSignatoryPerson", party.signatory)


def _endorsement(parent: etree._Element, endorsement: Endorsement | None) -> None:
    if endorsement is None:
        return
    event = _el(parent, "ExaminationTransportEvent")
    _when(event, "ActualOccurrenceDateTime", endorsement.occurred_at)
    _quantity(event, "UnitQuantity", endorsement.quantity, endorsement.unit)
    if _any(endorsement.port, endorsement.port_name):
        location = _el(event, "OccurrenceLogisticsLocation")
        _text(location, "ID", endorsement.port)
        _text(location, "Name", endorsement.port_name)
    if _any(endorsement.authority, endorsement.officer):
        certifier = _el(event, "CertifyingTradeParty")
        _text(certifier, "Name", endorsement.authority)
        _person(certifier, "SpecifiedAuthoritativeSignatoryPerson", endorsement.officer)


def _country(parent: etree._Element, name: str, code: str | None, label: str | None) -> None:
    if _any(code, label):
        element = _el(parent, name)
        _text(element, "ID", code)
        _text(element, "Name", label)


def _line(parent: etree._Element, line: PermitLine) -> None:
    item = _el(parent, "IncludedSupplyChainConsignmentItem")
    _text(item, "ID", line.line_id)
    if line.marks:
        marks = _el(item, "PhysicalLogisticsShippingMarks")
        for mark in line.marks:
            _text(marks, "Marking", mark)
    _country(item, "OriginTradeCountry", line.origin_country, line.origin_country_name)
    _country(item, "ExportTradeCountry", line.reexport_country, line.reexport_country_name)
    documents: Iterable[DocumentRef | None] = (
        line.origin_permit,
        line.last_reexport,
        line.import_permit,
        *line.other_documents,
    )
    for ref in documents:
        _document(item, "AssociatedReferencedDocument", ref)
    if _any(line.quantity, line.unit):
        _quantity(_el(item, "TransportLogisticsPackage"), "ItemQuantity", line.quantity, line.unit)
    trade = _el(item, "IncludedSupplyChainTradeLineItem")
    _text(trade, "TypeCode", line.appendix)
    _text(trade, "TypeExtensionCode", line.source)
    product = _el(trade, "SpecifiedTradeProduct")
    _text(product, "Description", line.description)
    _text(product, "TypeCode", line.term)
    _text(product, "CommonName", line.common_name)
    _text(product, "ScientificName", line.scientific_name)
    _endorsement(item, line.endorsement)
    if _any(
        line.procedure_categories,
        line.quota_used,
        line.annual_quota,
        line.acquisition_date,
        line.registered_operation,
    ):
        procedure = _el(item, "ApplicableCrossBorderRegulatoryProcedure")
        for category in line.procedure_categories:
            _text(procedure, "CategoryCode", category)
        _quantity(procedure, "UsedToDateQuotaQuantity", line.quota_used, line.quota_unit)
        _quantity(procedure, "AnnualQuotaQuantity", line.annual_quota, line.quota_unit)
        _when(procedure, "AcquisitionDateTime", line.acquisition_date)
        if line.registered_operation is not None:
            _text(_el(procedure, "PreviousReferencedDocument"), "ID", line.registered_operation)


def build_permit_element(permit: Permit) -> etree._Element:
    """The permit as an lxml element tree (for callers that embed or sign it in place)."""
    root = etree.Element(_P + "CITESEPermit", nsmap=NSMAP)
    context = etree.SubElement(root, _P + "SpecifiedExchangedDocumentContext")
    _text(
        _el(context, "BusinessProcessSpecifiedDocumentContextParameter"),
        "Value",
        "CITES Permitting",
    )

    header = etree.SubElement(root, _P + "HeaderExchangedDocument")
    _text(header, "ID", permit.number)
    _text(header, "Name", permit.document_name)
    _text(header, "TypeCode", permit.document_type)
    _when(header, "IssueDateTime", permit.issued_at)
    if permit.copy is not None:
        _text(header, "CopyIndicator", "true" if permit.copy else "false")
    _text(header, "Purpose", permit.purpose_text)
    _text(header, "PurposeCode", permit.purpose)
    for condition in permit.special_conditions:
        _text(header, "Information", condition)
    for ref in permit.references:
        _document(header, "ReferenceReferencedDocument", ref)
    _period(header, permit.valid_from, permit.valid_until)
    if _any(permit.place_of_issue_id, permit.place_of_issue):
        place = _el(header, "IssueLogisticsLocation")
        _text(place, "ID", permit.place_of_issue_id)
        _text(place, "Name", permit.place_of_issue)
    if _any(permit.signed_at, permit.security_stamp) or permit.issuing_authority != TradeParty():
        signatory = _el(header, "FirstSignatoryDocumentAuthentication")
        _when(signatory, "ActualDateTime", permit.signed_at)
        _text(signatory, "ID", permit.security_stamp)
        _party(signatory, "ProviderTradeParty", permit.issuing_authority)

    consignment = etree.SubElement(root, _P + "SpecifiedSupplyChainConsignment")
    _party(consignment, "ConsignorTradeParty", permit.exporter)
    _party(consignment, "ConsigneeTradeParty", permit.importer)
    _document(consignment, "TransportContractReferencedDocument", permit.transport_document)
    _endorsement(consignment, permit.endorsement)
    for line in permit.lines:
        _line(consignment, line)
    return root


def write_permit(permit: Permit) -> bytes:
    """The permit as UTF-8 ``CITESEPermit`` XML, ready to sign."""
    return etree.tostring(
        build_permit_element(permit), xml_declaration=True, encoding="UTF-8", pretty_print=True
    )
