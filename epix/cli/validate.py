"""``epix validate FILE...``: check permits offline, exactly as a node's submit pipeline would.

``-`` reads a document from standard input. No more of a file is read than the size limit and
one byte: a file over the limit (or an endless one such as ``/dev/zero``) is refused with
EPIX-XML-004 without being loaded.

Exit status: 0 when every file is valid (warnings allowed), 1 when any is invalid, 2 on a
usage error (click's own convention). ``--json`` prints one array other tools rely on:
``[{"file", "valid", "errors": [{"code", "severity", "message", "location", "line"}]}]``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from epix.compliance import (
    has_reservation,
    load_reference_data,
    screen_permit,
)
from epix.errors import Finding
from epix.permits.validation import validate_permit_bytes
from epix.xml.parse import DEFAULT_MAX_BYTES

STDIN = Path("-")


def _read(path: Path, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the file: one byte over the limit is enough to refuse it."""
    if path == STDIN:
        return sys.stdin.buffer.read(limit + 1)
    with path.open("rb") as file:
        return file.read(limit + 1)


def _check(path: Path) -> tuple[bool, list[Finding]]:
    try:
        data = _read(path, DEFAULT_MAX_BYTES)
    except OSError as exc:
        raise click.UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > DEFAULT_MAX_BYTES:
        too_large = Finding(
            "EPIX-XML-004",
            f"The document is larger than {DEFAULT_MAX_BYTES} bytes, the limit.",
            location="/",
        )
        return False, [too_large]
    report = validate_permit_bytes(data, has_reservation=has_reservation)
    findings = list(report.findings)
    if report.valid and report.permit is not None:
        findings += screen_permit(report.permit)
    return report.valid, findings


def _entry(finding: Finding) -> dict[str, object]:
    return {
        "code": finding.code,
        "severity": finding.severity.value,
        "message": finding.message,
        "location": finding.location,
        "line": finding.line,
    }


def _human(path: Path, valid: bool, findings: list[Finding]) -> None:
    click.echo(f"{path}: {'valid' if valid else 'INVALID'}")
    for finding in findings:
        where = f"{path}:{finding.line}" if finding.line is not None else str(path)
        at = f" at {finding.location}" if finding.location else ""
        click.echo(f"  {where}: {finding.severity.value} {finding.code}: {finding.message}{at}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array instead of text.")
@click.argument(
    "files",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
)
def validate(files: tuple[Path, ...], as_json: bool) -> None:
    """Validate CITESEPermit files (bare, in an EPIX envelope or in a SOAP body); FILE "-"
    reads standard input. Exit 0: all valid (warnings allowed), 1: any invalid, 2: usage."""
    load_reference_data()
    results = [(path, *_check(path)) for path in files]
    if as_json:
        payload = [
            {"file": str(path), "valid": valid, "errors": [_entry(f) for f in findings]}
            for path, valid, findings in results
        ]
        click.echo(json.dumps(payload, indent=2))
    else:
        for path, valid, findings in results:
            _human(path, valid, findings)
    if not all(valid for _, valid, _ in results):
        raise SystemExit(1)
