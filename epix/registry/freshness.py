"""Whether the Secretariat still vouches for the registry copy a follower holds.

A source (or anyone on the path) could keep serving one validly signed document forever, so
that a revocation published later never arrives: a freeze attack. Each published document
carries a signed expiry (``expires``, like a CRL's nextUpdate or TUF's timestamp role). Past
it a follower warns (EPIX-REG-016) for a grace period, then refuses every signature
(EPIX-REG-017) until a current document arrives: failing closed, but not at the first
missed republication. A document signed before expiry existed is held to
``EPIX_REGISTRY_VALIDITY_HOURS`` from its issue: otherwise anyone holding such an old document
could freeze a new follower on it for good.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from epix.db.base import utcnow
from epix.errors import EpixError, Finding
from epix.registry import repository
from epix.registry.document import format_time
from epix.settings import Settings, get_settings
from epix.signatures.trust import as_utc

EXPIRED = "EPIX-REG-016"
LAPSED = "EPIX-REG-017"


_DEFAULT_VALIDITY = timedelta(hours=Settings.model_fields["registry_validity_hours"].default)


@dataclass(frozen=True, slots=True)
class FreshnessPolicy:
    """Expiry is enforced on follower nodes only: the Secretariat's own tables are the
    registry, and a node loaded by hand (``epix registry import``) has no source to ask."""

    enforced: bool
    grace: timedelta
    clock: Callable[[], datetime] = field(default=utcnow)
    unsigned_validity: timedelta = _DEFAULT_VALIDITY

    @classmethod
    def from_settings(cls, settings: Settings) -> FreshnessPolicy:
        return cls(
            enforced=bool(settings.registry_source_url),
            grace=timedelta(hours=settings.registry_expiry_grace_hours),
            unsigned_validity=timedelta(hours=settings.registry_validity_hours),
        )


_policy: FreshnessPolicy | None = None


def configure_freshness(policy: FreshnessPolicy | None) -> None:
    """Set the process-wide policy (None: read it from the settings)."""
    global _policy
    _policy = policy


def current_policy() -> FreshnessPolicy:
    return _policy if _policy is not None else FreshnessPolicy.from_settings(get_settings())


def expiry_finding(expires_at: datetime | None, now: datetime, grace: timedelta) -> Finding | None:
    """None while the copy is current; EPIX-REG-016 past its expiry; EPIX-REG-017 past the
    grace period too."""
    if expires_at is None or now <= expires_at:
        return None
    if now <= expires_at + grace:
        return Finding(
            EXPIRED,
            f"The registry copy held expired at {format_time(expires_at)}; signatures are "
            f"refused from {format_time(expires_at + grace)} unless the Secretariat's source "
            "serves a current one.",
            "/Registry/@expires",
        )
    return Finding(
        LAPSED,
        f"The registry copy held expired at {format_time(expires_at)} and its grace period "
        "ended: no signature is accepted until a current registry is fetched.",
        "/Registry/@expires",
    )


def held_copy_finding(session: Session, policy: FreshnessPolicy | None = None) -> Finding | None:
    """The expiry finding for the copy this node holds, under ``policy`` (None when not
    enforced)."""
    policy = policy or current_policy()
    if not policy.enforced:
        return None
    return expiry_finding(held_copy_expiry(session, policy), policy.clock(), policy.grace)


def held_copy_expiry(session: Session, policy: FreshnessPolicy | None = None) -> datetime | None:
    """When the newest document held expires: its signed ``expires``, or for one signed before
    expiry existed its issue plus the policy's validity (None when no document is held)."""
    dates = repository.newest_document_dates(session)
    if dates is None:
        return None
    issued_at, expires_at = dates
    if expires_at is not None:
        return as_utc(expires_at)
    return as_utc(issued_at) + (policy or current_policy()).unsigned_validity


def require_current_registry(session: Session) -> None:
    """Refuse (EPIX-REG-017) to take any trust decision from a copy whose grace has ended."""
    finding = held_copy_finding(session)
    if finding is not None and finding.code == LAPSED:
        raise EpixError([finding])
