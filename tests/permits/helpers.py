"""Small builders for permit tests: change one box of the valid demo permit at a time."""

from __future__ import annotations

import base64
import dataclasses
from datetime import date
from typing import Any

from epix.permits.model import Permit
from epix.permits.samples import demo_permit
from epix.permits.validation import ValidationReport, validate_permit_bytes
from epix.permits.writer import write_permit
from tests.conftest import FIXTURES

SAMPLE = FIXTURES / "v2_get_non_final_cites_certificate.xml"
ISSUED = date(2024, 3, 1)


def base(**kwargs: Any) -> Permit:
    kwargs.setdefault("issued", ISSUED)
    return demo_permit(**kwargs)


def change(permit: Permit, **changes: Any) -> Permit:
    return dataclasses.replace(permit, **changes)


def change_line(permit: Permit, index: int = 0, **changes: Any) -> Permit:
    lines = list(permit.lines)
    lines[index] = dataclasses.replace(lines[index], **changes)
    return dataclasses.replace(permit, lines=tuple(lines))


def validate(permit: Permit) -> ValidationReport:
    return validate_permit_bytes(write_permit(permit))


def codes(permit: Permit) -> set[str]:
    return {finding.code for finding in validate(permit).findings}


def envelope(payload: bytes) -> bytes:
    encoded = base64.b64encode(payload).decode()
    return (
        '<e:Envelope xmlns:e="urn:epix:envelope:1"><e:MessageId>m-1</e:MessageId>'
        f"<e:Payload>{encoded}</e:Payload></e:Envelope>"
    ).encode()
