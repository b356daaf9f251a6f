"""Rotating the Secretariat's registry signing certificate: a real Secretariat database and a
follower fetching over HTTP on 127.0.0.1 move from the pinned anchor to its announced successor
without anyone touching the follower's pinned file."""

from __future__ import annotations

import base64
import time
from datetime import timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from lxml import etree
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.db import Database
from epix.errors import EpixError
from epix.registry import repository
from epix.registry.anchors import announce_next_anchor
from epix.registry.document import publish, read_registry, render_announcement
from epix.registry.follower import RegistryFollower
from epix.settings import Settings
from epix.signatures import sign_document
from epix.xml.namespaces import EPIX_REGISTRY
from tests.pki import Identity, garbled_extension_certificate, make_certificate, make_key
from tests.registry.conftest import MA_USER, SECRETARIAT, WEEK, ec_identity, now, populate
from tests.registry.test_follower import Source, published, secretariat_database, source

__all__ = ["secretariat_database", "source"]  # fixtures shared with test_follower


def announce(database: Database, successor: Identity, current: Identity) -> None:
    with database.unit_of_work() as session:
        announce_next_anchor(
            session, successor.cert_pem, current.key_pem, current.cert_pem, actor=SECRETARIAT
        )


def follower_of(database: Database, url: str, pinned: Identity) -> RegistryFollower:
    return RegistryFollower(
        database, source_url=url, anchor_pem=pinned.cert_pem, deadline_seconds=5
    )


def serve(state: Source, body: bytes, tag: str) -> None:
    state.body, state.etag = body, f'"{tag}"'


def refused_codes(follower: RegistryFollower) -> list[str]:
    with pytest.raises(EpixError) as refused:
        follower.refresh()
    return [finding.code for finding in refused.value.findings]


def audit_actions(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return list(session.scalars(select(AuditEvent.action)))


def test_rotation_end_to_end_and_the_old_key_is_refused_afterwards(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    state, url, _ = source
    old, new = secretariat_identity, ec_identity("CITES Secretariat 2027 (TEST)", party="CH")
    with secretariat_database.unit_of_work() as session:
        populate(session)
    follower = follower_of(database, url, old)
    serve(state, published(secretariat_database, old), "v1")
    assert follower.refresh().changed

    announce(secretariat_database, new, old)
    serve(state, published(secretariat_database, old), "v2")  # still signed by the old key
    assert follower.refresh().changed
    with database.unit_of_work() as session:
        states = {row.fingerprint: row.state for row in repository.anchors(session)}
    assert states == {old.fingerprint: "trusted", new.fingerprint: "next"}
    assert "registry.anchor.next" in audit_actions(database)

    switched = published(secretariat_database, new)  # the Secretariat switches keys
    serve(state, switched, "v3")
    result = follower.refresh()
    assert result.changed
    with database.unit_of_work() as session:
        states = {row.fingerprint: row.state for row in repository.anchors(session)}
        version = repository.current_version(session)
    assert states == {old.fingerprint: "retired", new.fingerprint: "trusted"}
    assert "registry.anchor.rotate" in audit_actions(database)

    # A stolen old key cannot roll the follower back, even with a newer version number.
    with secretariat_database.unit_of_work() as session:
        state_row = repository.lock_state(session)
        state_row.version += 5
    stolen = forged_document(secretariat_database, old, version=version + 10)
    serve(state, stolen, "stolen")
    assert refused_codes(follower)[0] == "EPIX-REG-007"
    with database.unit_of_work() as session:
        assert repository.current_version(session) == version


def forged_document(
    database: Database, signer: Identity, *, version: int, without_links: bool = False
) -> bytes:
    """The Secretariat's current registry, renumbered and signed by ``signer`` (no checks),
    without its chain of announcements if ``without_links``."""
    with database.unit_of_work() as session:
        latest = repository.latest_document(session)
        assert latest is not None
        root = etree.fromstring(latest.content)
    for signature in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        root.remove(signature)
    for link in root.findall(f"{{{EPIX_REGISTRY}}}AnchorLink") if without_links else []:
        root.remove(link)
    root.set("version", str(version))
    return sign_document(etree.tostring(root), signer.key_pem, signer.cert_pem)


def test_a_fresh_follower_bootstraps_from_the_old_pinned_file_through_the_chain(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    state, url, _ = source
    first, second = secretariat_identity, ec_identity("CITES Secretariat B (TEST)", party="CH")
    third = ec_identity("CITES Secretariat C (TEST)", party="CH")
    with secretariat_database.unit_of_work() as session:
        populate(session)
    announce(secretariat_database, second, first)
    published(secretariat_database, first)
    announce(secretariat_database, third, second)
    serve(state, published(secretariat_database, third), "v9")  # two rotations later

    follower = follower_of(database, url, first)  # installed from the original anchor file
    assert follower.refresh().changed
    with database.unit_of_work() as session:
        states = {row.fingerprint: row.state for row in repository.anchors(session)}
    assert states == {
        first.fingerprint: "retired",
        second.fingerprint: "retired",
        third.fingerprint: "trusted",
    }
    # The pinned file is not trusted any more: a document its key signs is refused.
    serve(state, forged_document(secretariat_database, first, version=99), "old")
    assert refused_codes(follower)[0] == "EPIX-REG-007"


def test_a_forged_announcement_is_ignored_and_its_key_refused(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    state, url, _ = source
    attacker = ec_identity("Not the Secretariat (TEST)", party="CH")
    with secretariat_database.unit_of_work() as session:
        populate(session)
    follower = follower_of(database, url, secretariat_identity)
    serve(state, published(secretariat_database, secretariat_identity), "v1")
    follower.refresh()

    # The attacker announces itself, signed with its own key, inside its own document...
    link = sign_document(
        render_announcement(attacker.certificate, now()), attacker.key_pem, attacker.cert_pem
    )
    serve(state, forged_with_link(secretariat_database, attacker, link, version=50), "a")
    assert refused_codes(follower)[0] == "EPIX-REG-007"
    # ...or slipped into a document the real anchor signs (the link itself is not its).
    with secretariat_database.unit_of_work() as session:
        repository.lock_state(session).version += 1
    genuine = forged_with_link(secretariat_database, secretariat_identity, link, version=60)
    serve(state, genuine, "b")
    assert follower.refresh().changed
    with database.unit_of_work() as session:
        states = {row.fingerprint: row.state for row in repository.anchors(session)}
    assert states == {secretariat_identity.fingerprint: "trusted"}
    serve(state, forged_with_link(secretariat_database, attacker, link, version=70), "c")
    assert refused_codes(follower)[0] == "EPIX-REG-007"


def forged_with_link(database: Database, signer: Identity, link: bytes, *, version: int) -> bytes:
    with database.unit_of_work() as session:
        latest = repository.latest_document(session)
        assert latest is not None
        root = etree.fromstring(latest.content)
    for signature in root.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        root.remove(signature)
    root.set("version", str(version))
    etree.SubElement(root, f"{{{EPIX_REGISTRY}}}AnchorLink").text = base64.b64encode(link).decode()
    return sign_document(etree.tostring(root), signer.key_pem, signer.cert_pem)


def test_the_secretariat_signs_only_with_the_chain_head(
    secretariat_database: Database, secretariat_identity: Identity
) -> None:
    old, new = secretariat_identity, ec_identity("CITES Secretariat next (TEST)", party="CH")
    stranger = ec_identity("Some other key (TEST)", party="CH")
    announce(secretariat_database, new, old)
    with (
        secretariat_database.unit_of_work() as session,
        pytest.raises(EpixError, match="EPIX-REG-019"),
    ):
        publish(session, stranger.key_pem, stranger.cert_pem, validity=WEEK)
    # Both the announcing and the announced certificate may sign; the document verifies
    # against the old anchor and names the new one.
    content = published(secretariat_database, old)
    verified = read_registry(content, old.cert_pem)
    assert verified.announced_next == new.cert_pem
    assert read_registry(published(secretariat_database, new), old.cert_pem).passed


@pytest.mark.parametrize(
    "problem", ["ca", "expired", "same-key", "current", "private-key", "garbled"]
)
def test_an_unacceptable_next_anchor_is_refused_at_announcement(
    secretariat_database: Database, secretariat_identity: Identity, problem: str
) -> None:
    current = secretariat_identity
    if problem == "ca":
        key = make_key("ec", 256)
        pem = make_certificate(key.public_key(), key, "CA (TEST)", ca=True).public_bytes(
            serialization.Encoding.PEM
        )
    elif problem == "expired":
        pem = ec_identity(
            "Old (TEST)", party="CH", not_before=now() - WEEK * 2, not_after=now() - WEEK
        ).cert_pem
    elif problem == "same-key":
        key = serialization.load_pem_private_key(current.key_pem, password=None)
        pem = make_certificate(
            key.public_key(),  # type: ignore[arg-type]
            key,  # type: ignore[arg-type]
            "Same key (TEST)",
        ).public_bytes(serialization.Encoding.PEM)
    elif problem == "current":
        pem = current.cert_pem
    elif problem == "garbled":  # its extensions cannot be read: was a ValueError, no code
        pem = garbled_extension_certificate().public_bytes(serialization.Encoding.PEM)
    else:
        pem = current.key_pem + current.cert_pem
    with secretariat_database.unit_of_work() as session:
        with pytest.raises(EpixError) as refused:
            announce_next_anchor(session, pem, current.key_pem, current.cert_pem, actor=SECRETARIAT)
        assert not repository.anchor_links(session)
    expected = "EPIX-REG-014" if problem == "private-key" else "EPIX-REG-018"
    assert refused.value.findings[0].code == expected


def test_announce_anchor_from_the_command_line(
    tmp_path: Path, secretariat_identity: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from epix.cli.main import cli
    from epix.settings import get_settings

    database = Database(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    database.migrate()
    new = ec_identity("CITES Secretariat CLI next (TEST)", party="CH")
    paths = {}
    for name, data in {
        "key": secretariat_identity.key_pem,
        "cert": secretariat_identity.cert_pem,
        "next": new.cert_pem,
    }.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", database.url)
    monkeypatch.setenv("EPIX_REGISTRY_SIGNING_KEY_PATH", str(paths["key"]))
    monkeypatch.setenv("EPIX_REGISTRY_SIGNING_CERT_PATH", str(paths["cert"]))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli, ["registry", "announce-anchor", "--cert", str(paths["next"])]
        )
        assert result.exit_code == 0, result.output
        assert new.fingerprint in result.output
        refused = CliRunner().invoke(
            cli, ["registry", "announce-anchor", "--cert", str(paths["cert"])]
        )
        assert refused.exit_code != 0
        assert "EPIX-REG-018" in refused.output
    finally:
        get_settings.cache_clear()
    with database.unit_of_work() as session:
        assert [link.next_fingerprint for link in repository.anchor_links(session)] == [
            new.fingerprint
        ]
    database.dispose()


def test_the_remembered_successor_is_accepted_without_the_chain_in_the_document(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
) -> None:
    state, url, _ = source
    old, new = secretariat_identity, ec_identity("CITES Secretariat remembered (TEST)", party="CH")
    with secretariat_database.unit_of_work() as session:
        populate(session)
    announce(secretariat_database, new, old)
    serve(state, published(secretariat_database, old), "v1")
    follower = follower_of(database, url, old)
    follower.refresh()  # learns of the successor
    bare = forged_document(secretariat_database, new, version=40, without_links=True)
    with pytest.raises(EpixError, match="EPIX-REG-007"):
        read_registry(bare, old.cert_pem)  # a fresh node cannot place this signer
    serve(state, bare, "bare")
    assert follower.refresh().version == 40


def test_after_the_switch_the_old_certificate_may_not_sign_nor_announce(
    secretariat_database: Database, secretariat_identity: Identity
) -> None:
    old, new = secretariat_identity, ec_identity("CITES Secretariat switched (TEST)", party="CH")
    spare = ec_identity("CITES Secretariat spare (TEST)", party="CH")
    announce(secretariat_database, spare, old)
    announce(secretariat_database, new, old)  # replaces the announcement of spare
    with secretariat_database.unit_of_work() as session:
        assert [link.next_fingerprint for link in repository.anchor_links(session)] == [
            new.fingerprint
        ]
    published(secretariat_database, old)
    published(secretariat_database, new)  # the switch
    with (
        secretariat_database.unit_of_work() as session,
        pytest.raises(EpixError, match="EPIX-REG-019"),
    ):
        publish(session, old.key_pem, old.cert_pem, validity=WEEK)
    with pytest.raises(EpixError, match="EPIX-REG-019"):
        announce(secretariat_database, spare, old)
    with (
        pytest.raises(EpixError, match="EPIX-AUTH-004"),
        secretariat_database.unit_of_work() as session,
    ):
        announce_next_anchor(session, spare.cert_pem, new.key_pem, new.cert_pem, actor=MA_USER)
    assert "registry.anchor.announce" in audit_actions(secretariat_database)


def test_a_hostile_link_is_a_refusal_not_a_crash(
    secretariat_database: Database, secretariat_identity: Identity
) -> None:
    attacker = ec_identity("Hostile (TEST)", party="CH")
    link = (
        f'<AnchorAnnouncement xmlns="{EPIX_REGISTRY}" announcedAt="9999-12-31T23:59:59-14:00">'
        "<Certificate>AA==</Certificate></AnchorAnnouncement>"
    ).encode()
    published(secretariat_database, secretariat_identity)
    hostile = forged_with_link(secretariat_database, attacker, link, version=5)
    with pytest.raises(EpixError, match="EPIX-REG-007"):
        read_registry(hostile, secretariat_identity.cert_pem)


def _operator_view(
    database: Database, url: str, pinned: Identity, tmp_path: Path
) -> tuple[dict[tuple[str, tuple[tuple[str, str], ...]], float], httpx.Response]:
    """What an operator of the follower sees: /metrics samples and /readyz."""
    anchor_path = tmp_path / "anchor.pem"
    anchor_path.write_bytes(pinned.cert_pem)
    settings = Settings(
        data_dir=tmp_path / "data", registry_source_url=url, registry_anchor_path=anchor_path
    )
    client = TestClient(create_app(settings, database))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    return samples, client.get("/readyz")


def _anchor_series(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        key: value for key, value in samples.items() if key[0].startswith("epix_registry_anchor")
    }


def test_operators_see_the_anchor_its_successor_and_a_successor_the_follower_cannot_reach(
    database: Database,
    secretariat_database: Database,
    secretariat_identity: Identity,
    source: tuple[Source, str, ThreadingHTTPServer],
    tmp_path: Path,
) -> None:
    """The rotation state lived only in registry_anchors: /metrics now shows the anchor, the
    announced successor and how long each lasts, and /readyz is not ready (EPIX-REG-021)
    when the source's document does not lead to the successor it was told of."""
    state, url, _ = source
    old, new = secretariat_identity, ec_identity("CITES Secretariat 2028 (TEST)", party="CH")
    with secretariat_database.unit_of_work() as session:
        populate(session)
    follower = follower_of(database, url, old)
    serve(state, published(secretariat_database, old), "v1")
    follower.refresh()
    samples, ready = _operator_view(database, url, old, tmp_path)
    assert ready.status_code == 200 and ready.json()["checks"]["registry_anchor"] == "ok"
    left = (old.certificate.not_valid_after_utc - now()).total_seconds()
    series = _anchor_series(samples)
    assert (
        series.pop(
            ("epix_registry_anchor", (("fingerprint", old.fingerprint), ("state", "trusted")))
        )
        == 1
    )
    assert (
        left - 60
        < series.pop(("epix_registry_anchor_expires_in_seconds", (("state", "trusted"),)))
        <= left + 1
    )
    assert series == {}  # no successor announced yet

    announce(secretariat_database, new, old)
    serve(state, published(secretariat_database, old), "v2")
    follower.refresh()
    samples, ready = _operator_view(database, url, old, tmp_path)
    series = _anchor_series(samples)
    assert (
        series[("epix_registry_anchor", (("fingerprint", new.fingerprint), ("state", "next")))] == 1
    )
    assert series[("epix_registry_anchor_expires_in_seconds", (("state", "next"),))] > 0
    assert 0 <= series[("epix_registry_anchor_next_known_age_seconds", ())] < 60
    assert ready.status_code == 200

    # The source now serves a registry signed by a key the follower was never told of.
    stranger = ec_identity("Not announced (TEST)", party="CH")
    serve(state, forged_document(secretariat_database, stranger, version=50), "x")
    assert refused_codes(follower)[0] == "EPIX-REG-007"
    _, stuck = _operator_view(database, url, old, tmp_path)
    assert stuck.status_code == 503
    check = stuck.json()["checks"]["registry_anchor"]
    assert check.startswith(
        f"EPIX-REG-021: The source's registry document verifies neither "
        f"against the anchor {old.fingerprint} nor through the announced "
        f"successor {new.fingerprint}"
    ), check
    assert stuck.json()["checks"]["registry"] == "ok"  # the copy held is still current

    # The Secretariat switches to the announced successor: the follower moves and is ready.
    serve(state, published(secretariat_database, new), "v3")
    follower.refresh()
    samples, moved = _operator_view(database, url, old, tmp_path)
    assert moved.status_code == 200 and moved.json()["checks"]["registry_anchor"] == "ok"
    assert set(_anchor_series(samples)) == {
        ("epix_registry_anchor", (("fingerprint", new.fingerprint), ("state", "trusted"))),
        ("epix_registry_anchor_expires_in_seconds", (("state", "trusted"),)),
    }


def test_a_follower_whose_anchor_expired_is_not_ready(
    database: Database,
    secretariat_database: Database,
    source: tuple[Source, str, ThreadingHTTPServer],
    tmp_path: Path,
) -> None:
    """A Secretariat certificate that expired without a successor taking over leaves the
    follower unable to accept any newer registry: /readyz said ready until the held copy
    lapsed, days later."""
    state, url, _ = source
    short = ec_identity(
        "CITES Secretariat, ending (TEST)", party="CH", not_after=now() + timedelta(seconds=2)
    )
    with secretariat_database.unit_of_work() as session:
        populate(session)
    follower = follower_of(database, url, short)
    serve(state, published(secretariat_database, short), "v1")
    follower.refresh()
    _, ready = _operator_view(database, url, short, tmp_path)
    assert ready.status_code == 200, ready.text
    time.sleep(max(0.0, (short.certificate.not_valid_after_utc - now()).total_seconds()) + 0.1)

    samples, expired = _operator_view(database, url, short, tmp_path)
    assert expired.status_code == 503
    check = expired.json()["checks"]["registry_anchor"]
    assert check.startswith(f"EPIX-REG-020: The registry anchor {short.fingerprint} expired at "), (
        check
    )
    assert "no successor was announced to this follower" in check
    assert samples[("epix_registry_anchor_expires_in_seconds", (("state", "trusted"),))] < 0
