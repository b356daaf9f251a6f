"""The one error table, and the finding/exception types every layer reports with.

Every refusal or warning EPIX produces carries a code from ``ERROR_TABLE``. Codes are stable:
clients match on them, so a code is never renamed or reused; add a new one instead.
``docs/errors.md`` is rendered from this table (``epix errors --markdown``) and a test keeps
the two in step; another test fails if any code is raised that the table lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    code: str
    severity: Severity
    http_status: int
    meaning: str


E, W = Severity.ERROR, Severity.WARNING


def _c(code: str, severity: Severity, http_status: int, meaning: str) -> ErrorCode:
    return ErrorCode(code, severity, http_status, meaning)


_TABLE: tuple[ErrorCode, ...] = (
    # --- parse (epix.xml) ---
    _c("EPIX-XML-001", E, 400, "The document is not well-formed XML."),
    _c("EPIX-XML-002", E, 400, "The document has a DOCTYPE; DTDs and entities are refused."),
    _c("EPIX-XML-003", E, 400, "The document nests elements deeper than the node allows."),
    _c("EPIX-XML-004", E, 413, "The document is larger than the node accepts."),
    _c("EPIX-XML-005", E, 400, "The document has an unexpected root element or namespace."),
    _c("EPIX-XML-006", E, 400, "The document is empty."),
    _c("EPIX-XML-007", E, 400, "The document has a processing instruction that is not allowed."),
    _c("EPIX-XML-008", E, 413, "The document has more elements than the node accepts."),
    # --- schema (schemas/) ---
    _c("EPIX-SCHEMA-001", E, 422, "The document does not conform to the EPIX schema."),
    # --- code lists ---
    _c("EPIX-CODE-001", E, 422, "Unknown document type code (box 1)."),
    _c("EPIX-CODE-002", E, 422, "Unknown purpose code (box 5a)."),
    _c("EPIX-CODE-003", E, 422, "Unknown source code (box 10)."),
    _c("EPIX-CODE-004", E, 422, "Unknown appendix (box 10)."),
    _c("EPIX-CODE-005", E, 422, "Unknown unit of quantity (box 11)."),
    _c("EPIX-CODE-006", E, 422, "Unknown term (description of specimens) code (box 7/8)."),
    _c("EPIX-CODE-007", E, 422, "Unknown country code (ISO 3166-1 alpha-2)."),
    _c("EPIX-CODE-101", W, 200, "Historic code: still understood, but no longer current."),
    _c("EPIX-CODE-102", W, 200, "Implausible term and unit combination."),
    _c("EPIX-CODE-103", W, 200, "Implausible term and purpose combination."),
    # --- business rules (Convention) ---
    _c("EPIX-RULE-001", E, 422, "A mandatory box is missing or empty."),
    _c("EPIX-RULE-002", E, 422, "Exporter and importer are in the same country."),
    _c("EPIX-RULE-003", E, 422, "Export permit or re-export certificate valid more than 6 months."),
    _c("EPIX-RULE-004", E, 422, "Import permit valid more than 12 months."),
    _c("EPIX-RULE-005", E, 422, "Validity ends before it starts, or starts before the issue date."),
    _c("EPIX-RULE-006", E, 422, "Re-export without country of origin or origin permit (box 12)."),
    _c("EPIX-RULE-007", E, 422, "Re-export whose country of origin is the re-exporting Party."),
    _c("EPIX-RULE-008", W, 200, "Re-export of a specimen re-exported before lacks box 12a."),
    _c("EPIX-RULE-009", E, 422, "Source D requires Appendix I and a registered operation."),
    _c("EPIX-RULE-010", E, 422, "Source O (pre-Convention) requires an acquisition date."),
    _c(
        "EPIX-RULE-011",
        E,
        422,
        "Appendix I export, or re-export of a living specimen, needs the import permit reference.",
    ),
    _c(
        "EPIX-RULE-012",
        E,
        422,
        "Appendix I specimens other than source D or O for commercial purpose (T).",
    ),
    _c("EPIX-RULE-013", E, 422, "Quantity must be a positive number."),
    _c("EPIX-RULE-014", E, 422, "Permit number is longer than 35 characters."),
    _c("EPIX-RULE-015", W, 200, "The origin permit (box 12) is referenced without its number."),
    _c("EPIX-RULE-016", W, 200, "Source D without a registered operation number (box 12b)."),
    _c("EPIX-RULE-017", E, 422, "Box 5a must carry exactly one purpose code."),
    _c("EPIX-RULE-018", E, 422, "Two permit lines share the same line identifier."),
    _c("EPIX-RULE-019", W, 200, "Appendix I source A or C for commercial purpose (T): use D."),
    _c("EPIX-RULE-020", E, 422, "A line repeats its species, trade line or quantity package."),
    # --- compliance screening (warnings, never silent) ---
    _c("EPIX-COMP-001", W, 200, "Trade exceeds or is outside a published export quota."),
    _c("EPIX-COMP-002", W, 200, "A zero export quota applies to this taxon and exporter."),
    _c("EPIX-COMP-003", W, 200, "The exporter or importer holds a reservation for this taxon."),
    _c("EPIX-COMP-004", W, 200, "Box 11a quota figures are inconsistent."),
    _c(
        "EPIX-COMP-005",
        W,
        200,
        "A published export quota applies, but in a unit the permit's quantity is not in.",
    ),
    _c(
        "EPIX-COMP-006",
        W,
        200,
        "A trade suspension or stricter domestic measure published for this country covers the "
        "line.",
    ),
    _c(
        "EPIX-COMP-007",
        W,
        200,
        "Box 7 names a synonym: the line was screened under the accepted name in the CITES "
        "taxonomy (Species+).",
    ),
    _c(
        "EPIX-COMP-008",
        W,
        200,
        "The appendix declared in box 10 is not one the CITES taxonomy (Species+) lists the "
        "taxon in.",
    ),
    _c(
        "EPIX-COMP-009",
        W,
        200,
        "Box 7 names a synonym of several taxa in the CITES taxonomy (Species+): the line was "
        "screened under the name as written.",
    ),
    # --- signatures (EPIX-DSIG-1) ---
    _c("EPIX-SIG-001", E, 422, "The document is not signed."),
    _c("EPIX-SIG-002", E, 422, "The document has more than one signature."),
    _c("EPIX-SIG-003", E, 422, "The signature is not the last direct child of the root."),
    _c("EPIX-SIG-004", E, 422, 'The signature must have exactly one Reference with URI="".'),
    _c("EPIX-SIG-005", E, 422, "A transform other than enveloped-signature then exclusive C14N."),
    _c("EPIX-SIG-006", E, 422, "Canonicalization algorithm not allowed (exclusive C14N only)."),
    _c("EPIX-SIG-007", E, 422, "Digest algorithm not allowed (SHA-256/384/512 only)."),
    _c("EPIX-SIG-008", E, 422, "Signature algorithm not allowed (RSA or ECDSA with SHA-2)."),
    _c("EPIX-SIG-009", E, 422, "Key too weak (RSA < 2048 bits or a curve other than P-256/P-384)."),
    _c("EPIX-SIG-010", E, 422, "KeyInfo must carry the signer's X.509 certificate."),
    _c(
        "EPIX-SIG-011",
        E,
        422,
        "The signature value or digest does not match: the document changed.",
    ),
    _c(
        "EPIX-SIG-012", E, 422, "The signing certificate is not registered for this Party and role."
    ),
    _c("EPIX-SIG-013", E, 422, "The signing certificate was revoked before the signing time."),
    _c("EPIX-SIG-014", E, 422, "The signing certificate was not valid at the signing time."),
    _c("EPIX-SIG-015", E, 422, "The signer belongs to another Party than the one claimed."),
    _c("EPIX-SIG-016", E, 422, "The signature could not be verified."),
    _c("EPIX-SIG-017", E, 422, "The signature uses a prefix or layout outside EPIX-DSIG-1."),
    _c("EPIX-SIG-018", E, 422, "The document has XML comments, which signatures do not cover."),
    # --- key registry ---
    _c("EPIX-REG-001", E, 404, "Unknown Party."),
    _c("EPIX-REG-002", E, 404, "Unknown authority."),
    _c("EPIX-REG-003", E, 409, "That certificate is already registered."),
    _c(
        "EPIX-REG-004",
        E,
        422,
        "The certificate is not acceptable (unparseable, several, a CA, not for signing, weak "
        "or expired).",
    ),
    _c("EPIX-REG-005", E, 404, "Unknown certificate."),
    _c(
        "EPIX-REG-006",
        E,
        409,
        "The certificate is already revoked from that time or earlier (a revocation may only "
        "be brought earlier).",
    ),
    _c("EPIX-REG-007", E, 422, "The registry document's Secretariat signature does not verify."),
    _c("EPIX-REG-008", E, 409, "The registry document is older than the copy already held."),
    _c("EPIX-REG-009", E, 503, "No registry is loaded yet."),
    _c("EPIX-REG-010", E, 409, "That Party or authority already exists."),
    _c("EPIX-REG-011", W, 200, "Registry source unreachable: serving the last good copy."),
    _c("EPIX-REG-012", E, 422, "A node endpoint must be an absolute https URL (http: loopback)."),
    _c("EPIX-REG-013", E, 422, "Unknown authority kind, or a role that kind may not sign for."),
    _c(
        "EPIX-REG-014",
        E,
        422,
        "A private key was sent where a certificate belongs; nothing was stored. Send the "
        "certificate only, and replace the key if it travelled unencrypted.",
    ),
    _c(
        "EPIX-REG-015",
        E,
        409,
        "The certificate's public key is already in a registered (or revoked) certificate: "
        "use a new key pair.",
    ),
    _c(
        "EPIX-REG-016",
        W,
        200,
        "The registry copy held is past its expiry: the Secretariat has not confirmed it is "
        "still current; signatures are still accepted until the grace period ends.",
    ),
    _c(
        "EPIX-REG-017",
        E,
        503,
        "The registry copy held expired longer ago than the grace period allows: no signature "
        "is accepted until a current registry is fetched from the Secretariat.",
    ),
    _c(
        "EPIX-REG-018",
        E,
        422,
        "That certificate cannot be announced as the Secretariat's next registry anchor: it "
        "must be one leaf certificate, not expired, with a new key, never an anchor before.",
    ),
    _c(
        "EPIX-REG-019",
        E,
        409,
        "Followers would not accept this registry signing certificate: once a successor is "
        "announced, sign with the announcing certificate or the announced one only.",
    ),
    _c(
        "EPIX-REG-020",
        E,
        503,
        "The Secretariat certificate this follower trusts (its registry anchor) has expired: "
        "no newer registry document can be accepted until a successor takes over.",
    ),
    _c(
        "EPIX-REG-021",
        E,
        503,
        "This follower cannot move to the successor announced for its registry anchor: the "
        "successor expired, or the source's documents do not lead to it.",
    ),
    # --- authentication and authorisation ---
    _c("EPIX-AUTH-001", E, 401, "Authentication required."),
    _c("EPIX-AUTH-002", E, 401, "The API key or password is not valid."),
    _c("EPIX-AUTH-003", E, 401, "The API key has expired or was revoked."),
    _c("EPIX-AUTH-004", E, 403, "Your role does not allow this action."),
    _c("EPIX-AUTH-005", E, 403, "You may act only for your own Party."),
    _c("EPIX-AUTH-006", E, 403, "The user account is disabled."),
    _c("EPIX-AUTH-007", E, 409, "A user with that name already exists."),
    _c("EPIX-AUTH-008", E, 404, "Unknown user or API key."),
    _c("EPIX-AUTH-009", E, 401, "Invalid or expired web session; log in again."),
    _c(
        "EPIX-AUTH-010",
        E,
        429,
        "Too many failed logins for this user name from this address; wait before trying again.",
    ),
    _c(
        "EPIX-AUTH-011",
        E,
        429,
        "Too many refused API keys, sessions or cross-site logins from this address; wait "
        "before trying again.",
    ),
    _c(
        "EPIX-AUTH-012",
        E,
        403,
        "The request came from another site: a browser acts on the node only from the node's "
        "own pages. Nothing was done, and a login session stays as it was; open the page at "
        "the node's address.",
    ),
    _c(
        "EPIX-AUTH-013",
        E,
        409,
        "That user name cannot be used on this node; choose another. User names are shared by "
        "every Party's accounts on the node, including ones you do not manage or see.",
    ),
    # --- request / transport ---
    _c("EPIX-REQ-001", E, 400, "The request body is not valid JSON."),
    _c("EPIX-REQ-002", E, 415, "Unsupported content type."),
    _c("EPIX-REQ-003", E, 413, "The request body is larger than the node accepts."),
    _c("EPIX-REQ-004", E, 422, "A request field is missing or invalid."),
    _c("EPIX-REQ-005", E, 404, "Not found."),
    _c("EPIX-REQ-006", E, 405, "Method not allowed."),
    _c("EPIX-REQ-007", E, 500, "Internal error; the node operator has the details."),
    _c("EPIX-REQ-008", E, 400, "Invalid cursor."),
    _c("EPIX-REQ-009", E, 400, "The request holds a value the node cannot store (e.g. NUL)."),
    _c("EPIX-REQ-010", E, 431, "The request line and headers are larger than the node accepts."),
    _c("EPIX-REQ-011", E, 408, "The request's headers or body did not arrive in time."),
    _c(
        "EPIX-REQ-012",
        E,
        400,
        "The Idempotency-Key header must be one value of 1 to 255 visible ASCII characters.",
    ),
    _c("EPIX-REQ-013", E, 422, "This Idempotency-Key was already used for a different request."),
    _c(
        "EPIX-REQ-014",
        E,
        409,
        "A request with this Idempotency-Key is still being processed; send it again shortly.",
    ),
    _c(
        "EPIX-REQ-015",
        E,
        400,
        "The request is not valid HTTP/1.1 (its request line, a header, Content-Length or "
        "chunked framing), or uses a transfer coding other than chunked.",
    ),
    # --- exchange: envelope, submission, inbox ---
    _c("EPIX-MSG-001", E, 409, "This message id was already used with different bytes."),
    _c("EPIX-MSG-002", E, 422, "The envelope's sender is not the Party that issued the permit."),
    _c("EPIX-MSG-003", E, 422, "Unknown destination Party."),
    _c("EPIX-MSG-004", E, 422, "The envelope's document type does not match the document."),
    _c("EPIX-MSG-005", E, 409, "The message is not leased to you, or its lease expired."),
    _c("EPIX-MSG-006", E, 422, "Sender and destination are the same Party."),
    _c("EPIX-MSG-007", E, 409, "A different permit with this number was already submitted."),
    _c("EPIX-MSG-008", E, 503, "The node could not store the message; nothing was accepted."),
    _c("EPIX-MSG-009", E, 422, "The signed document names other Parties than the envelope."),
    _c(
        "EPIX-MSG-010",
        E,
        422,
        "This Party node carries only its own Party's messages; send it to the destination's node.",
    ),
    _c(
        "EPIX-MSG-011",
        E,
        422,
        "The receiving node does not hold the permit this endorsement is about: deliver the "
        "permit to it first; the sending node sends the endorsement again until the permit is "
        "there (EPIX_OUTBOX_PERMIT_WAIT_SECONDS).",
    ),
    # --- quantities and endorsements ---
    _c("EPIX-QTY-001", E, 422, "Quantity exceeds what remains on the permit line."),
    _c("EPIX-QTY-002", E, 422, "Unit does not match the permit line."),
    _c("EPIX-QTY-003", E, 422, "Unknown permit line."),
    _c("EPIX-QTY-004", E, 422, "Quantity must be a positive number."),
    _c("EPIX-QTY-005", E, 404, "Unknown or expired reservation."),
    _c("EPIX-QTY-006", E, 422, "Port is not a UN/LOCODE."),
    _c("EPIX-QTY-007", E, 422, "A permit line appears more than once in the request."),
    _c("EPIX-QTY-008", E, 409, "The reservation was already confirmed or released."),
    _c("EPIX-QTY-009", E, 422, "The endorsement date is in the future."),
    _c("EPIX-QTY-010", E, 422, "The endorsement date is before the permit is valid."),
    _c(
        "EPIX-QTY-011",
        W,
        200,
        "The issuing Party's ledger did not record the endorsement; the signed document is kept.",
    ),
    _c(
        "EPIX-QTY-012",
        E,
        422,
        "A permitted quantity has more digits than the ledger holds (6 decimals, 9 before).",
    ),
    # --- permit state ---
    _c("EPIX-STATE-001", E, 409, "The permit has expired."),
    _c("EPIX-STATE-002", E, 409, "The permit is not yet valid."),
    _c("EPIX-STATE-003", E, 409, "The permit was cancelled."),
    _c("EPIX-STATE-004", E, 409, "The permit was replaced."),
    _c("EPIX-STATE-005", E, 409, "The permit was already used for a consignment (Art. VI.5)."),
    _c("EPIX-STATE-006", E, 403, "The permit belongs to another Party."),
    _c("EPIX-STATE-007", E, 404, "No such permit (or you may not see it)."),
    _c("EPIX-STATE-008", E, 409, "That status change is not allowed from the permit's state."),
    _c("EPIX-STATE-009", E, 409, "The endorsement refers to other permit bytes (SHA-256 differs)."),
    _c(
        "EPIX-STATE-010",
        E,
        409,
        "The replacing permit is not open (issued, unexpired) or goes to another Party.",
    ),
    # --- delivery, peers, webhooks ---
    _c("EPIX-DLV-001", E, 502, "The peer node could not be reached."),
    _c("EPIX-DLV-002", E, 502, "The peer's receipt did not verify."),
    _c("EPIX-DLV-003", E, 410, "Delivery gave up after the maximum age."),
    _c("EPIX-DLV-004", E, 422, "Webhook URL must be http(s), not this node nor an internal host."),
    _c("EPIX-DLV-005", E, 409, "The outbox lease was lost; another worker owns the row."),
    _c("EPIX-DLV-006", E, 502, "The peer refused the message."),
    _c("EPIX-DLV-007", E, 422, "Unknown webhook event name."),
    _c("EPIX-DLV-008", E, 409, "Only a failed delivery can be resent."),
    _c("EPIX-DLV-009", E, 404, "Unknown outbox row or webhook subscription."),
    _c("EPIX-DLV-010", E, 502, "The peer has no node endpoint in the registry."),
    _c("EPIX-DLV-011", E, 502, "The far end's answer was too large or too slow; cut off."),
    _c("EPIX-DLV-012", E, 502, "The peer's endpoint is plain http; nothing is sent in clear."),
    _c(
        "EPIX-DLV-013",
        E,
        409,
        "The webhook's stored secret does not open with this node's key (EPIX_SECRET_KEY or the "
        "session-secret changed): rotate the secret or subscribe again.",
    ),
    _c(
        "EPIX-DLV-014",
        E,
        502,
        "The importing Party's node does not hold the permit yet (EPIX-MSG-011): the endorsement "
        "is sent again until it does, for EPIX_OUTBOX_PERMIT_WAIT_SECONDS at most.",
    ),
    # --- audit ---
    _c("EPIX-AUDIT-001", E, 500, "The audit chain is broken at this event."),
    _c("EPIX-AUDIT-002", E, 500, "An audit checkpoint signature does not verify."),
    _c(
        "EPIX-AUDIT-003",
        E,
        422,
        "The audit export is not a readable EPIX audit export signed by a trusted node key.",
    ),
    # --- node database ---
    _c(
        "EPIX-DB-001",
        E,
        503,
        "The database was migrated by a newer EPIX version; run that version or restore a backup.",
    ),
    _c(
        "EPIX-DB-002",
        E,
        503,
        "The node's database cannot be reached; nothing was stored. Retry later.",
    ),
    _c(
        "EPIX-DB-003",
        E,
        503,
        "The node's database is saturated (every connection in use, or locked); nothing was "
        "stored. Retry shortly.",
    ),
    _c(
        "EPIX-DB-004",
        E,
        503,
        "The node's database cannot store anything now (disk full or read-only); nothing was "
        "stored. Retry later.",
    ),
)

ERROR_TABLE: dict[str, ErrorCode] = {entry.code: entry for entry in _TABLE}
assert len(ERROR_TABLE) == len(_TABLE), "duplicate code in the error table"


@dataclass(frozen=True, slots=True)
class Finding:
    """One reported problem: a stable code, a human message and where it was found."""

    code: str
    message: str
    location: str | None = None
    line: int | None = None

    def __post_init__(self) -> None:
        if self.code not in ERROR_TABLE:
            raise KeyError(f"{self.code} is not in the EPIX error table")

    @property
    def severity(self) -> Severity:
        return ERROR_TABLE[self.code].severity

    @property
    def http_status(self) -> int:
        return ERROR_TABLE[self.code].http_status

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "message": self.message,
            "location": self.location,
            "line": self.line,
        }


@dataclass(slots=True)
class EpixError(Exception):
    """A refusal: one or more findings, at least one of them an error.

    The HTTP layer turns it into problem+json; the CLI prints it; nothing shows a traceback.
    """

    findings: list[Finding] = field(default_factory=list)
    # Seconds after which trying again may succeed (HTTP ``Retry-After``), when that is known.
    retry_after_seconds: int | None = None

    def __post_init__(self) -> None:
        Exception.__init__(self, "; ".join(f"{f.code}: {f.message}" for f in self.findings))

    @classmethod
    def of(
        cls, code: str, message: str, location: str | None = None, line: int | None = None
    ) -> EpixError:
        return cls([Finding(code, message, location, line)])

    @property
    def http_status(self) -> int:
        statuses = [f.http_status for f in self.findings if f.severity is Severity.ERROR]
        return max(statuses) if statuses else 400


def render_markdown() -> str:
    """The error table as Markdown, for ``docs/errors.md``."""
    lines = ["| code | severity | HTTP | meaning |", "|---|---|---|---|"]
    lines += [
        f"| `{e.code}` | {e.severity.value} | {e.http_status} | {e.meaning} |" for e in _TABLE
    ]
    return "# EPIX error codes\n\n" + "\n".join(lines) + "\n"
