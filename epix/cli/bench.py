"""``epix bench``: rates and latencies, each as a ratio to a baseline from the same run."""

from __future__ import annotations

import time
from collections.abc import Callable

import click

from epix.cli.bench_node import node as node_benchmark


@click.group()
def bench() -> None:
    """Benchmarks: each prints its rate and the ratio to a baseline from the same run."""


def _rate(work: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``work`` over about ``seconds`` of wall time."""
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        work()
        count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - started)


@bench.command("validate")
@click.option("--seconds", default=3.0, show_default=True, help="Total measuring time.")
@click.option("--lines", default=6, show_default=True, help="Permit lines (6 is about 10 KB).")
@click.option(
    "--signed",
    is_flag=True,
    help="Sign the permit first (throwaway ECDSA key), as the node receives permits.",
)
def validate_bench(seconds: float, lines: int, signed: bool) -> None:
    """Permits/s for parse + schema + codes + rules vs bare lxml parse + XMLSchema."""
    from lxml import etree

    from epix.compliance import has_reservation
    from epix.permits.reader import extract_permit_element, read_permit
    from epix.permits.samples import demo_permit
    from epix.permits.validation import (
        PERMIT_SCHEMA,
        check_codes_and_rules,
        check_schema,
        validate_permit_bytes,
    )
    from epix.permits.writer import write_permit
    from epix.signatures import generate_identity, sign_document
    from epix.xml import load_schema, parse_xml

    data = write_permit(demo_permit(lines=lines))
    if signed:
        key_pem, cert_pem = generate_identity("XA", "management_authority", "XA benchmark signer")
        data = sign_document(data, key_pem, cert_pem)
    schema = load_schema(PERMIT_SCHEMA)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    if not validate_permit_bytes(data, has_reservation=has_reservation).valid:
        raise click.ClickException("the benchmark permit does not validate")

    def baseline() -> None:
        schema.validate(etree.fromstring(data, parser))

    def full() -> None:
        validate_permit_bytes(data, has_reservation=has_reservation)

    rounds = 6
    base_rate = full_rate = 0.0
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
        base_rate += _rate(baseline, seconds / (2 * rounds)) / rounds
        full_rate += _rate(full, seconds / (2 * rounds)) / rounds
    ratio = full_rate / base_rate
    click.echo(f"permit size: {len(data)} bytes, {lines} lines{', signed' if signed else ''}")
    click.echo(f"baseline (lxml parse + XMLSchema): {base_rate:,.0f} permits/s")
    click.echo(f"epix (parse + schema + model + codes + rules): {full_rate:,.0f} permits/s")
    click.echo(f"ratio: {ratio:.2f} (target >= 0.50)")
    # Where the time goes, so the ratio can be read: the model step (compiled, reading
    # libxml2's tree) builds the permit's Python values, codes and rules are Python, the
    # baseline's steps are C (see docs/performance.md). The steps run on the tree
    # validate_permit_bytes builds (no whitespace-only text between elements).
    root = extract_permit_element(parse_xml(data, keep_blank_text=False))
    permit = read_permit(root)
    steps: list[tuple[str, Callable[[], object]]] = [
        ("hardened parse", lambda: parse_xml(data, keep_blank_text=False)),
        ("schema (lxml)", lambda: check_schema(root)),
        ("model (read_permit)", lambda: read_permit(root)),
        (
            "codes + rules",
            lambda: check_codes_and_rules(permit, root, has_reservation=has_reservation),
        ),
    ]
    share = seconds / (4 * len(steps))
    timings = ", ".join(f"{name} {1e6 / _rate(work, share):.0f} us" for name, work in steps)
    click.echo(f"per step: {timings}")


@bench.command("verify")
@click.option("--seconds", default=3.0, show_default=True, help="Total measuring time.")
@click.option("--lines", default=6, show_default=True, help="Permit lines (6 is about 10 KB).")
@click.option(
    "--kind",
    type=click.Choice(["ec", "rsa"]),
    default="ec",
    show_default=True,
    help="Signing key: ECDSA P-256 or RSA-3072.",
)
def verify_bench(seconds: float, lines: int, kind: str) -> None:
    """Verifications/s of a signed permit: full EPIX-DSIG-1 checks vs a bare signxml verify."""
    from cryptography import x509
    from signxml.verifier import XMLVerifier

    from epix.permits.samples import demo_permit
    from epix.permits.writer import write_permit
    from epix.signatures import (
        StaticTrustStore,
        TrustedCertificate,
        generate_identity,
        sign_document,
        verify_document,
    )

    role = "management_authority"
    key_pem, cert_pem = generate_identity("XA", role, "XA benchmark signer", kind=kind)
    data = sign_document(write_permit(demo_permit(lines=lines)), key_pem, cert_pem)
    certificate = x509.load_pem_x509_certificate(cert_pem)
    trust = StaticTrustStore(
        [TrustedCertificate.from_certificate(certificate, party="XA", role=role)]
    )
    verdict = verify_document(data, party="XA", role=role, trust=trust)
    if not verdict.valid:
        raise click.ClickException(f"the benchmark permit does not verify: {verdict.codes}")

    def baseline() -> None:
        XMLVerifier().verify(data, x509_cert=certificate)

    def full() -> None:
        verify_document(data, party="XA", role=role, trust=trust)

    rounds = 6
    base_rate = full_rate = 0.0
    for _ in range(rounds):  # interleaved, so drift on a shared machine hits both alike
        base_rate += _rate(baseline, seconds / (2 * rounds)) / rounds
        full_rate += _rate(full, seconds / (2 * rounds)) / rounds
    ratio = full_rate / base_rate
    click.echo(f"signed permit: {len(data)} bytes, {lines} lines, {verdict.key_description}")
    click.echo(f"baseline (bare signxml verify): {base_rate:,.0f} verifications/s")
    click.echo(
        f"epix (parse + profile + registry binding + signxml): {full_rate:,.0f} verifications/s"
    )
    click.echo(f"ratio: {ratio:.2f} (target >= 0.80)")


bench.add_command(node_benchmark)
