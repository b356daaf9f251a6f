"""Checkpoint signatures: the node key vouches for "at sequence N the chain head was H".

The signature is a detached ECDSA or RSA (PKCS#1 v1.5) SHA-256 signature over a short fixed
statement, verifiable with ``cryptography`` or ``openssl dgst`` against the node certificate.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from epix.audit.models import AuditCheckpoint
from epix.db.base import utcnow
from epix.exchange.node_identity import node_identity
from epix.settings import Settings


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """The node's key and certificate (PEM), passed in by whoever holds them."""

    key_pem: bytes
    cert_pem: bytes


def node_checkpoint_signer(settings: Settings) -> CheckpointSigner:
    """The node key from the data directory (the same key signs receipts)."""
    identity = node_identity(settings.data_dir, settings.node_party)
    return CheckpointSigner(identity.key_pem, identity.cert_pem)


def statement(sequence: int, head_hash: str) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"EPIX-AUDIT-CHECKPOINT/1\nsequence={sequence}\nhead={head_hash}\n".encode("ascii")


def purge_statement(through_sequence: int, anchor_hash: str, before: str) -> bytes:
    """The exact bytes a purge's signature covers: which prefix went, on what anchor, due when."""
    return (
        f"EPIX-AUDIT-PURGE/1\nthrough={through_sequence}\nanchor={anchor_hash}\nbefore={before}\n"
    ).encode("ascii")


def sign_statement(signer: CheckpointSigner, data: bytes) -> str:
    """The node key's detached signature over ``data``, base64."""
    key = serialization.load_pem_private_key(signer.key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("The node key must be ECDSA or RSA.")
    return base64.b64encode(signature).decode("ascii")


def statement_signature_valid(cert_pem: str, signature_b64: str, data: bytes) -> bool:
    """Whether a base64 signature over ``data`` verifies with the certificate (PEM)."""
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
        public_key = certificate.public_key()
        signature = base64.b64decode(signature_b64, validate=True)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_valid(checkpoint: AuditCheckpoint) -> bool:
    """Whether the stored signature verifies with the stored certificate."""
    if not checkpoint.signature or not checkpoint.certificate_pem:
        return False
    return statement_signature_valid(
        checkpoint.certificate_pem,
        checkpoint.signature,
        statement(checkpoint.sequence, checkpoint.head_hash),
    )


def certificate_fingerprint(cert_pem: bytes | str) -> str:
    data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    return x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex()


def sign_checkpoint(checkpoint: AuditCheckpoint, signer: CheckpointSigner) -> None:
    """Sign (or re-sign) one checkpoint row with the node key."""
    checkpoint.signature = sign_statement(
        signer, statement(checkpoint.sequence, checkpoint.head_hash)
    )
    checkpoint.certificate_pem = signer.cert_pem.decode("ascii")
    checkpoint.signed_at = utcnow()


def trusted(checkpoint: AuditCheckpoint, trusted_fingerprints: Sequence[str] | None) -> bool:
    """Signed, verifying, and (when trust anchors are given) by one of those certificates."""
    if not signature_valid(checkpoint):
        return False
    if trusted_fingerprints is None:
        return True
    assert checkpoint.certificate_pem is not None
    return certificate_fingerprint(checkpoint.certificate_pem) in trusted_fingerprints
