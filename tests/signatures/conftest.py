"""Fixtures for the signature tests: fresh test identities, a permit-shaped document and a
trust store that registers them the way the registry would."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from epix.signatures import StaticTrustStore, TrustedCertificate, sign_document
from tests.pki import Identity, make_identity

PARTY = "XA"
ROLE = "management_authority"
CITES = "urn:un:unece:uncefact:data:standard:CITESEPermit:2"
RAM = "urn:un:unece:uncefact:data:draft:ReusableAggregateBusinessInformationEntity:1"


def permit_document(lines: int = 12, quantity: int = 5, root_id: str | None = None) -> bytes:
    """A CITES e-permit shaped document of roughly 1 KB per ten lines (12 lines ≈ 4 KB)."""
    items = "".join(
        f"""
    <ram:IncludedSupplyChainConsignmentItem>
      <ram:SequenceNumeric>{n}</ram:SequenceNumeric>
      <ram:IncludedSupplyChainTradeLineItem>
        <ram:TypeCode>II</ram:TypeCode><ram:TypeExtensionCode>W</ram:TypeExtensionCode>
        <ram:SpecifiedTradeProduct><ram:ScientificName>Python regius</ram:ScientificName>
          <ram:CommonName languageID="en">Royal python</ram:CommonName></ram:SpecifiedTradeProduct>
      </ram:IncludedSupplyChainTradeLineItem>
      <ram:TransportLogisticsPackage><ram:ItemQuantity unitCode="NAR">{quantity}</ram:ItemQuantity>
      </ram:TransportLogisticsPackage>
    </ram:IncludedSupplyChainConsignmentItem>"""
        for n in range(1, lines + 1)
    )
    identifier = f' Id="{root_id}"' if root_id else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<rsm:CITESEPermit xmlns:rsm="{CITES}" xmlns:ram="{RAM}"{identifier}>
  <rsm:HeaderExchangedDocument>
    <ram:ID>XA-2026-000123</ram:ID><ram:TypeCode>E</ram:TypeCode>
    <ram:IssueDateTime>2026-11-01T09:00:00Z</ram:IssueDateTime>
  </rsm:HeaderExchangedDocument>
  <rsm:SpecifiedSupplyChainConsignment>{items}
  </rsm:SpecifiedSupplyChainConsignment>
</rsm:CITESEPermit>
""".encode()


def register(
    identity: Identity,
    party: str = PARTY,
    role: str = ROLE,
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    revoked_at: datetime | None = None,
    revocation_reason: str | None = None,
) -> TrustedCertificate:
    """Register a test certificate the way the registry would hand it to the verifier."""
    return TrustedCertificate.from_certificate(
        identity.certificate,
        party=party,
        role=role,
        authority_id=f"{party}-{role}",
        authority_name=f"{party} {role} (TEST)",
        not_before=not_before,
        not_after=not_after,
        revoked_at=revoked_at,
        revocation_reason=revocation_reason,
    )


@pytest.fixture(scope="session")
def rsa_identity() -> Identity:
    return make_identity(kind="rsa", size=2048)


@pytest.fixture(scope="session")
def ec_identity() -> Identity:
    return make_identity(kind="ec", size=256)


@pytest.fixture(scope="session")
def other_party_identity() -> Identity:
    return make_identity("XB Management Authority (TEST)", party="XB", kind="ec", size=256)


@pytest.fixture
def trust(rsa_identity: Identity, ec_identity: Identity) -> StaticTrustStore:
    return StaticTrustStore([register(rsa_identity), register(ec_identity)])


@pytest.fixture(scope="session")
def signed_permit(rsa_identity: Identity) -> bytes:
    return sign_document(permit_document(), rsa_identity.key_pem, rsa_identity.cert_pem)


@pytest.fixture
def days_ago() -> Callable[[float], datetime]:
    now = datetime.now(UTC)
    return lambda days: now - timedelta(days=days)
