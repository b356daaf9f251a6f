# cython: language_level=3
"""Box mapping: a ``CITESEPermit`` element to a ``Permit``, read from libxml2's tree in C.

Every permit the node receives, looks up or validates is mapped here, ~150 elements each. Read
through lxml's Python API, each element costs a proxy object, a new ``"{namespace}name"`` string
and a dict entry before any box is filled, and that cost alone was more than the schema
validation. This module walks the same tree lxml parsed, through lxml's public C API: a child is
found by comparing its namespace and local name in C, and only the values that go into the
``Permit`` (texts, decimals, dates, the dataclasses) become Python objects.

Semantics are those of lxml's API: an element's text is what ``element.text`` gives (its leading
text and CDATA nodes, XInclude markers skipped), stripped, ``None`` when blank; a box is read
from the first child of its name; comments, processing instructions and elements of other
namespaces are never a box. Fields are read in the order the schema-error precedence needs (the
first bad date or quantity in reading order is the one reported).
"""

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from libc.string cimport strcmp, strlen
from lxml.includes.etreepublic cimport _Document, _Element, elementFactory, import_lxml__etree
from lxml.includes.tree cimport (
    XML_CDATA_SECTION_NODE,
    XML_ELEMENT_NODE,
    XML_TEXT_NODE,
    XML_XINCLUDE_END,
    XML_XINCLUDE_START,
    xmlAttr,
    xmlNode,
)

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
from epix.xml.namespaces import CITES_PERMIT, CITES_RAM

import_lxml__etree()

cdef bytes _PERMIT_NS = CITES_PERMIT.encode("utf-8")
cdef bytes _RAM_NS = CITES_RAM.encode("utf-8")
cdef const char* P = _PERMIT_NS
cdef const char* R = _RAM_NS


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


def _builder(cls):
    """A positional constructor for the frozen, slotted dataclass ``cls``, ~4x faster.

    A frozen dataclass's ``__init__`` stores each field through ``object.__setattr__`` (~70 ns a
    field, 1.8 us for a ``PermitLine``). This twin has the same slots, so its ``__init__`` fills
    them with plain attribute stores, and its ``__post_init__`` then makes the instance a
    ``cls``: the same layout, frozen from then on, equal to and printed like ``cls(...)``.
    """

    def become(instance):
        instance.__class__ = cls

    return dataclasses.make_dataclass(
        f"_{cls.__name__}Builder",
        list(cls.__slots__),
        namespace={"__post_init__": become},
        eq=False,
        repr=False,
        match_args=False,
        slots=True,
    )


_Address = _builder(Address)
_DocumentRef = _builder(DocumentRef)
_Endorsement = _builder(Endorsement)
_Permit = _builder(Permit)
_PermitLine = _builder(PermitLine)
_TradeParty = _builder(TradeParty)
_NO_PARTY = TradeParty()
_LINE_DOCUMENTS = (DOC_ORIGIN_PERMIT, DOC_LAST_REEXPORT, DOC_IMPORT_PERMIT)


# --- the tree, in C ----------------------------------------------------------------------------

cdef inline bint _named(xmlNode* node, const char* namespace, const char* name) noexcept:
    return (
        node.type == XML_ELEMENT_NODE
        and node.ns is not NULL
        and node.ns.href is not NULL
        and strcmp(<const char*>node.name, name) == 0
        and strcmp(<const char*>node.ns.href, namespace) == 0
    )


cdef xmlNode* _first_from(xmlNode* node, const char* namespace, const char* name) noexcept:
    """``node`` or the first of its next siblings that is the element ``{namespace}name``."""
    while node is not NULL:
        if _named(node, namespace, name):
            return node
        node = node.next
    return NULL


cdef inline xmlNode* _child_in(xmlNode* parent, const char* namespace, const char* name) noexcept:
    """The first child element ``{namespace}name`` of ``parent`` (NULL for none or no parent)."""
    return NULL if parent is NULL else _first_from(parent.children, namespace, name)


cdef inline xmlNode* _child(xmlNode* parent, const char* name) noexcept:
    return _child_in(parent, R, name)


cdef inline xmlNode* _next(xmlNode* node, const char* name) noexcept:
    """The next sibling element named like ``node`` (in the RAM namespace), or NULL."""
    return _first_from(node.next, R, name)


cdef inline xmlNode* _text_node_or_skip(xmlNode* node) noexcept:
    """lxml's rule for an element's text: text and CDATA nodes, XInclude markers stepped over."""
    while node is not NULL:
        if node.type == XML_TEXT_NODE or node.type == XML_CDATA_SECTION_NODE:
            return node
        if node.type != XML_XINCLUDE_START and node.type != XML_XINCLUDE_END:
            return NULL
        node = node.next
    return NULL


cdef inline str _content(xmlNode* node):
    if node.content is NULL:
        return ""
    return (<const char*>node.content)[:strlen(<const char*>node.content)].decode("utf-8")


cdef object _text(xmlNode* element):
    """``element.text`` stripped, or None when the element is missing or its text blank."""
    cdef xmlNode* node
    cdef str value
    if element is NULL:
        return None
    node = _text_node_or_skip(element.children)
    if node is NULL:
        return None
    if _text_node_or_skip(node.next) is NULL:
        value = _content(node)
    else:
        parts = []
        while node is not NULL:
            parts.append(_content(node))
            node = _text_node_or_skip(node.next)
        value = "".join(parts)
    return value.strip() or None


cdef tuple _texts(xmlNode* parent, const char* name):
    """The non-blank texts of every ``name`` child of ``parent``, in document order."""
    values = []
    cdef xmlNode* node = _child(parent, name)
    while node is not NULL:
        value = _text(node)
        if value is not None:
            values.append(value)
        node = _next(node, name)
    return tuple(values)


cdef str _unit_code(xmlNode* element):
    """``element.get("unitCode")`` or "": the text of the attribute in no namespace.

    libxml2's own functions are not callable here (lxml links it privately), so the attribute
    list is read as ``xmlGetNoNsProp`` reads it; without a DTD (the parser refuses one) an
    attribute's children are its text nodes.
    """
    cdef xmlAttr* attribute = element.properties
    cdef xmlNode* node
    while attribute is not NULL:
        if attribute.ns is NULL and strcmp(<const char*>attribute.name, b"unitCode") == 0:
            parts = []
            node = attribute.children
            while node is not NULL:
                if node.type == XML_TEXT_NODE:
                    parts.append(_content(node))
                node = node.next
            return "".join(parts)
        attribute = attribute.next
    return ""


cdef str _name(xmlNode* node):
    return (<const char*>node.name)[:strlen(<const char*>node.name)].decode("utf-8")


cdef bint _same_tag(xmlNode* node, xmlNode* other) noexcept:
    if node.type != XML_ELEMENT_NODE or strcmp(<const char*>node.name, <const char*>other.name):
        return False
    if node.ns is NULL or other.ns is NULL:
        return node.ns is other.ns
    return strcmp(<const char*>node.ns.href, <const char*>other.ns.href) == 0


cdef str _path_of(xmlNode* element):
    """A readable XPath of local names with positions, rooted at CITESEPermit."""
    cdef xmlNode* node = element
    cdef xmlNode* sibling
    cdef int position, count
    steps = []
    while node is not NULL:
        name = _name(node)
        if node.parent is NULL or node.parent.type != XML_ELEMENT_NODE or name == "CITESEPermit":
            steps.append(name)
            break
        position = count = 0
        sibling = node.parent.children
        while sibling is not NULL:
            if _same_tag(sibling, node):
                count += 1
                if sibling is node:
                    position = count
            sibling = sibling.next
        steps.append(f"{name}[{position}]" if count > 1 else name)
        node = node.parent
    return "/" + "/".join(reversed(steps))


# --- the boxes ---------------------------------------------------------------------------------

cdef class _Reading:
    """One permit being mapped: its document, for the proxy of an element with a bad value."""

    cdef _Document document

    cdef object _bad_value(self, xmlNode* node, what, value):
        return EpixError.of(
            "EPIX-SCHEMA-001",
            f"{_name(node)}: '{value}' is not a valid {what}.",
            location=_path_of(node),
            line=source_line(elementFactory(self.document, node)),
        )

    cdef object _datetime(self, xmlNode* node, bint end_of_day=False):
        value = _text(node)
        if value is None:
            return None
        try:
            return parse_datetime(value, end_of_day=end_of_day)
        except (ValueError, OverflowError):
            raise self._bad_value(node, "date and time", value) from None

    cdef tuple _quantity(self, xmlNode* node):
        """The element's decimal value and its ``unitCode`` ('?' means none), each or None."""
        if node is NULL:
            return None, None
        unit = _unit_code(node).strip()
        unit_code = unit if unit and unit != "?" else None
        value = _text(node)
        if value is None:
            return None, unit_code
        try:
            quantity = Decimal(value)
        except InvalidOperation:
            raise self._bad_value(node, "decimal quantity", value) from None
        if not quantity.is_finite():
            raise self._bad_value(node, "decimal quantity", value)
        return quantity, unit_code

    cdef object _document(self, xmlNode* node):
        """A referenced document, or None when every one of its fields is empty."""
        cdef xmlNode* period
        if node is NULL:
            return None
        issued_at = self._datetime(_child(node, b"IssueDateTime"))
        period = _child(node, b"EffectiveSpecifiedPeriod")
        valid_from = self._datetime(_child(period, b"StartDateTime"))
        valid_until = self._datetime(_child(period, b"EndDateTime"), True)
        number = _text(_child(node, b"ID"))
        type_code = _text(_child(node, b"TypeCode"))
        name = _text(_child(node, b"Name"))
        if number or type_code or issued_at or name or valid_from or valid_until:
            return _DocumentRef(number, type_code, issued_at, name, valid_from, valid_until)
        return None

    cdef object _party(self, xmlNode* node):
        cdef xmlNode* address
        if node is NULL:
            return _NO_PARTY
        address = _child(node, b"PostalTradeAddress")
        return _TradeParty(
            _text(_child(node, b"Name")),
            _Address(
                _text(_child(address, b"StreetName")),
                _text(_child(address, b"CityName")),
                _text(_child(address, b"PostcodeCode")),
                _text(_child(address, b"PostOfficeBox")),
                _text(_child(address, b"CountrySubDivisionName")),
                _text(_child(address, b"CountryID")),
                _text(_child(address, b"CountryName")),
            ),
            _text(_child(node, b"ID")),
            _text(_child(_child(node, b"SpecifiedRepresentativePerson"), b"Name")),
            _text(_child(_child(node, b"SpecifiedAuthoritativeSignatoryPerson"), b"Name")),
        )

    cdef object _endorsement(self, xmlNode* node):
        """Box 14, or None when every one of its fields is empty."""
        cdef xmlNode* location
        cdef xmlNode* certifier
        if node is NULL:
            return None
        quantity, unit = self._quantity(_child(node, b"UnitQuantity"))
        occurred_at = self._datetime(_child(node, b"ActualOccurrenceDateTime"))
        location = _child(node, b"OccurrenceLogisticsLocation")
        certifier = _child(node, b"CertifyingTradeParty")
        port = _text(_child(location, b"ID"))
        port_name = _text(_child(location, b"Name"))
        authority = _text(_child(certifier, b"Name"))
        officer = _text(_child(_child(certifier, b"SpecifiedAuthoritativeSignatoryPerson"), b"Name"))
        if occurred_at or quantity is not None or unit or port or port_name or authority or officer:
            return _Endorsement(occurred_at, quantity, unit, port, port_name, authority, officer)
        return None

    cdef object _line(self, xmlNode* item, int index):
        cdef xmlNode* trade = _child(item, b"IncludedSupplyChainTradeLineItem")
        cdef xmlNode* product = _child(trade, b"SpecifiedTradeProduct")
        cdef xmlNode* procedure = _child(item, b"ApplicableCrossBorderRegulatoryProcedure")
        cdef xmlNode* node
        cdef xmlNode* origin
        cdef xmlNode* last
        quantity, unit = self._quantity(
            _child(_child(item, b"TransportLogisticsPackage"), b"ItemQuantity")
        )
        used, quota_unit = self._quantity(_child(procedure, b"UsedToDateQuotaQuantity"))
        annual, annual_unit = self._quantity(_child(procedure, b"AnnualQuotaQuantity"))

        by_kind = {}
        others = []
        node = _child(item, b"AssociatedReferencedDocument")
        while node is not NULL:
            ref = self._document(node)
            if ref is not None:
                kind = ref.type_code
                if kind in _LINE_DOCUMENTS and kind not in by_kind:
                    by_kind[kind] = ref
                else:
                    others.append(ref)
            node = _next(node, b"AssociatedReferencedDocument")

        marks = []
        node = _child(item, b"PhysicalLogisticsShippingMarks")
        while node is not NULL:
            marks.extend(_texts(node, b"Marking"))
            node = _next(node, b"PhysicalLogisticsShippingMarks")

        origin = _child(item, b"OriginTradeCountry")
        last = _child(item, b"ExportTradeCountry")
        return _PermitLine(
            _text(_child(item, b"ID")) or str(index),
            _text(_child(product, b"ScientificName")),
            _text(_child(product, b"CommonName")),
            _text(_child(product, b"Description")),
            _text(_child(product, b"TypeCode")),
            tuple(marks),
            _text(_child(trade, b"TypeCode")),
            _text(_child(trade, b"TypeExtensionCode")),
            quantity,
            unit,
            used,
            annual,
            quota_unit or annual_unit,
            _text(_child(origin, b"ID")),
            _text(_child(origin, b"Name")),
            by_kind.get(DOC_ORIGIN_PERMIT),
            _text(_child(last, b"ID")),
            _text(_child(last, b"Name")),
            by_kind.get(DOC_LAST_REEXPORT),
            by_kind.get(DOC_IMPORT_PERMIT),
            tuple(others),
            _text(_child(_child(procedure, b"PreviousReferencedDocument"), b"ID")),
            self._datetime(_child(procedure, b"AcquisitionDateTime")),
            _texts(procedure, b"CategoryCode"),
            self._endorsement(_child(item, b"ExaminationTransportEvent")),
        )

    cdef object _permit(self, xmlNode* root):
        cdef xmlNode* header = _child_in(root, P, b"HeaderExchangedDocument")
        cdef xmlNode* consignment = _child_in(root, P, b"SpecifiedSupplyChainConsignment")
        cdef xmlNode* node
        cdef xmlNode* period
        cdef xmlNode* signatory
        cdef xmlNode* place
        cdef int index
        references = []
        node = _child(header, b"ReferenceReferencedDocument")
        while node is not NULL:
            ref = self._document(node)
            if ref is not None:
                references.append(ref)
            node = _next(node, b"ReferenceReferencedDocument")
        issued_at = self._datetime(_child(header, b"IssueDateTime"))
        period = _child(header, b"EffectiveSpecifiedPeriod")
        valid_from = self._datetime(_child(period, b"StartDateTime"))
        valid_until = self._datetime(_child(period, b"EndDateTime"), True)
        signatory = _child(header, b"FirstSignatoryDocumentAuthentication")
        signed_at = self._datetime(_child(signatory, b"ActualDateTime"))
        transport_document = self._document(
            _child(consignment, b"TransportContractReferencedDocument")
        )
        endorsement = self._endorsement(_child(consignment, b"ExaminationTransportEvent"))
        lines = []
        index = 0
        node = _child(consignment, b"IncludedSupplyChainConsignmentItem")
        while node is not NULL:
            index += 1
            lines.append(self._line(node, index))
            node = _next(node, b"IncludedSupplyChainConsignmentItem")
        place = _child(header, b"IssueLogisticsLocation")
        copy_text = _text(_child(header, b"CopyIndicator"))
        return _Permit(
            _text(_child(header, b"TypeCode")),
            _text(_child(header, b"ID")),
            tuple(lines),
            _text(_child(header, b"Name")),
            valid_from,
            valid_until,
            self._party(_child(consignment, b"ConsigneeTradeParty")),
            self._party(_child(consignment, b"ConsignorTradeParty")),
            _texts(header, b"Information"),
            _text(_child(header, b"PurposeCode")),
            _text(_child(header, b"Purpose")),
            _text(_child(signatory, b"ID")),
            self._party(_child(signatory, b"ProviderTradeParty")),
            issued_at,
            _text(_child(place, b"Name")),
            _text(_child(place, b"ID")),
            signed_at,
            None if copy_text is None else copy_text in ("true", "1"),
            tuple(references),
            endorsement,
            transport_document,
        )


def read_permit(_Element element not None) -> Permit:
    """Map a ``CITESEPermit`` element (as returned by ``extract_permit_element``) to a Permit.

    Raises ``EpixError`` (EPIX-SCHEMA-001) only for values the schema would also refuse.
    """
    cdef _Reading reading = _Reading()
    reading.document = element._doc
    return reading._permit(element._c_node)
