"""A node that follows the Secretariat's published registry.

It fetches the document over HTTP(S) with a conditional GET, accepts it only when it verifies
against the Secretariat certificate it trusts (the pinned one, or the successor it moved to
through signed announcements: ``epix.registry.anchors``) and is newer than what the node
holds, and keeps working from the last good copy (stored in the database) while the source is
unreachable.

A follower holding an API key for the Secretariat's code (EPIX_PEER_API_KEYS, issued by the
source node to a ``peer_node`` user of its Party) sends it, so the Secretariat sees which
followers fetched an anchor announcement; never over plain http off loopback, never logged.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace

import httpx

from epix.auth.principal import SECRETARIAT_PARTY
from epix.db import Database
from epix.db.base import utcnow
from epix.db.trouble import OutageLog
from epix.errors import EpixError, Finding
from epix.outbound import DeadlineExceeded, outbound_client
from epix.registry import repository
from epix.registry.anchors import follower_anchor, record_anchor
from epix.registry.document import MAX_DOCUMENT_BYTES, import_registry, read_registry
from epix.registry.freshness import (
    LAPSED,
    FreshnessPolicy,
    current_policy,
    held_copy_finding,
)
from epix.registry.service import travels_in_clear
from epix.settings import Settings

log = logging.getLogger("epix.registry.follower")


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one refresh did: the version now held, whether it changed, and any warning."""

    version: int
    changed: bool
    warnings: tuple[Finding, ...] = ()


class SourceUnreachable(Exception):
    """The source could not be asked, or did not answer with a document in time."""


def fetch_document(
    client: httpx.Client, url: str, *, etag: str | None = None, api_key: str | None = None
) -> tuple[bytes, str | None] | None:
    """The registry document at ``url`` and its ETag, or None when the source answers that
    ``etag`` is still current. ``api_key`` identifies this follower to the source (the caller
    decides it may travel there). Refuses (EPIX-XML-004) a document over MAX_DOCUMENT_BYTES;
    raises ``SourceUnreachable`` for anything but a 200 or 304, or no complete answer within
    the client's deadline (``epix.outbound.outbound_client``)."""
    headers = {"Accept": "application/xml"}
    if etag:
        headers["If-None-Match"] = etag
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        with client.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return None
            if response.status_code != 200:
                raise SourceUnreachable(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise EpixError.of(
                        "EPIX-XML-004",
                        f"The registry document exceeds {MAX_DOCUMENT_BYTES} bytes.",
                        url,
                    )
            return bytes(body), response.headers.get("ETag")
    except DeadlineExceeded as exc:
        raise SourceUnreachable(str(exc)) from None
    except httpx.HTTPError as exc:
        raise SourceUnreachable(type(exc).__name__) from None


class RegistryFollower:
    def __init__(
        self,
        database: Database,
        *,
        source_url: str,
        anchor_pem: bytes,
        deadline_seconds: float,
        timeout: float = 10.0,
        proxy: str | None = None,
        freshness: FreshnessPolicy | None = None,
        api_key: str | None = None,
    ) -> None:
        self.database = database
        self.source_url = source_url
        self.anchor_pem = anchor_pem
        self.api_key = api_key
        if api_key and travels_in_clear(source_url):
            log.warning(
                "not sending the API key for %s to the registry source %s: plain http off "
                "loopback would carry it in clear; fetching anonymously",
                SECRETARIAT_PARTY,
                source_url,
            )
            self.api_key = None
        # A follower always enforces its copy's expiry; the grace (and clock) are configurable.
        self.freshness = replace(freshness or current_policy(), enforced=True)
        self._expiry_code: str | None = None
        self.client = outbound_client(
            deadline_seconds=deadline_seconds, timeout=timeout, proxy=proxy
        )

    @classmethod
    def from_settings(cls, database: Database, settings: Settings) -> RegistryFollower:
        if not settings.registry_source_url or settings.registry_anchor_path is None:
            raise EpixError.of(
                "EPIX-REG-009",
                "Following a registry needs EPIX_REGISTRY_SOURCE_URL and "
                "EPIX_REGISTRY_ANCHOR_PATH (the pinned Secretariat certificate).",
                "settings",
            )
        return cls(
            database,
            source_url=settings.registry_source_url,
            anchor_pem=settings.registry_anchor_path.read_bytes(),
            deadline_seconds=settings.outbound_deadline_seconds,
            proxy=settings.outbound_proxy,
            freshness=FreshnessPolicy.from_settings(settings),
            api_key=settings.peer_api_keys.get(SECRETARIAT_PARTY),
        )

    def refresh(self) -> RefreshResult:
        """Fetch, verify and import the source's document if it is newer.

        Raises ``EpixError`` when the source serves something unacceptable (EPIX-REG-007
        forged or unsigned, EPIX-REG-008 a rollback, EPIX-XML-*/EPIX-SCHEMA-001 malformed):
        the held copy stays in force. An unreachable source is a warning (EPIX-REG-011) while
        a copy is held, and EPIX-REG-009 when none is. Either way the outcome is recorded
        (``repository.record_source_check``) for monitoring. A copy held past its signed
        expiry adds EPIX-REG-016 (or EPIX-REG-017 past the grace period) to the warnings.
        """
        try:
            result = self._refresh()
        except EpixError as exc:
            self._record_check(exc.findings[0].code)
            self._check_expiry()
            raise
        self._record_check(result.warnings[0].code if result.warnings else None)
        expiry = self._check_expiry()
        if expiry is not None:
            result = replace(result, warnings=(*result.warnings, expiry))
        return result

    def _check_expiry(self) -> Finding | None:
        """The held copy's expiry finding, logged once each time it changes (not at every
        poll): a warning past expiry, an error once signatures are refused, and a note when
        a current copy arrives again."""
        with self.database.unit_of_work() as session:
            finding = held_copy_finding(session, self.freshness)
        code = finding.code if finding else None
        if code != self._expiry_code:
            if finding is None:
                log.info("registry copy is current again (source %s)", self.source_url)
            elif finding.code == LAPSED:
                log.error("%s %s", finding.code, finding.message)
            else:
                log.warning("%s %s", finding.code, finding.message)
            self._expiry_code = code
        return finding

    def _record_check(self, failure_code: str | None) -> None:
        with self.database.unit_of_work() as session:
            repository.record_source_check(
                session, source_url=self.source_url, failure_code=failure_code, now=utcnow()
            )

    def _refresh(self) -> RefreshResult:
        with self.database.unit_of_work() as session:
            latest = repository.latest_document(session)
            held_version = repository.current_version(session)
            etag = latest.source_etag if latest and latest.source_url == self.source_url else None
            held = latest is not None
            anchor = follower_anchor(session, self.anchor_pem)
        try:
            fetched = fetch_document(self.client, self.source_url, etag=etag, api_key=self.api_key)
        except SourceUnreachable as exc:
            if not held:
                raise EpixError.of(
                    "EPIX-REG-009",
                    f"The registry source {self.source_url} is unreachable ({exc}) and no "
                    "copy is held yet.",
                    self.source_url,
                ) from None
            warning = Finding(
                "EPIX-REG-011",
                f"The registry source {self.source_url} is unreachable ({exc}); serving the "
                f"last good copy, version {held_version}.",
                self.source_url,
            )
            log.warning(warning.message)
            return RefreshResult(version=held_version, changed=False, warnings=(warning,))
        if fetched is None:
            return RefreshResult(version=held_version, changed=False)
        content, new_etag = fetched
        verified = read_registry(
            content,
            anchor.anchor_pem,
            pending_next=anchor.pending_next,
            retired=anchor.retired,
        )
        with self.database.unit_of_work() as session:
            outcome = import_registry(session, verified, source_url=self.source_url, etag=new_etag)
            record_anchor(session, verified)
        if outcome.changed:
            log.info("registry updated to version %d from %s", outcome.version, self.source_url)
        return RefreshResult(version=outcome.version, changed=outcome.changed)

    def follow(self, interval_seconds: float, stop: threading.Event) -> None:
        """Refresh every ``interval_seconds`` until ``stop`` is set; refusals are logged.

        Any other failure of one refresh (the database briefly unavailable, say) is logged
        too and the next refresh runs on time: the thread must never end before ``stop``, or
        the node would silently stop learning of new certificates and revocations.
        """
        outage = OutageLog(log, "registry follower", self.database.url)
        while not stop.is_set():
            try:
                self.refresh()
            except EpixError as exc:
                outage.succeeded()
                log.error("registry refresh refused: %s", exc)
            except Exception as exc:
                if not outage.failed(exc):
                    log.exception("registry refresh failed; retrying in %s s", interval_seconds)
            else:
                outage.succeeded()
            stop.wait(interval_seconds)


def start_following(
    database: Database, settings: Settings, stop: threading.Event
) -> threading.Thread | None:
    """Follow the configured registry source in a daemon thread (None when not a follower).

    For ``epix serve``: the first refresh runs at once, then every registry_refresh_seconds.
    """
    if not settings.registry_source_url:
        return None
    follower = RegistryFollower.from_settings(database, settings)
    thread = threading.Thread(
        target=follower.follow,
        args=(settings.registry_refresh_seconds, stop),
        name="epix-registry-follower",
        daemon=True,
    )
    thread.start()
    return thread
