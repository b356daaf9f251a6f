"""Signing identities: a private key and its self-signed leaf certificate, kept on disk.

Used at first start to create the demo Parties' keys in the data directory, for the node's own
key (receipts, audit checkpoints) and by ``epix keys generate``. The certificate is self-signed
on purpose: trust comes from the registry, not from a CA.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from epix.signatures.profile import key_problem
from epix.signatures.trust import normalise_role

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
KEY_KINDS = ("ec", "rsa")
RSA_BITS = 3072
DEFAULT_VALID_DAYS = 730


def generate_identity(
    party: str,
    role: str,
    common_name: str,
    *,
    kind: str = "ec",
    valid_days: int = DEFAULT_VALID_DAYS,
    not_before: datetime | None = None,
) -> tuple[bytes, bytes]:
    """A fresh key (ECDSA P-256 or RSA-3072) and a self-signed certificate, both as PEM.

    The subject names the Party (as C when it is a two-letter code) and the role (as OU), so a
    certificate read on its own still says whose it is.
    """
    if valid_days < 1:
        raise ValueError("A certificate must be valid for at least one day.")
    start = (not_before or datetime.now(UTC)).replace(microsecond=0)
    try:
        end = start + timedelta(days=valid_days)
    except OverflowError:
        raise ValueError(
            f"{valid_days} days from {start.date()} runs past the year 9999."
        ) from None
    if kind == "ec":
        key: SigningKey = ec.generate_private_key(ec.SECP256R1())
    elif kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    else:
        raise ValueError(f"Unknown key kind {kind!r}; use one of {', '.join(KEY_KINDS)}.")
    role = normalise_role(role)
    attributes = []
    if len(party) == 2 and party.isalpha():
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, party.upper()))
    attributes += [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{party} CITES {role}"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    name = x509.Name(attributes)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM)


def identity_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """Where ``write_identity`` puts the key and the certificate of ``name``."""
    return directory / f"{name}.key.pem", directory / f"{name}.cert.pem"


def write_identity(
    directory: Path, name: str, key_pem: bytes, cert_pem: bytes
) -> tuple[Path, Path]:
    """Write ``<name>.key.pem`` (0600, never overwritten) and ``<name>.cert.pem``.

    The key file is created with its final permissions, so it is never readable by others,
    not even for an instant; an existing key raises ``FileExistsError`` rather than being lost.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path, cert_path = identity_paths(directory, name)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_pem)
    key_path.chmod(0o600)  # the umask may have narrowed it further; never wider
    cert_path.write_bytes(cert_pem)
    return key_path, cert_path


def load_signing_key(key_pem: bytes) -> SigningKey:
    """The private key in ``key_pem``; ``ValueError`` when it is not an RSA or EC key."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError("Only RSA and ECDSA private keys can sign under EPIX-DSIG-1.")
    return key


def check_identity(key_pem: bytes, cert_pem: bytes) -> x509.Certificate:
    """Parse a key and certificate and make sure they belong together and are strong enough."""
    key = load_signing_key(key_pem)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    problem = key_problem(certificate.public_key())
    if problem:
        raise ValueError(problem)
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("The private key does not belong to the certificate.")
    return certificate


def load_identity(directory: Path, name: str) -> tuple[bytes, bytes]:
    """Read back what ``write_identity`` wrote, checking that key and certificate match."""
    key_path, cert_path = identity_paths(directory, name)
    key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
    check_identity(key_pem, cert_pem)
    return key_pem, cert_pem


def ensure_identity(
    directory: Path,
    name: str,
    *,
    party: str,
    role: str,
    common_name: str,
    kind: str = "ec",
) -> tuple[bytes, bytes]:
    """Load ``name`` from ``directory``, generating and writing it first if it is not there."""
    key_path, _ = identity_paths(directory, name)
    if not key_path.exists():
        key_pem, cert_pem = generate_identity(party, role, common_name, kind=kind)
        write_identity(directory, name, key_pem, cert_pem)
    return load_identity(directory, name)
