"""What the audit trail records about the request that caused an event."""

from __future__ import annotations

from dataclasses import dataclass, field

# Headers worth keeping as evidence. Anything else, and every credential, is never recorded.
HEADER_ALLOWLIST = frozenset(
    {
        "content-type",
        "content-length",
        "user-agent",
        "x-request-id",
        "x-epix-message-id",
        "idempotency-key",  # ties a replayed answer to the request that first made it
        "x-forwarded-for",
        "date",
        "accept",
    }
)


@dataclass(frozen=True, slots=True)
class RequestContext:
    method: str
    path: str
    remote_addr: str | None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_raw(
        cls, method: str, path: str, remote_addr: str | None, headers: dict[str, str]
    ) -> RequestContext:
        kept = {k.lower(): v for k, v in headers.items() if k.lower() in HEADER_ALLOWLIST}
        return cls(method=method, path=path, remote_addr=remote_addr, headers=kept)
