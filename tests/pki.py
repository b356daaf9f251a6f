"""Test-only PKI: keys and certificates made fresh in memory for each test session.

TEST KEYS ONLY. Nothing here is, or may ever become, a real authority key; nothing is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class Identity:
    """A private key and its self-signed leaf certificate, as PEM bytes."""

    key_pem: bytes
    cert_pem: bytes
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        return self.certificate.fingerprint(hashes.SHA256()).hex()


def make_key(kind: str = "rsa", size: int = 2048) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    curves = {256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1(), 192: ec.SECP192R1()}
    return ec.generate_private_key(curves[size])


def make_identity(
    common_name: str = "XA Management Authority (TEST)",
    *,
    party: str = "XA",
    kind: str = "rsa",
    size: int = 2048,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
) -> Identity:
    key = make_key(kind, size)
    certificate = make_certificate(
        key.public_key(),
        key,
        common_name,
        party=party,
        not_before=not_before,
        not_after=not_after,
        hash_algorithm=hash_algorithm,
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Identity(
        key_pem=key_pem,
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        certificate=certificate,
    )


def make_certificate(
    public_key: PublicKey,
    signing_key: PrivateKey,
    common_name: str,
    *,
    party: str = "XA",
    ca: bool = False,
    key_usage: x509.KeyUsage | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    hash_algorithm: hashes.HashAlgorithm | None = None,
    padding: int = 0,
) -> x509.Certificate:
    """A certificate for ``public_key`` issued (signed) by ``signing_key``: self-signed when it
    is the same key pair, otherwise the way anyone can wrap a public key they do not own.
    ``padding`` bytes of a private extension make it as large as an attacker likes."""
    now = datetime.now(UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, party),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"{party} CITES test authority"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if padding:
        private = x509.ObjectIdentifier("1.3.6.1.4.1.32473.1")  # documentation-only arc
        builder = builder.add_extension(
            x509.UnrecognizedExtension(private, b"\0" * padding), critical=False
        )
    return builder.sign(signing_key, hash_algorithm or hashes.SHA256())


def garbled_extension_certificate() -> x509.Certificate:
    """A self-signed certificate whose basicConstraints value is not DER: the certificate
    parses, its extensions do not (cryptography raises ValueError on reading them)."""
    key = make_key("ec", 256)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "XA garbled (TEST)")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.BASIC_CONSTRAINTS, b"\x01\x02\x03"),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
