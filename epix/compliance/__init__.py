"""Compliance screening: published export quotas, zero quotas, reservations, trade
suspensions and the CITES taxonomy of Species+ (warnings only).

Screening never refuses a permit: it raises EPIX-COMP-* warnings that travel with the permit to
the importing Party's customs. The data are the curated SAPI lists copied into ``data/``.
"""

from epix.compliance.quotas import quota_index
from epix.compliance.screening import has_reservation, screen_permit
from epix.compliance.suspensions import suspensions
from epix.compliance.taxonomy import taxonomy
from epix.permits.reservations import reservations
from epix.permits.sapi_dates import ReferenceDataError


def load_reference_data() -> None:
    """Read the quota, reservation, exemption and suspension tables and the Species+ taxonomy
    (bundled and ``EPIX_SPECIESPLUS_DIR``) now, so a missing or malformed one stops the node or
    command at start with ReferenceDataError (file, line or entry, field) rather than failing
    every permit later."""
    taxonomy()
    quota_index()
    reservations()
    suspensions()


__all__ = ["ReferenceDataError", "has_reservation", "load_reference_data", "screen_permit"]
