"""Registry test helpers: a Secretariat principal and identity, and a small populated registry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db import Database
from epix.registry import service
from tests.pki import Identity, make_identity

SECRETARIAT = Principal(
    user_id=1,
    username="secretariat-officer",
    party=SECRETARIAT_PARTY,
    authority="CITES Secretariat",
    roles=frozenset({Role.SECRETARIAT}),
)
MA_USER = Principal(
    user_id=2,
    username="xa-officer",
    party="XA",
    authority="XA Management Authority",
    roles=frozenset({Role.MANAGEMENT_AUTHORITY}),
)

# The default EPIX_REGISTRY_VALIDITY_HOURS: how long a published registry document is valid.
WEEK = timedelta(days=7)

PERMIT_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Permit xmlns="urn:example:permit"><Number>XA-2026-0001</Number>'
    b"<Quantity>10</Quantity></Permit>"
)


def ec_identity(name: str, party: str = "XA", **kwargs: datetime) -> Identity:
    """An ECDSA P-256 test identity (fast to generate)."""
    return make_identity(name, party=party, kind="ec", size=256, **kwargs)


@dataclass
class Populated:
    """XA with a management authority and a customs office, XB with a management authority."""

    xa_ma: int
    xa_customs: int
    xb_ma: int
    xa_ma_identity: Identity
    xb_ma_identity: Identity


def populate(session: Session) -> Populated:
    service.add_party(session, code="XA", name="Exampleland", actor=SECRETARIAT)
    service.add_party(
        session, code="xb", name="Otherland", endpoint="https://xb.example/", actor=SECRETARIAT
    )
    xa_ma = service.add_authority(
        session, party="XA", kind="management-authority", name="XA CITES MA", actor=SECRETARIAT
    )
    xa_customs = service.add_authority(
        session, party="XA", kind="customs", name="XA Customs", actor=SECRETARIAT
    )
    xb_ma = service.add_authority(
        session, party="XB", kind="management_authority", name="XB CITES MA", actor=SECRETARIAT
    )
    xa_identity = ec_identity("XA MA (TEST)")
    xb_identity = ec_identity("XB MA (TEST)", party="XB")
    service.add_certificate(
        session, authority_id=xa_ma.id, pem=xa_identity.cert_pem, actor=SECRETARIAT
    )
    service.add_certificate(
        session, authority_id=xb_ma.id, pem=xb_identity.cert_pem, actor=SECRETARIAT
    )
    return Populated(xa_ma.id, xa_customs.id, xb_ma.id, xa_identity, xb_identity)


@pytest.fixture(scope="session")
def secretariat_identity() -> Identity:
    return ec_identity("CITES Secretariat registry signer (TEST)", party="CH")


@pytest.fixture
def populated(database: Database) -> Populated:
    with database.unit_of_work() as session:
        return populate(session)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def now() -> datetime:
    return datetime.now(UTC)
