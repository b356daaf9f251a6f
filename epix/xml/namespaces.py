"""XML namespaces EPIX reads and writes, in one place."""

from __future__ import annotations

CITES_PERMIT = "urn:un:unece:uncefact:data:standard:CITESEPermit:2"
CITES_RAM = "urn:un:unece:uncefact:data:draft:ReusableAggregateBusinessInformationEntity:1"
DSIG = "http://www.w3.org/2000/09/xmldsig#"

# EPIX's own documents: one namespace per document type, each with its XSD in schemas/epix/.
EPIX_ENVELOPE = "urn:epix:envelope:1"
EPIX_RECEIPT = "urn:epix:receipt:1"
EPIX_STATUS = "urn:epix:status:1"
EPIX_ENDORSEMENT = "urn:epix:endorsement:1"
EPIX_REGISTRY = "urn:epix:registry:1"
EPIX_CHECKPOINT = "urn:epix:audit-checkpoint:1"
