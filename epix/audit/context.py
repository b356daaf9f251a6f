"""What the audit trail records about the request that caused an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

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


def url_for_audit(url: str) -> str:
    """A URL as the audit trail keeps it: its user information and its query (where webhook
    receivers put their tokens) are replaced by ``***``, its fragment dropped. The trail cannot
    be edited later, so nothing that could be a credential may go in."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "***"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    if parts.username is not None:  # a user name alone can be the token
        netloc = f"***@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "***" if parts.query else "", ""))
