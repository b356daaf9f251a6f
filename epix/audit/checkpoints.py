"""Signed checkpoints: the node key vouches for "at sequence N the chain head was H".

The signature is a detached ECDSA or RSA (PKCS#1 v1.5) SHA-256 signature over a short fixed
statement, verifiable with ``cryptography`` or ``openssl dgst`` against the node certificate.
A checkpoint proves that the log was not rewritten after it was signed, and anchors the chain
when a purge has removed the events before it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import select
from sqlalchemy.orm import Session

from epix.audit.models import AuditCheckpoint
from epix.audit.service import lock_chain_head, record_event
from epix.db.base import utcnow
from epix.errors import EpixError


@dataclass(frozen=True, slots=True)
class CheckpointSigner:
    """The node's key and certificate (PEM), passed in by whoever holds them."""

    key_pem: bytes
    cert_pem: bytes


def statement(sequence: int, head_hash: str) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"EPIX-AUDIT-CHECKPOINT/1\nsequence={sequence}\nhead={head_hash}\n".encode("ascii")


def _sign(signer: CheckpointSigner, data: bytes) -> bytes:
    key = serialization.load_pem_private_key(signer.key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError("The node key must be ECDSA or RSA.")


def signature_valid(checkpoint: AuditCheckpoint) -> bool:
    """Whether the stored signature verifies with the stored certificate."""
    if not checkpoint.signature or not checkpoint.certificate_pem:
        return False
    try:
        certificate = x509.load_pem_x509_certificate(checkpoint.certificate_pem.encode("ascii"))
        public_key = certificate.public_key()
        signature = base64.b64decode(checkpoint.signature, validate=True)
        data = statement(checkpoint.sequence, checkpoint.head_hash)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def certificate_fingerprint(cert_pem: bytes | str) -> str:
    data = cert_pem.encode("ascii") if isinstance(cert_pem, str) else cert_pem
    return x509.load_pem_x509_certificate(data).fingerprint(hashes.SHA256()).hex()


def _apply_signature(checkpoint: AuditCheckpoint, signer: CheckpointSigner) -> None:
    signature = _sign(signer, statement(checkpoint.sequence, checkpoint.head_hash))
    checkpoint.signature = base64.b64encode(signature).decode("ascii")
    checkpoint.certificate_pem = signer.cert_pem.decode("ascii")
    checkpoint.signed_at = utcnow()


def sign_pending_checkpoints(session: Session, signer: CheckpointSigner) -> int:
    """Sign the checkpoints ``record_event`` left unsigned; returns how many were signed."""
    pending = session.scalars(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.signature.is_(None))
        .order_by(AuditCheckpoint.sequence)
    ).all()
    for checkpoint in pending:
        _apply_signature(checkpoint, signer)
    return len(pending)


def checkpoint_at(
    session: Session, sequence: int, event_hash: str, signer: CheckpointSigner
) -> AuditCheckpoint:
    """A signed checkpoint at one event (reusing a pending or signed one already there)."""
    checkpoint = session.get(AuditCheckpoint, sequence)
    if checkpoint is None:
        checkpoint = AuditCheckpoint(sequence=sequence, head_hash=event_hash, created_at=utcnow())
        session.add(checkpoint)
    if checkpoint.signature is None:
        _apply_signature(checkpoint, signer)
    session.flush()
    return checkpoint


def create_checkpoint(session: Session, signer: CheckpointSigner) -> AuditCheckpoint:
    """Sign a checkpoint at the current head now, and record that it was made."""
    head = lock_chain_head(session)
    if head.sequence == 0:
        raise EpixError.of(
            "EPIX-REQ-004", "The audit trail is empty: nothing to checkpoint.", "audit_events"
        )
    checkpoint = checkpoint_at(session, head.sequence, head.hash, signer)
    record_event(
        session,
        action="audit_checkpoint",
        outcome="ok",
        detail={"sequence": checkpoint.sequence, "head_hash": checkpoint.head_hash},
    )
    return checkpoint


def trusted(checkpoint: AuditCheckpoint, trusted_fingerprints: Sequence[str] | None) -> bool:
    """Signed, verifying, and (when trust anchors are given) by one of those certificates."""
    if not signature_valid(checkpoint):
        return False
    if trusted_fingerprints is None:
        return True
    assert checkpoint.certificate_pem is not None
    return certificate_fingerprint(checkpoint.certificate_pem) in trusted_fingerprints
