"""``epix keys generate`` and ``epix sign``: make a signing identity and sign a document with it.

Exit status: 0 on success, 1 when the work fails (unreadable key, weak key, bad XML, an
existing key that would be overwritten), 2 on a usage error (click's own convention).
"""

from __future__ import annotations

from pathlib import Path

import click

from epix.errors import EpixError
from epix.signatures import generate_identity, sign_document, write_identity
from epix.signatures.keys import KEY_KINDS, RSA_BITS, identity_paths

ROLE_CHOICES = (
    "management-authority",
    "customs",
    "scientific-authority",
    "node",
    "secretariat",
)


@click.group()
def keys() -> None:
    """Signing keys and certificates (EPIX-DSIG-1)."""


@keys.command("generate")
@click.option("--party", required=True, help="ISO 3166 alpha-2 code of the Party (or CITES).")
@click.option("--role", required=True, type=click.Choice(ROLE_CHOICES), help="Authority role.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for <name>.key.pem (0600) and <name>.cert.pem.",
)
@click.option(
    "--kind",
    type=click.Choice(KEY_KINDS),
    default="ec",
    show_default=True,
    help=f"ec = ECDSA P-256, rsa = RSA-{RSA_BITS}.",
)
@click.option("--name", default=None, help="File name stem; default <party>-<role>.")
@click.option("--common-name", default=None, help="Certificate CN; default '<party> <role>'.")
@click.option("--days", default=730, show_default=True, help="Certificate validity in days.")
def generate(
    party: str,
    role: str,
    out: Path,
    kind: str,
    name: str | None,
    common_name: str | None,
    days: int,
) -> None:
    """Generate a private key and a self-signed certificate to register with the Secretariat."""
    party = party.strip().upper()
    if not (party.isalpha() and (len(party) == 2 or party == "CITES")):
        raise click.BadParameter("use a two-letter ISO 3166 code or CITES", param_hint="--party")
    stem = name or f"{party.lower()}-{role}"
    key_path, _ = identity_paths(out, stem)
    if key_path.exists():
        raise click.ClickException(f"{key_path} already exists; refusing to overwrite a key.")
    try:
        key_pem, cert_pem = generate_identity(
            party, role, common_name or f"{party} {role}", kind=kind, valid_days=days
        )
        key_path, cert_path = write_identity(out, stem, key_pem, cert_pem)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"private key: {key_path} (mode 0600; keep it secret, never commit it)")
    click.echo(f"certificate: {cert_path} (give this to the Secretariat for the registry)")


@click.command()
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key (PEM) of the signing authority.",
)
@click.option(
    "--cert",
    "cert_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Its certificate (PEM), as registered with the Secretariat.",
)
@click.option(
    "--digest",
    type=click.Choice(["sha256", "sha384", "sha512"]),
    default="sha256",
    show_default=True,
    help="Digest of the reference and the signature.",
)
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def sign(key_path: Path, cert_path: Path, digest: str, source: Path, target: Path) -> None:
    """Sign SOURCE (enveloped, EPIX-DSIG-1) and write the signed document to TARGET."""
    try:
        key_pem, cert_pem = key_path.read_bytes(), cert_path.read_bytes()
        signed = sign_document(source.read_bytes(), key_pem, cert_pem, digest=digest)
    except EpixError as exc:
        for finding in exc.findings:
            click.echo(f"{source}: {finding.code}: {finding.message}", err=True)
        raise SystemExit(1) from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        target.write_bytes(signed)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"signed: {target}", err=True)
