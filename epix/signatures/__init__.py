"""EPIX-DSIG-1 signing and fail-closed verification against caller-supplied certificates.

Core package: it knows no registry and no database. Trust arrives through a ``TrustStore``.
"""

from epix.signatures.keys import (
    ensure_identity,
    generate_identity,
    load_identity,
    write_identity,
)
from epix.signatures.sign import sign_document
from epix.signatures.trust import (
    StaticTrustStore,
    TrustedCertificate,
    TrustStore,
    fingerprint_of,
)
from epix.signatures.verify import Verdict, verify_document

__all__ = [
    "StaticTrustStore",
    "TrustStore",
    "TrustedCertificate",
    "Verdict",
    "ensure_identity",
    "fingerprint_of",
    "generate_identity",
    "load_identity",
    "sign_document",
    "verify_document",
    "write_identity",
]
