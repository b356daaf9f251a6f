"""Queries over the registry tables; no rules, no audit (those live in ``service``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, case, delete, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, selectinload

from epix.db.base import table_of
from epix.db.prepared import Prepared
from epix.registry.models import (
    RegistryAnchor,
    RegistryAnchorLink,
    RegistryAuthority,
    RegistryCertificate,
    RegistryDocument,
    RegistryFollowerFetch,
    RegistryParty,
    RegistrySourceCheck,
    RegistryState,
)
from epix.registry.snapshot import AuthorityEntry, CertificateEntry, PartyEntry, RegistrySnapshot

STATE_ID = 1

# Core statements the submit path runs for every message, compiled once (epix.db.prepared).
_PARTIES = table_of(RegistryParty)
_CERTIFICATES, _AUTHORITIES = table_of(RegistryCertificate), table_of(RegistryAuthority)
_PARTY_CODE = Prepared(select(_PARTIES.c.code).where(_PARTIES.c.code == bindparam("code")))
_PARTY_CERTIFICATES = Prepared(
    select(_CERTIFICATES, _AUTHORITIES.c.name.label("authority_name"), _AUTHORITIES.c.party_code)
    .join(_AUTHORITIES, _CERTIFICATES.c.authority_id == _AUTHORITIES.c.id)
    .where(_AUTHORITIES.c.party_code == bindparam("party"))
    .order_by(_CERTIFICATES.c.id)
)


def lock_state(session: Session) -> RegistryState:
    """The version row, locked for update: every change takes it first, so changes serialise."""
    state = session.scalars(
        select(RegistryState).where(RegistryState.id == STATE_ID).with_for_update()
    ).one()
    return state


def current_version(session: Session) -> int:
    version = session.scalar(select(RegistryState.version).where(RegistryState.id == STATE_ID))
    return int(version or 0)


def party_exists(session: Session, code: str) -> bool:
    """Whether ``code`` is a registered Party (the submit path asks it)."""
    return _PARTY_CODE.scalar(session, {"code": code.upper()}) is not None


def get_party(session: Session, code: str) -> RegistryParty | None:
    return session.get(RegistryParty, code.upper())


def get_authority(session: Session, authority_id: int) -> RegistryAuthority | None:
    return session.get(RegistryAuthority, authority_id)


def find_authority(session: Session, party: str, kind: str, name: str) -> RegistryAuthority | None:
    return session.scalars(
        select(RegistryAuthority).where(
            RegistryAuthority.party_code == party.upper(),
            RegistryAuthority.kind == kind,
            RegistryAuthority.name == name,
        )
    ).one_or_none()


def get_certificate(session: Session, fingerprint: str) -> RegistryCertificate | None:
    return session.scalars(
        select(RegistryCertificate)
        .where(RegistryCertificate.fingerprint == fingerprint.lower())
        .options(selectinload(RegistryCertificate.authority))
    ).one_or_none()


def all_certificates(session: Session) -> Sequence[RegistryCertificate]:
    """Every registered certificate with its authority (a registry change compares keys)."""
    return session.scalars(
        select(RegistryCertificate)
        .order_by(RegistryCertificate.id)
        .options(selectinload(RegistryCertificate.authority))
    ).all()


def list_parties(session: Session) -> Sequence[RegistryParty]:
    """Every Party with its authorities and their certificates, loaded in three queries."""
    return session.scalars(
        select(RegistryParty)
        .order_by(RegistryParty.code)
        .options(
            selectinload(RegistryParty.authorities).selectinload(RegistryAuthority.certificates)
        )
    ).all()


@dataclass(frozen=True, slots=True)
class PartyCertificate:
    """A registered certificate with the authority it belongs to."""

    entry: CertificateEntry
    authority_id: int
    authority_name: str
    party: str


def certificates_of_party(session: Session, party: str) -> list[PartyCertificate]:
    """Every certificate registered for ``party``'s authorities (every submission's signature
    check reads it)."""
    rows = _PARTY_CERTIFICATES.all(session, {"party": party.upper()})
    return [
        PartyCertificate(entry_of(row), row.authority_id, row.authority_name, row.party_code)
        for row in rows
    ]


def unrevoked_certificates(
    session: Session,
) -> Sequence[tuple[RegistryCertificate, RegistryAuthority]]:
    rows = session.execute(
        select(RegistryCertificate, RegistryAuthority)
        .join(RegistryAuthority, RegistryCertificate.authority_id == RegistryAuthority.id)
        .where(RegistryCertificate.revoked_at.is_(None))
        .order_by(RegistryCertificate.not_after, RegistryCertificate.id)
    ).all()
    return [(row[0], row[1]) for row in rows]


def entry_of(certificate: RegistryCertificate | Row[Any]) -> CertificateEntry:
    """The snapshot entry of a certificate (an ORM object or a Core row of the same columns)."""
    return CertificateEntry(
        fingerprint=certificate.fingerprint,
        pem=certificate.pem.encode("ascii"),
        subject=certificate.subject,
        not_before=certificate.not_before,
        not_after=certificate.not_after,
        roles=tuple(certificate.roles.split()),
        added_by=certificate.added_by,
        added_at=certificate.added_at,
        revoked_at=certificate.revoked_at,
        revocation_reason=certificate.revocation_reason,
        revoked_by=certificate.revoked_by,
    )


def load_snapshot(session: Session, issued_at: datetime) -> RegistrySnapshot:
    """The whole registry as it is in the tables now, stamped with ``issued_at``."""
    parties = tuple(
        PartyEntry(
            code=party.code,
            name=party.name,
            endpoint_url=party.endpoint_url,
            added_at=party.added_at,
            authorities=tuple(
                AuthorityEntry(
                    id=authority.id,
                    kind=authority.kind,
                    name=authority.name,
                    contact=authority.contact,
                    added_at=authority.added_at,
                    certificates=tuple(entry_of(c) for c in authority.certificates),
                )
                for authority in party.authorities
            ),
        )
        for party in list_parties(session)
    )
    return RegistrySnapshot(version=current_version(session), issued_at=issued_at, parties=parties)


def replace_all(session: Session, snapshot: RegistrySnapshot) -> None:
    """Make the tables say exactly what ``snapshot`` says (a follower importing a document)."""
    session.execute(delete(RegistryCertificate))
    session.execute(delete(RegistryAuthority))
    session.execute(delete(RegistryParty))
    session.flush()
    for party in snapshot.parties:
        session.add(
            RegistryParty(
                code=party.code,
                name=party.name,
                endpoint_url=party.endpoint_url,
                added_at=party.added_at,
            )
        )
    session.flush()
    for party in snapshot.parties:
        for authority in party.authorities:
            session.add(
                RegistryAuthority(
                    id=authority.id,
                    party_code=party.code,
                    kind=authority.kind,
                    name=authority.name,
                    contact=authority.contact,
                    added_at=authority.added_at,
                )
            )
    session.flush()
    for _party, authority, entry in snapshot.certificates():
        session.add(
            RegistryCertificate(
                authority_id=authority.id,
                fingerprint=entry.fingerprint,
                pem=entry.pem.decode("ascii"),
                subject=entry.subject,
                not_before=entry.not_before,
                not_after=entry.not_after,
                roles=" ".join(entry.roles),
                added_by=entry.added_by,
                added_at=entry.added_at,
                revoked_at=entry.revoked_at,
                revocation_reason=entry.revocation_reason,
                revoked_by=entry.revoked_by,
            )
        )
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        # Ids came from the document; move the sequence past them for later local inserts.
        session.execute(
            text(
                "SELECT setval(pg_get_serial_sequence('registry_authorities', 'id'), "
                "COALESCE((SELECT MAX(id) FROM registry_authorities), 0) + 1, false)"
            )
        )
    session.expire_all()


def newest_document_issued_at(session: Session) -> datetime | None:
    """When the Secretariat issued the newest document held, without loading it (monitoring)."""
    return session.scalar(
        select(RegistryDocument.issued_at).order_by(RegistryDocument.version.desc()).limit(1)
    )


def newest_document_dates(session: Session) -> tuple[datetime, datetime | None] | None:
    """When the newest document held was issued and its signed expiry (None for one signed
    before expiry existed), without loading it; None when no document is held."""
    row = session.execute(
        select(RegistryDocument.issued_at, RegistryDocument.expires_at)
        .order_by(RegistryDocument.version.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


SOURCE_CHECK_ID = 1


def record_source_check(
    session: Session, *, source_url: str, failure_code: str | None, now: datetime
) -> None:
    """Remember a follower's check of its source; a check that failed keeps the time the
    source last confirmed the copy held (of the same source)."""
    check = session.get(RegistrySourceCheck, SOURCE_CHECK_ID)
    if check is None:
        check = RegistrySourceCheck(id=SOURCE_CHECK_ID, source_url=source_url)
        session.add(check)
    elif check.source_url != source_url:
        check.source_url, check.confirmed_at = source_url, None
    check.checked_at, check.failure_code = now, failure_code
    if failure_code is None:
        check.confirmed_at = now
    session.flush()


def source_check(session: Session) -> RegistrySourceCheck | None:
    return session.get(RegistrySourceCheck, SOURCE_CHECK_ID)


def count_expiring(session: Session, *, now: datetime, until: datetime) -> tuple[int, int]:
    """Unrevoked certificates ending in ``(now, until]``: all, and those whose authority holds
    no unrevoked certificate ending later (no successor in place)."""
    later = aliased(RegistryCertificate)
    successor = (
        select(later.id)
        .where(
            later.authority_id == RegistryCertificate.authority_id,
            later.revoked_at.is_(None),
            later.not_after > RegistryCertificate.not_after,
        )
        .exists()
    )
    row = session.execute(
        select(func.count(), func.sum(case((successor, 0), else_=1))).where(
            RegistryCertificate.revoked_at.is_(None),
            RegistryCertificate.not_after > now,
            RegistryCertificate.not_after <= until,
        )
    ).one()
    return int(row[0]), int(row[1] or 0)


def latest_document(session: Session) -> RegistryDocument | None:
    return session.scalars(
        select(RegistryDocument).order_by(RegistryDocument.version.desc()).limit(1)
    ).one_or_none()


def anchor_links(session: Session) -> Sequence[RegistryAnchorLink]:
    """The Secretariat's announcements of its successive signing certificates, oldest first."""
    return session.scalars(select(RegistryAnchorLink).order_by(RegistryAnchorLink.id)).all()


def anchors(session: Session) -> Sequence[RegistryAnchor]:
    """The Secretariat certificates a follower learnt of (trusted, next, retired)."""
    return session.scalars(select(RegistryAnchor)).all()


def newest_announced_anchor(session: Session) -> str | None:
    """The fingerprint of the successor named by the Secretariat's newest anchor announcement
    (every document it publishes carries it), None when it never announced one."""
    return session.scalar(
        select(RegistryAnchorLink.next_fingerprint).order_by(RegistryAnchorLink.id.desc()).limit(1)
    )


def record_follower_fetch(
    session: Session,
    *,
    party: str,
    status: int,
    version: int,
    sha256: str,
    anchor_fingerprint: str | None,
    now: datetime,
) -> None:
    """Remember that ``party``'s follower fetched ``version`` (one row per Party, replaced at
    each fetch). One upsert statement: two fetches of one Party at once do not collide."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    values = {
        "fetched_at": now,
        "status": status,
        "version": version,
        "sha256": sha256,
        "anchor_fingerprint": anchor_fingerprint,
    }
    session.execute(
        insert(RegistryFollowerFetch)
        .values(party=party, **values)
        .on_conflict_do_update(index_elements=["party"], set_=values)
    )


def follower_fetches(session: Session) -> Sequence[RegistryFollowerFetch]:
    """Every Party's last identified fetch of the registry document, by Party."""
    return session.scalars(
        select(RegistryFollowerFetch).order_by(RegistryFollowerFetch.party)
    ).all()
