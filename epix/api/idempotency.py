"""The ``Idempotency-Key`` request header: read once, checked, and tied to its request.

The key itself is judged and remembered by ``epix.endorsements.idempotency``; this module only
reads it from HTTP and computes the request's fingerprint (method, path, canonical body).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel

from epix.endorsements.idempotency import (
    KEY_HEADER,
    KEY_MAX_LENGTH,
    Answer,
    IdempotencyKey,
    check_key,
)
from epix.errors import EpixError

REPLAYED_HEADER = "Idempotent-Replayed"
KEY_DESCRIPTION = (
    "Optional; makes a retry safe. Send a new unique value (a UUID) with each new request and "
    "the same value when sending that request again because its answer was lost: within "
    "EPIX_IDEMPOTENCY_KEY_HOURS (default 24 h) the retry gets the first answer (same status and "
    f"body, with `{REPLAYED_HEADER}: true`) and records nothing twice. Scoped to your Party and "
    "this operation; the same key with a different request (method, path or body) is refused "
    "(422, EPIX-REQ-013). Only answers that changed something are kept: a refused request sent "
    f"again is judged again. 1 to {KEY_MAX_LENGTH} visible ASCII characters (EPIX-REQ-012)."
)


def _key_schema(schema: dict[str, Any]) -> None:
    """A header is a string or absent, never null: the schema says so, with the key's form."""
    schema.pop("anyOf", None)
    schema.update(type="string", minLength=1, maxLength=KEY_MAX_LENGTH, pattern="^[!-~]+$")


async def _idempotency_key(
    request: Request,
    key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            description=KEY_DESCRIPTION,
            json_schema_extra=_key_schema,
        ),
    ] = None,
) -> str | None:
    if len(request.headers.getlist(KEY_HEADER)) > 1:
        raise EpixError.of(
            "EPIX-REQ-012", f"Send one {KEY_HEADER} header, not several.", KEY_HEADER
        )
    return None if key is None else check_key(key)


IdempotencyKeyHeader = Annotated[str | None, Depends(_idempotency_key)]


def keyed_request(
    key: str | None, request: Request, body: BaseModel, *, path: str | None = None
) -> IdempotencyKey | None:
    """The key with the SHA-256 of method, path and body (parsed, keys sorted, defaults filled
    in: spacing, key order or an explicit default do not make another request). ``path``: the
    API address the request stands for, where its own does not name the permit (a page's
    form posted to /web/endorse)."""
    if key is None:
        return None
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    fingerprint = "\n".join((request.method, path or request.url.path, canonical))
    return IdempotencyKey(key, hashlib.sha256(fingerprint.encode()).hexdigest())


def mark_replayed(response: Response, answer: Answer) -> None:
    """Tell the client the answer is the stored one (as Stripe does)."""
    if answer.replayed:
        response.headers[REPLAYED_HEADER] = "true"
