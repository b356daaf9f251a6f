"""Permits stored the way the exchange stores them, customs principals and a test signer."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest

from epix.auth.principal import Principal, Role
from epix.db import Database, utcnow
from epix.endorsements.document import EndorsedLine, EndorsementDocument, Side
from epix.endorsements.service import BorderDetails, LineInput, Signer
from epix.exchange.models import Message, Permit, PermitLine
from epix.signatures import sign_document
from tests.pki import Identity, make_identity

_numbers = itertools.count(1)


@dataclass(frozen=True)
class StoredPermit:
    id: int
    issuing_party: str
    number: str
    sha256: str


MakePermit = Callable[..., StoredPermit]


def store_permit(
    database: Database,
    *,
    issuing_party: str = "XA",
    recipient_party: str = "XB",
    document_type: str = "E",
    status: str = "issued",
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    lines: tuple[tuple[str, str, str | None], ...] = (("1", "10", "PCS"), ("2", "2.5", "KGM")),
    number: str | None = None,
) -> StoredPermit:
    """A permit row with its lines, as if XA had submitted it to XB."""
    number = number or f"{issuing_party}/E/{next(_numbers):05d}"
    body = f"<signed-permit number='{number}'/>".encode()
    sha256 = hashlib.sha256(body).hexdigest()
    now = utcnow()
    with database.unit_of_work() as session:
        message = Message(
            sender_party=issuing_party,
            message_id=f"msg-{number.replace('/', '-')}",
            recipient_party=recipient_party,
            document_type="permit",
            sha256=sha256,
            body=body,
            received_at=now,
            status="accepted",
            delivery_state="pending",
            submitted_by="ma-officer",
        )
        session.add(message)
        session.flush()
        permit = Permit(
            issuing_party=issuing_party,
            number=number,
            document_type=document_type,
            recipient_party=recipient_party,
            message_pk=message.id,
            signed_sha256=sha256,
            status=status,
            valid_from=valid_from if valid_from is not None else now - timedelta(days=1),
            valid_until=valid_until if valid_until is not None else now + timedelta(days=90),
            compliance_codes="[]",
            created_at=now,
            lines=[
                PermitLine(line_id=line_id, permitted_quantity=Decimal(quantity), unit=unit)
                for line_id, quantity, unit in lines
            ],
        )
        session.add(permit)
        session.flush()
        return StoredPermit(permit.id, issuing_party, number, sha256)


@pytest.fixture
def db(sqlite_database: Database) -> Database:
    """Most checks are backend-independent and run on SQLite; locking tests use both."""
    return sqlite_database


@pytest.fixture
def make_permit(db: Database) -> MakePermit:
    def make(**kwargs: object) -> StoredPermit:
        return store_permit(db, **kwargs)  # type: ignore[arg-type]

    return make


def customs(party: str = "XB", username: str | None = None) -> Principal:
    return Principal(
        user_id=1,
        username=username or f"customs-{party.lower()}",
        party=party,
        authority=f"{party} Customs",
        roles=frozenset({Role.CUSTOMS}),
    )


def border(port: object = "XBABC", on: date | None = None) -> BorderDetails:
    return BorderDetails(
        port=port,
        endorsed_on=on or utcnow().date(),
        officer="Officer Jane Roe",
        transport_document="AWB 176-12345675",
    )


def lines(*items: tuple[str, object, str]) -> list[LineInput]:
    return [LineInput(line_id, quantity, unit) for line_id, quantity, unit in items]


@pytest.fixture(scope="session")
def customs_identity() -> Identity:
    return make_identity("XB Customs (TEST)", party="XB")


@pytest.fixture(scope="session")
def signer(customs_identity: Identity) -> Signer:
    def sign(xml: bytes) -> bytes:
        return sign_document(xml, customs_identity.key_pem, customs_identity.cert_pem)

    return sign


def document_for(permit: StoredPermit, **changes: object) -> EndorsementDocument:
    """A schema-valid import endorsement of XB's customs for ``permit``, with ``changes``."""
    base = EndorsementDocument(
        endorsement_id="XB-END-0001",
        side=Side.IMPORT,
        issuing_party=permit.issuing_party,
        permit_number=permit.number,
        permit_sha256=permit.sha256,
        endorsing_party="XB",
        authority="XB Customs",
        officer="Officer Jane Roe",
        port="XBABC",
        endorsed_on=utcnow().date(),
        transport_document="BL-778899",
        declaration_reference=None,
        issued_at=utcnow(),
        lines=(EndorsedLine("1", Decimal(4), "PCS"),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]
