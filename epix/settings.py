"""The one settings object: every knob comes from an ``EPIX_*`` environment variable."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# A web session cookie is an HMAC under this key and the webhook secrets' sealing key is derived
# from it, so a short key can be guessed offline from one cookie: at least 256 bits (the key the
# node generates for itself is 48 URL-safe characters, 288 bits).
SECRET_KEY_MIN_BYTES = 32


class ConfigurationError(Exception):
    """A configuration the node cannot use that is kept in a file rather than an ``EPIX_*``
    variable (the data directory's session key): refused as an invalid setting is, by every
    command (exit status 2), its message naming the file and what to do."""


class NodeMode(StrEnum):
    """A hub keeps many Parties' inboxes; a Party node forwards to peers over HTTPS."""

    HUB = "hub"
    PARTY = "party"


class LogFormatSetting(BaseSettings):
    """``EPIX_LOG_FORMAT`` on its own, a part of ``Settings`` that the command line also reads
    alone: when another setting is invalid, the refusal is still written in this format
    (epix.cli.main)."""

    model_config = SettingsConfigDict(env_prefix="EPIX_", extra="ignore")

    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one line `<time> <level> <logger> <message>` per record; json: one "
        "JSON object per line with time, level, logger, message, and request_id and exception "
        "when there are any (uvicorn's access and error lines too, and everything else `epix "
        "serve` and `epix worker` write), for log collectors. In both, a traceback has the "
        "credentials among the settings replaced by [redacted].",
    )

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_lower_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Settings(LogFormatSetting):
    model_config = SettingsConfigDict(env_prefix="EPIX_", extra="ignore")

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the embedded database, generated demo keys and node keys live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; defaults to SQLite (WAL) in the data directory. "
        "Use postgresql+psycopg://... for production.",
    )
    node_party: str = Field(default="XA", description="ISO 3166 alpha-2 code of this node's Party.")
    node_mode: NodeMode = Field(
        default=NodeMode.HUB,
        description="hub: every Party's inbox on this node; party: forward to peer nodes "
        "(only messages from or for EPIX_NODE_PARTY; others are refused, EPIX-MSG-010).",
    )
    node_base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public base URL of this node; behind a TLS proxy its https:// address "
        "(Secure session cookie, HSTS, and only https:// pages of the node may act for a "
        "logged-in browser).",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key for web session cookies and (via HKDF) for sealing webhook secrets "
        "and naming login throttle rows, "
        f"at least {SECRET_KEY_MIN_BYTES} bytes; generated into the data directory if unset.",
    )
    web_session_max_seconds: int = Field(
        default=12 * 3600,
        ge=1,
        le=7 * 24 * 3600,
        description="Longest a web session lasts from its login, however busy; then the person "
        "logs in again (EPIX-AUTH-009). A session unused for 8 hours ends before that.",
    )
    web_time_zones: dict[str, str] = Field(
        default={},
        description="The time zone (IANA name) of each Party's border posts, as JSON, e.g. "
        '`{"XB": "Europe/Amsterdam"}`: the endorse form of a page without script fills in '
        "today's date there, and says so. A Party not named (one spanning several zones) gets "
        "no date filled in: the officer types it, the form saying the day in UTC. With the "
        "script, the browser's own zone is used.",
    )

    # Bounded resources (guarantee 7).
    max_body_bytes: int = Field(
        default=5 * 1024 * 1024, gt=0, description="Largest accepted request."
    )
    max_xml_depth: int = Field(
        default=64, gt=0, description="Deepest accepted XML element nesting."
    )
    body_grace_seconds: float = Field(
        default=20.0,
        gt=0,
        description="How long a request body may take before the minimum rate applies "
        "(EPIX_BODY_MIN_BYTES_PER_SECOND).",
    )
    body_min_bytes_per_second: int = Field(
        default=500,
        gt=0,
        description="Slowest average a request body may arrive at after the grace: each byte "
        "buys 1/rate seconds (as Apache's mod_reqtimeout MinRate). Slower gets 408 "
        "(EPIX-REQ-011), against clients holding connections by trickling bodies.",
    )
    body_max_seconds: float = Field(
        default=900.0,
        gt=0,
        description="Longest a request body may take in all, however fast it arrives "
        "(10 MiB in 900 s is 11.4 KiB/s, about 93 kbit/s).",
    )
    pipeline_concurrency: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Submissions a web process runs through parse, verify and store at once; "
        "the rest wait in arrival order. Python runs one thread at a time, so more than one "
        "per process only adds lock convoys; scale with --workers instead.",
    )

    # Web logins: failed passwords per user name and client address before a pause.
    login_max_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Logins that did not succeed one user name may have from one client address "
        "within EPIX_LOGIN_FAILURE_WINDOW_SECONDS; further attempts are refused (429, "
        "EPIX-AUTH-010) without checking the password until the oldest one leaves the window. "
        "Counted in the database, so all worker processes share the count.",
    )
    login_failure_window_seconds: int = Field(
        default=900, gt=0, description="The window in which failed logins are counted."
    )
    login_address_max_failures: int = Field(
        default=50,
        ge=1,
        le=100,
        description="Logins that did not succeed from one client address, whatever the user "
        "name, within EPIX_LOGIN_FAILURE_WINDOW_SECONDS; further attempts from there are "
        "refused (429, EPIX-AUTH-010), so trying many user names cannot make the node check "
        "passwords without limit. Successful logins do not count.",
    )
    # Refused API keys and session cookies per client address, so that made-up credentials
    # cannot make the node write audit rows without limit.
    refused_credential_max: int = Field(
        default=30,
        ge=1,
        le=100,
        description="Refused API keys, web sessions or cross-site logins one client address may "
        "present within EPIX_REFUSED_CREDENTIAL_WINDOW_SECONDS, each audited (auth.refused); "
        "beyond that they are answered 429 EPIX-AUTH-011 with Retry-After, and only the first "
        "of such a stretch is audited (auth.throttled). A valid credential from that address "
        "still works.",
    )
    refused_credential_window_seconds: int = Field(
        default=300, gt=0, description="The window in which refused credentials are counted."
    )

    # Endorsements: how long customs reservations hold quantities before they lapse.
    endorsement_reservation_ttl_seconds: int = Field(
        default=24 * 3600, gt=0, description="Default lifetime of a quantity reservation."
    )
    endorsement_reservation_max_ttl_seconds: int = Field(
        default=7 * 24 * 3600, gt=0, description="Longest lifetime a reservation may ask for."
    )
    idempotency_key_hours: int = Field(
        default=24,
        ge=1,
        le=30 * 24,
        description="How long an Idempotency-Key on a customs POST (reserve, confirm, endorse) is "
        "remembered: a retry within it gets the first answer; after it the key may be used again "
        "(1 hour to 30 days).",
    )

    # Inbox and delivery.
    inbox_page_max: int = Field(
        default=500, gt=0, description="Largest inbox page one pull returns."
    )
    inbox_lease_seconds: int = Field(
        default=60, gt=0, description="How long a pulled message stays leased before it reappears."
    )
    outbox_lease_seconds: int = Field(
        default=30, gt=0, description="How long a worker owns a claimed outbox row."
    )
    outbox_give_up_seconds: int = Field(
        default=72 * 3600, gt=0, description="Age after which a delivery is marked failed."
    )
    outbox_permit_wait_seconds: int = Field(
        default=24 * 3600,
        gt=0,
        description="How long an endorsement the importing Party's node refused for not holding "
        "its permit yet (EPIX-MSG-011) is sent again with the outbox's backoff, from the first "
        "such refusal (and never past EPIX_OUTBOX_GIVE_UP_SECONDS); a refusal after it fails "
        "the row with that refusal. Only while the refusal lasts: any other failure is retried "
        "until the row's own give-up time.",
    )
    outbox_base_delay_seconds: float = Field(
        default=1.0, gt=0, description="First retry delay; doubles per attempt, with full jitter."
    )
    outbox_max_delay_seconds: float = Field(
        default=600.0, gt=0, description="Longest delay between two delivery attempts."
    )
    run_worker_in_process: bool = Field(
        default=True, description="Run the outbox worker as a thread inside `epix serve`."
    )
    outbox_batch_size: int = Field(
        default=50,
        gt=0,
        description="Most rows one claim takes (`epix worker --once` claims and delivers them "
        "batch by batch; the running worker claims only as many as it has free slots).",
    )
    outbox_concurrency: int = Field(
        default=4, gt=0, description="Deliveries one worker runs at once."
    )
    outbox_peer_concurrency: int = Field(
        default=2,
        gt=0,
        description="Deliveries to one destination (a peer node, a Party's inbox on this node, "
        "a webhook host) one worker runs at once: the other slots stay free for the other "
        "destinations, so a slow one cannot hold them all.",
    )
    outbox_poll_seconds: float = Field(
        default=1.0, gt=0, description="How long an idle worker waits before looking for due rows."
    )
    outbox_http_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Per-request timeout; keep it well below the lease."
    )
    outbound_deadline_seconds: float = Field(
        default=20.0,
        gt=0,
        description="Longest one outbound HTTP request (to a peer node, a webhook receiver or "
        "the registry source) may take in all: connect, send and the whole answer, however "
        "slowly the far end sends it; keep it below the outbox lease.",
    )
    outbound_proxy: str | None = Field(
        default=None,
        description="HTTP(S) proxy for requests to peer nodes and the registry source, as "
        "http://[user:password@]host:port (environment proxy variables are not read). Webhooks "
        "never use it: their address is judged at the moment of connecting.",
    )
    outbox_circuit_failures: int = Field(
        default=5, gt=0, description="Consecutive failures that open a peer's circuit breaker."
    )
    outbox_circuit_cooldown_seconds: float = Field(
        default=30.0, ge=0, description="How long an open circuit waits before one probe delivery."
    )
    peer_api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='API keys peers issued to this node, as JSON {"XB": "key"} '
        "(EPIX_PEER_API_KEYS).",
    )
    webhook_allow_private_addresses: bool = Field(
        default=False,
        description="Let webhooks call loopback, private, link-local or reserved addresses "
        "(refused by default against SSRF; checked when subscribing and at every delivery on "
        "the address connected to, so webhooks then bypass environment proxies).",
    )
    webhook_replay_window_seconds: int = Field(
        default=300, gt=0, description="How old a webhook signature timestamp receivers accept."
    )

    # Registry follower: fetch the Secretariat-signed registry document from this URL.
    registry_source_url: str | None = Field(
        default=None, description="Follower nodes: URL of the Secretariat's signed registry."
    )
    registry_refresh_seconds: int = Field(
        default=300, gt=0, description="How often a follower fetches the registry."
    )
    registry_anchor_path: Path | None = Field(
        default=None,
        description="The pinned Secretariat certificate (PEM): the key a registry document is "
        "accepted from, and the start of the chain of successors the Secretariat announces "
        "(`epix registry announce-anchor`), which followers move along by themselves.",
    )
    registry_validity_hours: int = Field(
        default=168,
        gt=0,
        description="Secretariat node: how long a published registry document is valid "
        "(its signed `expires`); it is re-signed with a fresh expiry once less than half of "
        "this is left, the next time it is served or exported. A follower holds a document "
        "signed without an expiry to this much time from its issue.",
    )
    registry_expiry_grace_hours: int = Field(
        default=72,
        ge=0,
        description="Follower nodes: how long after the held registry copy's expiry "
        "signatures are still accepted (with warnings); after it they are refused "
        "(EPIX-REG-017) until a current copy is fetched.",
    )
    registry_signing_key_path: Path | None = Field(
        default=None,
        description="Secretariat node only: private key (PEM) that signs the published registry.",
    )
    registry_signing_cert_path: Path | None = Field(
        default=None,
        description="Secretariat node only: certificate (PEM) matching registry_signing_key_path.",
    )

    speciesplus_dir: Path | None = Field(
        default=None,
        description="Directory of Species+ `GET /api/v1/taxon_concepts` answers (*.json) "
        "downloaded with the operator's own token: compliance screening reads their synonyms, "
        "higher taxa and CITES listings beside the bundled ones at start; a malformed file "
        "stops the node (file and entry named).",
    )

    metrics_token: str | None = Field(
        default=None,
        min_length=32,
        description="Bearer token that shows a scrape of /metrics the series naming Parties "
        "(also shown to a node administrator's API key); without either, /metrics has only "
        "series without a Party.",
    )

    audit_checkpoint_every: int = Field(
        default=1000, ge=0, description="Sign an audit checkpoint after this many events."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Lowest level of the node's own log lines (epix serve, epix worker), "
        "written to standard error with time, level and logger.",
    )
    retention_years: int = Field(
        default=5,
        ge=5,  # the design brief's minimum: a purge must never reach a younger record
        description="Audit records are kept at least this long after they expire (at least 5).",
    )

    @field_validator("node_party", mode="before")
    @classmethod
    def _party_code(cls, value: object) -> object:
        """A code that names no Party would make every message to or from this node a
        mismatch; lower case is taken as meant."""
        if isinstance(value, str) and not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("must be an ISO 3166 alpha-2 code, two letters such as XA")
        return value.upper() if isinstance(value, str) else value

    @field_validator("web_time_zones")
    @classmethod
    def _known_zones(cls, value: dict[str, str]) -> dict[str, str]:
        """A zone name the node cannot read would only fail at the border, at the first form."""
        zones: dict[str, str] = {}
        for party, zone in value.items():
            if not re.fullmatch(r"[A-Za-z]{2}", party):
                raise ValueError(f"{party!r} is not a Party code (two letters such as XB)")
            try:
                ZoneInfo(zone)
            except (ValueError, ZoneInfoNotFoundError):
                raise ValueError(
                    f"{zone!r} is not a time zone name such as Europe/Amsterdam"
                ) from None
            zones[party.upper()] = zone
        return zones

    @field_validator("node_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        """QR codes, receipts and the node's registry endpoint carry this URL."""
        _check_http_url(value)
        return value

    @field_validator("data_dir", mode="before")
    @classmethod
    def _data_dir_given(cls, value: object) -> object:
        """An empty value would silently put the database and keys in the working directory."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (unset it for the default, data)")
        return value

    @field_validator(
        "registry_anchor_path",
        "registry_signing_key_path",
        "registry_signing_cert_path",
        "speciesplus_dir",
        mode="before",
    )
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        """``EPIX_REGISTRY_ANCHOR_PATH=`` means no file, not the working directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key")
    @classmethod
    def _secret_key_long_enough(cls, value: str | None) -> str | None:
        """Refused rather than used: a guessable key forges every session, an administrator's
        too, and opens every stored webhook secret. Empty means unset (a generated key)."""
        if not value:
            return None
        if len(value.encode("utf-8")) < SECRET_KEY_MIN_BYTES:
            raise ValueError(
                f"must be at least {SECRET_KEY_MIN_BYTES} bytes (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(48))' makes one), or unset to have the node "
                "generate one into the data directory"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("outbound_deadline_seconds")
    @classmethod
    def _deadline_within_lease(cls, value: float, info: ValidationInfo) -> float:
        """A delivery that may outlast its lease is never started (the worker hands it back),
        so a deadline as long as the lease would stop every delivery to peers and webhooks."""
        lease = info.data.get("outbox_lease_seconds")
        if lease is not None and value >= lease:
            raise ValueError(f"must be below EPIX_OUTBOX_LEASE_SECONDS ({lease})")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """An unparsable URL is refused at start: met when the engine is made, it ended the
        command with a traceback. The message never repeats the value, which carries the
        database's password. Empty means unset (SQLite in the data directory)."""
        if not value:
            return None
        try:
            make_url(value)
        except (ArgumentError, ValueError):  # ValueError: a port that is not a number
            raise ValueError(
                "is not a SQLAlchemy URL (e.g. postgresql+psycopg://user:password@host/database)"
            ) from None
        return value

    @field_validator("outbound_proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        """An unusable proxy is refused at start, not at the first delivery; the message never
        repeats the value, which may carry the proxy's password."""
        if not value:
            return None
        _check_http_url(value)
        return value

    @field_validator("registry_source_url")
    @classmethod
    def _registry_source(cls, value: str | None) -> str | None:
        """Refused at start, not at the first fetch. A user name or password in it would be
        written into the log and into the audit trail (each registry update records its
        source) for years: a follower identifies itself with EPIX_PEER_API_KEYS' CITES key."""
        if not value:
            return None
        parts = _check_http_url(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "must not carry a user name or password (it is logged and audited); give the "
                "registry's API key as EPIX_PEER_API_KEYS' CITES entry"
            )
        return value

    @cached_property
    def credentials(self) -> frozenset[str]:
        """The credentials among the settings, as text may carry them (a URL's password as
        written and decoded), which the log takes out of tracebacks in every format
        (epix.cli.logs.without_credentials)."""
        found = {self.secret_key, self.metrics_token, *self.peer_api_keys.values()}
        for url in (self.database_url, self.outbound_proxy):
            password = urlsplit(url).password if url else None
            if password:
                found |= {password, unquote(password)}
        return frozenset(value for value in found if value)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'epix.sqlite3').resolve()}"


def _check_http_url(value: str) -> SplitResult:
    """``value``'s parts, or ValueError unless it is an http(s) URL with a host and, if any, a
    valid port; the message never repeats the value, which may carry a password."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    return parts


# Read by the test suite (tests/conftest.py and fuzzing tests), never by the node.
TEST_SUITE_VARIABLES = frozenset(
    {
        "EPIX_TEST_POSTGRES_URL",
        "EPIX_REQUIRE_REAL_PARTS",
        "EPIX_FUZZ_EXAMPLES",
        "EPIX_PROPERTY_EXAMPLES",
    }
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line for each ``EPIX_*`` variable that is no setting (a typo would otherwise leave
    the setting at its default unnoticed: a node on an empty SQLite database instead of
    PostgreSQL), naming the setting it most likely meant."""
    known = sorted(f"EPIX_{name.upper()}" for name in Settings.model_fields)
    lines = []
    for name in sorted(environ):
        if not name.startswith("EPIX_") or name in known or name in TEST_SUITE_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        lines.append(f"{name} is not an EPIX setting{hint}; it is ignored.")
    return lines


@lru_cache
def get_settings() -> Settings:
    return Settings()
