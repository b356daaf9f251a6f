"""A follower node against a real HTTP source on 127.0.0.1: verify, monotonic, last good copy."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from epix.api.app import create_app
from epix.db import Database
from epix.db.base import utcnow
from epix.delivery.peers import RegistryReceiptVerifier
from epix.errors import EpixError
from epix.registry import repository, service
from epix.registry.document import publish
from epix.registry.follower import RegistryFollower, start_following
from epix.registry.freshness import FreshnessPolicy, configure_freshness
from epix.registry.trust import RegistryTrustStore
from epix.settings import Settings
from epix.signatures import sign_document
from epix.xml.namespaces import DSIG
from tests.pki import Identity
from tests.registry.conftest import SECRETARIAT, WEEK, ec_identity, populate


class Source:
    """What the fake Secretariat serves, and what it was asked."""

    def __init__(self) -> None:
        self.body = b""
        self.etag = '"v0"'
        self.requests: list[str | None] = []


@pytest.fixture
def source() -> Iterator[tuple[Source, str, ThreadingHTTPServer]]:
    state = Source()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.headers.get("If-None-Match"))
            if self.headers.get("If-None-Match") == state.etag:
                self.send_response(304)
                self.send_header("ETag", state.etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("ETag", state.etag)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/registry"
    try:
        yield state, url, server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def secretariat_database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'secretariat.sqlite3'}")
    database.migrate()
    return database


def published(database: Database, secretariat: Identity) -> bytes:
    with database.unit_of_work() as session:
        return publish(session, secretariat.key_pem, secretariat.cert_pem, validity=WEEK).content


def test_follower_imports_verifies_uses_etag_and_survives_the_source_going_down(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    state, url, server = source
    with secretariat_database.unit_of_work() as session:
        populated = populate(session)
    state.body, state.etag = published(secretariat_database, secretariat_identity), '"v7"'
    follower = RegistryFollower(
        database, source_url=url, anchor_pem=secretariat_identity.cert_pem, deadline_seconds=5
    )

    first = follower.refresh()
    assert (first.version, first.changed, first.warnings) == (7, True, ())
    unchanged = follower.refresh()
    assert (unchanged.version, unchanged.changed) == (7, False)
    assert state.requests == [None, '"v7"']  # the second fetch was conditional, answered 304

    with secretariat_database.unit_of_work() as session:
        service.revoke_certificate(
            session,
            fingerprint=populated.xa_ma_identity.fingerprint,
            reason="key compromise",
            actor=SECRETARIAT,
        )
    state.body, state.etag = published(secretariat_database, secretariat_identity), '"v8"'
    assert follower.refresh().version == 8
    with database.unit_of_work() as session:
        (entry,) = RegistryTrustStore(session).candidates("XA", "management_authority")
        assert entry.revocation_reason == "key compromise"

    server.shutdown()
    server.server_close()
    down = follower.refresh()
    assert (down.version, down.changed) == (8, False)
    assert [w.code for w in down.warnings] == ["EPIX-REG-011"]
    with database.unit_of_work() as session:
        assert repository.latest_document(session).version == 8  # type: ignore[union-attr]
        assert RegistryTrustStore(session).candidates("XB", "management_authority")


def test_follower_refuses_forged_and_older_documents_and_keeps_its_copy(
    sqlite_database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    state, url, _server = source
    with secretariat_database.unit_of_work() as session:
        populate(session)
    old = published(secretariat_database, secretariat_identity)
    with secretariat_database.unit_of_work() as session:
        service.set_endpoint(session, party="XA", url="https://xa.example", actor=SECRETARIAT)
    new = published(secretariat_database, secretariat_identity)
    follower = RegistryFollower(
        sqlite_database,
        source_url=url,
        anchor_pem=secretariat_identity.cert_pem,
        deadline_seconds=5,
    )
    state.body, state.etag = new, '"new"'
    assert follower.refresh().version == 8

    root = etree.fromstring(new)
    root.remove(root.find(f"{{{DSIG}}}Signature"))
    root.set("version", "9")
    attacker = ec_identity("Impostor", party="CH")
    forged = sign_document(etree.tostring(root), attacker.key_pem, attacker.cert_pem)
    for body, etag, code in [
        (forged, '"forged"', "EPIX-REG-007"),
        (new.replace(b'version="8"', b'version="9"'), '"bumped"', "EPIX-REG-007"),
        (old, '"old"', "EPIX-REG-008"),
    ]:
        state.body, state.etag = body, etag
        with pytest.raises(EpixError) as exc:
            follower.refresh()
        assert exc.value.findings[0].code == code
    with sqlite_database.unit_of_work() as session:
        assert repository.current_version(session) == 8
        assert service.endpoint_for(session, "XA") == "https://xa.example"


def test_follower_without_a_copy_reports_no_registry_when_the_source_is_down(
    sqlite_database: Database, secretariat_identity: Identity
) -> None:
    follower = RegistryFollower(
        sqlite_database,
        source_url="http://127.0.0.1:9/v1/registry",
        anchor_pem=secretariat_identity.cert_pem,
        deadline_seconds=5,
    )
    with pytest.raises(EpixError) as exc:
        follower.refresh()
    assert [f.code for f in exc.value.findings] == ["EPIX-REG-009"]


def test_start_following_refreshes_in_the_background_until_stopped(
    sqlite_database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
    tmp_path: Path,
) -> None:
    state, url, _server = source
    state.body = published(secretariat_database, secretariat_identity)
    anchor = tmp_path / "anchor.pem"
    anchor.write_bytes(secretariat_identity.cert_pem)
    assert start_following(sqlite_database, Settings(data_dir=tmp_path), threading.Event()) is None
    settings = Settings(
        data_dir=tmp_path,
        registry_source_url=url,
        registry_anchor_path=anchor,
        registry_refresh_seconds=3600,
    )
    stop = threading.Event()
    thread = start_following(sqlite_database, settings, stop)
    assert thread is not None
    deadline = time.monotonic() + 10
    while not state.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    with sqlite_database.unit_of_work() as session:
        assert repository.latest_document(session) is not None


def test_an_unexpected_failure_of_one_refresh_does_not_end_following(
    sqlite_database: Database,
    secretariat_identity: Identity,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database that is briefly unavailable (or any other surprise) costs one refresh; the
    follower thread keeps going, or the node would silently stop learning of revocations."""
    follower = RegistryFollower(
        sqlite_database,
        source_url="http://127.0.0.1:9/v1/registry",
        anchor_pem=secretariat_identity.cert_pem,
        deadline_seconds=5,
    )
    stop = threading.Event()
    calls: list[int] = []

    def refresh() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        stop.set()

    monkeypatch.setattr(follower, "refresh", refresh)
    thread = threading.Thread(target=follower.follow, args=(0.01, stop), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert calls == [0, 1]


def test_every_web_process_sees_how_the_followers_last_check_went(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
    tmp_path: Path,
) -> None:
    """The follower runs in one process; /metrics reads its last check from the database."""
    state, url, server = source
    with secretariat_database.unit_of_work() as session:
        populate(session)
    state.body, state.etag = published(secretariat_database, secretariat_identity), '"v7"'
    follower = RegistryFollower(
        database, source_url=url, anchor_pem=secretariat_identity.cert_pem, deadline_seconds=5
    )
    settings = Settings(data_dir=tmp_path / "data", registry_source_url=url)
    client = TestClient(create_app(settings, database))

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(client.get("/metrics").text)
            for sample in family.samples
        }

    assert ("epix_registry_source_check_ok", (("code", ""),)) not in scraped()  # not yet
    follower.refresh()
    follower.refresh()  # 304: the source confirms the copy again
    fine = scraped()
    assert fine[("epix_registry_following", ())] == 1
    assert fine[("epix_registry_version", ())] == 7
    assert fine[("epix_registry_source_check_ok", (("code", ""),))] == 1
    assert 0 <= fine[("epix_registry_copy_confirmed_age_seconds", ())] < 60
    with database.read() as session:
        confirmed = repository.source_check(session).confirmed_at  # type: ignore[union-attr]

    server.shutdown()
    server.server_close()
    follower.refresh()
    down = scraped()
    assert down[("epix_registry_source_check_ok", (("code", "EPIX-REG-011"),))] == 0
    assert ("epix_registry_source_check_ok", (("code", ""),)) not in down
    assert 0 <= down[("epix_registry_source_check_age_seconds", ())] < 60
    with database.read() as session:
        check = repository.source_check(session)
        assert check is not None and check.confirmed_at == confirmed < check.checked_at


@pytest.fixture
def clock() -> Iterator[list[datetime]]:
    """An injectable clock for the follower and every trust store: ``clock[0]`` is now."""
    moment = [utcnow()]
    configure_freshness(FreshnessPolicy(enforced=True, grace=GRACE, clock=lambda: moment[0]))
    try:
        yield moment
    finally:
        configure_freshness(None)


GRACE = timedelta(hours=72)


def published_at(database: Database, secretariat: Identity, moment: datetime) -> bytes:
    with database.unit_of_work() as session:
        return publish(
            session, secretariat.key_pem, secretariat.cert_pem, validity=WEEK, now=moment
        ).content


def test_a_frozen_source_is_reported_then_refused_until_a_current_registry_arrives(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
    clock: list[datetime],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A source that keeps serving one signed version (a freeze attack, or a Secretariat that
    stopped publishing) is confirmed by every 304, yet past the signed expiry the follower
    warns once (EPIX-REG-016) and past the grace period no signature is verified
    (EPIX-REG-017); a re-signed registry from the source ends it."""
    state, url, _ = source
    start = clock[0]
    with secretariat_database.unit_of_work() as session:
        populate(session)
    state.body, state.etag = published_at(secretariat_database, secretariat_identity, start), '"a"'
    follower = RegistryFollower(
        database, source_url=url, anchor_pem=secretariat_identity.cert_pem, deadline_seconds=5
    )
    assert follower.refresh().warnings == ()

    clock[0] = start + WEEK + timedelta(seconds=1)
    caplog.clear()  # the first refresh's info line, captured when other tests set INFO
    with caplog.at_level(logging.WARNING, logger="epix.registry.follower"):
        expired = [follower.refresh(), follower.refresh()]  # both answered 304 by the source
    assert [[w.code for w in r.warnings] for r in expired] == [["EPIX-REG-016"]] * 2
    assert [r.getMessage()[:12] for r in caplog.records] == ["EPIX-REG-016"]  # logged once
    with database.read() as session:
        assert RegistryTrustStore(session).candidates("XA", "management_authority")

    clock[0] = start + WEEK + GRACE + timedelta(seconds=1)
    assert [w.code for w in follower.refresh().warnings] == ["EPIX-REG-017"]
    with database.read() as session, pytest.raises(EpixError) as refused:
        RegistryTrustStore(session)
    assert refused.value.findings[0].code == "EPIX-REG-017"
    assert refused.value.http_status == 503

    renewed = published_at(secretariat_database, secretariat_identity, clock[0])
    state.body, state.etag = renewed, '"b"'
    current = follower.refresh()
    assert (current.version, current.changed, current.warnings) == (8, True, ())
    with database.read() as session:
        assert RegistryTrustStore(session).candidates("XA", "management_authority")


def test_readyz_and_metrics_say_when_the_registry_copy_has_expired(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
    tmp_path: Path,
) -> None:
    """/readyz stays ready within the grace period but names the expiry, and is not ready
    after it; /metrics shows the seconds left (negative once past)."""
    state, url, _ = source
    with secretariat_database.unit_of_work() as session:
        populate(session)
    issued = utcnow() - WEEK - timedelta(hours=1)  # expired an hour ago, within the grace
    state.body = published_at(secretariat_database, secretariat_identity, issued)
    follower = RegistryFollower(
        database, source_url=url, anchor_pem=secretariat_identity.cert_pem, deadline_seconds=5
    )
    follower.refresh()
    settings = Settings(data_dir=tmp_path / "data", registry_source_url=url)
    client = TestClient(create_app(settings, database))

    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["registry"].startswith("EPIX-REG-016: ")
    (family,) = [
        f
        for f in text_string_to_metric_families(client.get("/metrics").text)
        if f.name == "epix_registry_copy_expires_in_seconds"
    ]
    assert -3660 < family.samples[0].value < -3500

    with secretariat_database.unit_of_work() as session:  # a change: a new version to sign
        service.add_party(session, code="XC", name="Thirdland", actor=SECRETARIAT)
    state.body, state.etag = (
        published_at(secretariat_database, secretariat_identity, issued - GRACE),
        '"b"',
    )
    assert follower.refresh().changed  # a newer version, expired longer ago than the grace
    lapsed = client.get("/readyz")
    assert lapsed.status_code == 503
    assert lapsed.json()["checks"]["registry"].startswith("EPIX-REG-017: ")


def test_a_peer_receipt_is_not_accepted_while_the_registry_copy_has_lapsed(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
    clock: list[datetime],
) -> None:
    """The delivery worker's receipt check gets EPIX-REG-017 as a finding (the delivery is
    retried later), not an exception out of the worker."""
    state, url, _ = source
    with secretariat_database.unit_of_work() as session:
        populate(session)
    state.body = published_at(secretariat_database, secretariat_identity, clock[0])
    RegistryFollower(
        database, source_url=url, anchor_pem=secretariat_identity.cert_pem, deadline_seconds=5
    ).refresh()
    clock[0] += WEEK + GRACE + timedelta(seconds=1)
    with database.read() as session:
        findings = RegistryReceiptVerifier().verify(
            session, peer_party="XB", message_id="m-1", receipt=b"<Receipt/>"
        )
    assert [f.code for f in findings] == ["EPIX-REG-017"]


def test_a_source_etag_too_long_to_keep_does_not_stop_the_import(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    """The ETag is kept for the next conditional fetch in a column of 200 characters: a longer
    one (HTTP sets no limit) failed the import on PostgreSQL at every refresh, so the follower
    never took a newer registry (revocations included). Such an ETag is now not kept."""
    state, url, _server = source
    with secretariat_database.unit_of_work() as session:
        populate(session)
    state.body, state.etag = published(secretariat_database, secretariat_identity), f'"{"e" * 300}"'
    follower = RegistryFollower(
        database, source_url=url, anchor_pem=secretariat_identity.cert_pem, deadline_seconds=5
    )
    first = follower.refresh()
    assert (first.version, first.changed) == (7, True)
    again = follower.refresh()
    assert (again.version, again.changed) == (7, False)
    assert state.requests == [None, None]  # without a kept ETag, both fetches are plain GETs
