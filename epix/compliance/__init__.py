"""Compliance screening: published export quotas, zero quotas, reservations and trade
suspensions (warnings only).

Screening never refuses a permit: it raises EPIX-COMP-* warnings that travel with the permit to
the importing Party's customs. The data are the curated SAPI lists copied into ``data/``.
"""

from epix.compliance.quotas import quota_index
from epix.compliance.screening import screen_permit
from epix.compliance.suspensions import suspensions
from epix.permits.reservations import has_reservation, reservations
from epix.permits.sapi_dates import ReferenceDataError


def load_reference_data() -> None:
    """Read the quota, reservation, exemption and suspension tables now, so a missing or
    malformed one stops the node or command at start with ReferenceDataError (file, line,
    field) rather than failing every permit later."""
    quota_index()
    reservations()
    suspensions()


__all__ = ["ReferenceDataError", "has_reservation", "load_reference_data", "screen_permit"]
