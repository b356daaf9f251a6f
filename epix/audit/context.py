"""What the audit trail records about the request that caused an event."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

REDACTED = "[redacted]"  # what stands for a credential taken out of a text or a log line

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


# How much of a far end's words the node keeps with a failed delivery: enough for its codes and
# the start of its explanation; its whole answer, up to the body cap, helps no operator.
FAR_END_TEXT_LIMIT = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Each pattern starts only where a word (a scheme, a name) starts and reads it once: started
# at every letter of a long word, each reread the rest of it (minutes for 20 KB of ``a-a-``).
_URL = re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^\s\"'<>`]+", re.IGNORECASE)
# A value a text gives as a credential: after ``Bearer``/``Basic`` or a name that says so
# (``token=``, ``"api_key": "``, ``Authorization:``, ``X-Auth-Token:``). Unlike the logs'
# redaction (epix.cli.logs), which looks for the node's own credentials, this one knows no
# value: the far end may repeat one of its own, or the one this node sent it.
_GIVEN_CREDENTIAL = re.compile(
    r"(?P<name>(?<![\w-])(?:bearer|basic)[ \t]+"
    r"|(?<![\w-])[\w-]*?(?:password|passwd|pwd|secret|token|api[_-]?key|authorization"
    r"|credentials?)['\"]?[ \t]*[=:][ \t]*['\"]?(?:(?:bearer|basic)[ \t]+)?)"
    r"[^\s'\",;&]+",
    re.IGNORECASE,
)


def far_end_text_for_audit(text: str) -> str:
    """What a far end said (a peer's refusal, a transport error) as the node keeps, audits and
    shows it with a failed delivery: every URL as ``url_for_audit`` keeps one, every value given
    as a credential ``[redacted]``, on one line and at most ``FAR_END_TEXT_LIMIT`` characters.
    The hub's node admins read every Party's failures, and the trail cannot be edited later.
    Only the start of a long text is read (a peer's answer may be megabytes)."""
    text = text[: FAR_END_TEXT_LIMIT * 4]
    text = _URL.sub(lambda found: url_for_audit(found.group()), text)
    text = _GIVEN_CREDENTIAL.sub(lambda found: found.group("name") + REDACTED, text)
    text = " ".join(_CONTROL.sub(" ", text).split())
    if len(text) <= FAR_END_TEXT_LIMIT:
        return text
    return text[: FAR_END_TEXT_LIMIT - 1] + "…"
