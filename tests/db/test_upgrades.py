"""A node's database across versions: upgraded on ``epix serve`` from every past migration head
with its data and audit chain intact, migrated by one process at a time, and refused (not run)
when a newer version migrated it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, func, insert, inspect, select, text
from sqlalchemy import table as table_clause
from sqlalchemy.engine import make_url

from epix.api.app import create_app
from epix.db import Database
from epix.db.base import utcnow
from epix.db.engine import MIGRATIONS_DIR
from epix.delivery import outbox
from epix.delivery.models import OutboxMessage
from epix.exchange.demo import bootstrap_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.settings import Settings
from epix.signatures.sign import sign_document
from tests.conftest import POSTGRES_URL, REPO_ROOT, need
from tests.db.node_process import epix, free_port, node_env, running_node


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config)


def past_heads() -> list[tuple[str, ...]]:
    """Every set of branch heads an older EPIX left: all branches at their first revision, and
    each later revision of a branch with the other branches at their heads."""
    scripts = _scripts()
    heads = set(scripts.get_heads())
    states = {tuple(sorted(scripts.get_bases()))}
    for script in scripts.walk_revisions():
        if script.revision in heads:
            continue
        branch_head = next(h for h in heads if script.revision in _lineage(scripts, h))
        states.add(tuple(sorted((heads - {branch_head}) | {script.revision})))
    return sorted(states)


def _lineage(scripts: ScriptDirectory, head: str) -> set[str]:
    return {script.revision for script in scripts.iterate_revisions(head, "base")}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database that exists but holds nothing yet, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'epix.sqlite3'}"
        return
    need(POSTGRES_URL is not None, "PostgreSQL (EPIX_TEST_POSTGRES_URL)")
    assert POSTGRES_URL is not None
    name = f"epix_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def migrate_to(database: Database, revisions: tuple[str, ...]) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection_engine"] = database.engine
    for revision in revisions:
        command.upgrade(config, revision)


def current_heads(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(MigrationContext.configure(connection).get_current_heads())
    finally:
        engine.dispose()


def row_counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        tables = [t for t in inspect(engine).get_table_names() if t != "alembic_version"]
        with engine.connect() as connection:
            count = select(func.count())
            return {
                table: connection.execute(count.select_from(table_clause(table))).scalar_one()
                for table in tables
            }
    finally:
        engine.dispose()


def put_rows(database: Database, data_dir: Path) -> tuple[str, str]:
    """Users, API keys, registry, a submitted permit (inbox, receipt, audit) and an outbox row,
    written by today's services; returns the permit number and the importer's API key."""
    settings = Settings(data_dir=data_dir, node_base_url="http://testserver")
    demo = bootstrap_demo(database, settings)
    number = f"XA-{uuid.uuid4().hex[:10]}"
    key_pem, cert_pem = demo.signing_identity("XA")
    body = sign_document(write_permit(demo_permit(number=number)), key_pem, cert_pem)

    async def submit() -> None:
        transport = httpx.ASGITransport(app=create_app(settings, database))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            answer = await client.post(
                "/v1/messages",
                content=body,
                headers={
                    "Authorization": f"Bearer {demo.api_key('XA', 'management_authority')}",
                    "Content-Type": "application/xml",
                    "X-EPIX-Message-Id": f"msg-{number}",
                    "X-EPIX-From": "XA",
                    "X-EPIX-To": "XB",
                    "X-EPIX-Document-Type": "permit",
                },
            )
            assert answer.status_code == 201, answer.text

    asyncio.run(submit())
    # The outbox row with the columns every version has: today's model would name columns a
    # past version's table lacks (e.g. order_key), which its services never wrote.
    queued = utcnow()
    with database.unit_of_work() as session:
        session.execute(
            insert(OutboxMessage).values(
                dedupe_key=f"notification:XB::note-{number}",
                kind="notification",
                message_id=f"note-{number}",
                sender_party="",
                destination_party="XB",
                peer_key=outbox.peer_key_for("XB", None),
                content_type="application/xml",
                headers={"X-EPIX-Message-Id": f"note-{number}", "X-EPIX-To": "XB"},
                payload=b"<note/>",
                next_attempt_at=queued,
                give_up_at=queued + timedelta(seconds=outbox.DEFAULT_GIVE_UP_SECONDS),
            )
        )
    return number, demo.api_key("XB", "management_authority")


@pytest.mark.slow
@pytest.mark.parametrize("past", past_heads(), ids="+".join)
def test_epix_serve_upgrades_a_database_of_every_past_version(
    past: tuple[str, ...], empty_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    database = Database(empty_url)
    try:
        migrate_to(database, past)
        assert current_heads(empty_url) == set(past)
        number, importer_key = put_rows(database, data_dir)
    finally:
        database.dispose()
    before = row_counts(empty_url)
    assert before["permits"] == 1 and before["delivery_outbox"] == 1 and before["auth_users"] > 1

    with running_node(data_dir, database_url=empty_url) as node:
        permit = httpx.get(
            f"{node.url}/v1/permits/XA/{number}",
            headers={"Authorization": f"Bearer {importer_key}"},
            timeout=10,
        )
        assert permit.status_code == 200, permit.text
    assert "Traceback" not in node.output

    assert current_heads(empty_url) == set(_scripts().get_heads())
    after = row_counts(empty_url)
    assert before.keys() <= after.keys()  # later migrations may add tables, never drop one
    for table, count in before.items():  # nothing lost; the lookup above is audited
        assert after[table] == count or (table == "audit_events" and after[table] > count)
    verified = epix(data_dir, "audit", "verify", database_url=empty_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain intact" in verified.stdout


@pytest.mark.slow
def test_processes_migrating_at_once_take_turns(empty_url: str, tmp_path: Path) -> None:
    """Two ``epix serve`` (or a CLI command beside one) starting on the same empty or old
    database: on PostgreSQL both used to run CREATE TABLE, and one failed on a duplicate key."""
    database = Database(empty_url)
    try:
        migrate_to(database, past_heads()[0])
    finally:
        database.dispose()
    for _round in range(2):  # an old database, then (round 2) an empty one
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "epix.cli", "users", "list"],
                cwd=REPO_ROOT,
                env=node_env(tmp_path / "data", empty_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(3)
        ]
        outputs = [(run.wait(120), run.communicate()[0].decode()) for run in runs]
        assert all(code == 0 for code, _ in outputs), outputs
        assert current_heads(empty_url) == set(_scripts().get_heads())
        engine = create_engine(empty_url)
        try:
            tables = MetaData()
            tables.reflect(engine)
            tables.drop_all(engine)
        finally:
            engine.dispose()


def test_a_database_of_a_newer_version_is_refused_not_run(empty_url: str, tmp_path: Path) -> None:
    database = Database(empty_url)
    try:
        database.migrate()
        with database.engine.begin() as connection:
            connection.execute(
                text(
                    "UPDATE alembic_version SET version_num = 'delivery_9999' "
                    "WHERE version_num LIKE 'delivery_%'"
                )
            )
    finally:
        database.dispose()
    before = row_counts(empty_url)
    for args in (("serve", "--port", str(free_port())), ("users", "list"), ("worker", "--once")):
        refused = epix(tmp_path / "data", *args, database_url=empty_url, timeout=60)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "EPIX-DB-001" in refused.stderr and "newer" in refused.stderr
        assert "Traceback" not in refused.stderr + refused.stdout
    assert "delivery_9999" in current_heads(empty_url)
    assert row_counts(empty_url) == before


def test_a_row_waiting_for_its_permit_keeps_its_wait_apart_from_its_give_up_time(
    empty_url: str,
) -> None:
    """delivery_0008: a row waiting for its permit (EPIX-DLV-014) before the upgrade had the
    wait written into its give-up time; it keeps it as its ``permit_wait_until``, which no
    other row gets."""
    before = tuple(sorted((set(_scripts().get_heads()) - {"delivery_0008"}) | {"delivery_0007"}))
    database = Database(empty_url)
    try:
        migrate_to(database, before)
        now = utcnow()
        with database.engine.begin() as connection:
            for name, code in (("waiting", "EPIX-DLV-014"), ("down", "EPIX-DLV-001")):
                connection.execute(
                    # Only columns delivery_0007 has (as put_rows does).
                    insert(OutboxMessage).values(
                        dedupe_key=name,
                        kind="endorsement",
                        message_id=name,
                        sender_party="XA",
                        destination_party="XB",
                        peer_key="XB",
                        content_type="application/xml",
                        headers={},
                        payload=b"<e/>",
                        next_attempt_at=now,
                        give_up_at=now + timedelta(hours=1),
                        last_error_code=code,
                    )
                )
        database.migrate()
        with database.read() as session:
            rows = {row.message_id: row for row in session.scalars(select(OutboxMessage))}
    finally:
        database.dispose()
    assert rows["waiting"].permit_wait_until == rows["waiting"].give_up_at
    assert rows["down"].permit_wait_until is None
