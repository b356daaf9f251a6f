"""Compliance screening: published export quotas, zero quotas and reservations (warnings only).

Screening never refuses a permit: it raises EPIX-COMP-* warnings that travel with the permit to
the importing Party's customs. The data are the curated SAPI lists copied into ``data/``.
"""

from epix.compliance.screening import screen_permit
from epix.permits.reservations import has_reservation

__all__ = ["has_reservation", "screen_permit"]
