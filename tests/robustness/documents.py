"""Seed documents for the robustness tests: a signed permit, a signed endorsement, an envelope,
the real Toolkit sample, and a trust store holding their signers' certificates."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache

from epix.endorsements.document import EndorsedLine, EndorsementDocument, Side, write_endorsement
from epix.exchange.envelope import Envelope, build_envelope
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.signatures import StaticTrustStore, TrustedCertificate
from epix.signatures.sign import sign_document
from tests.conftest import FIXTURES
from tests.pki import make_identity

SIGNED_AT = datetime(2026, 1, 2, 12, tzinfo=UTC)


@cache
def _identities() -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    ma = make_identity("XA Management Authority", party="XA")
    customs = make_identity("XB Customs", party="XB")
    return (ma.key_pem, ma.cert_pem), (customs.key_pem, customs.cert_pem)


def xa_certificate() -> bytes:
    """The XA Management Authority certificate the seeds are signed with (register it to make
    a node trust them)."""
    return _identities()[0][1]


def sign_as_xa(document: bytes) -> bytes:
    key_pem, cert_pem = _identities()[0]
    return sign_document(document, key_pem, cert_pem)


@cache
def unsigned_permit() -> bytes:
    return write_permit(demo_permit(number="XA-FUZZ-0002"))


@cache
def signed_permit() -> bytes:
    return sign_as_xa(write_permit(demo_permit(number="XA-FUZZ-0001")))


@cache
def endorsement_document() -> EndorsementDocument:
    return EndorsementDocument(
        endorsement_id="end-0001",
        side=Side.IMPORT,
        issuing_party="XA",
        permit_number="XA-FUZZ-0001",
        permit_sha256="0" * 64,
        endorsing_party="XB",
        authority="XB Customs",
        officer="Officer 7",
        port="NLRTM",
        endorsed_on=date(2026, 1, 2),
        transport_document="AWB 123-45678901",
        declaration_reference="MRN 26NL0000000000001",
        issued_at=SIGNED_AT,
        lines=(EndorsedLine("1", Decimal("7"), "PCS"), EndorsedLine("2", Decimal("1.25"), "KGM")),
    )


@cache
def signed_endorsement() -> bytes:
    key_pem, cert_pem = _identities()[1]
    return sign_document(write_endorsement(endorsement_document()), key_pem, cert_pem)


@cache
def envelope() -> bytes:
    routing = Envelope("msg-1", "XA", "XB", "permit", "conv-1", SIGNED_AT, "token-0123456789")
    return build_envelope(routing, signed_permit())


@cache
def trust() -> StaticTrustStore:
    (_, ma_cert), (_, customs_cert) = _identities()
    return StaticTrustStore(
        [
            TrustedCertificate.from_certificate(ma_cert, party="XA", role="management_authority"),
            TrustedCertificate.from_certificate(customs_cert, party="XB", role="customs"),
        ]
    )


@cache
def sample() -> bytes:
    return (FIXTURES / "v2_get_non_final_cites_certificate.xml").read_bytes()
