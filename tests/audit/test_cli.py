"""``epix audit`` and ``epix users`` from the command line, on both backends."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from epix.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from epix.audit.service import (
    GENESIS_HASH,
    HEAD_ROW_ID,
    AuditPolicy,
    compute_hash,
    configure_audit,
)
from epix.audit.signing import node_checkpoint_signer
from epix.cli.main import cli
from epix.db import Database
from epix.settings import get_settings

from .conftest import fill


def test_verify_exits_0_on_intact_chain_and_1_naming_altered_event(
    runner: CliRunner, database: Database
) -> None:
    fill(database, 6)
    intact = runner.invoke(cli, ["audit", "verify"])
    assert intact.exit_code == 0, intact.output
    assert "intact" in intact.output
    with database.unit_of_work() as session:
        session.execute(update(AuditEvent).where(AuditEvent.sequence == 4).values(party="XC"))
    broken = runner.invoke(cli, ["audit", "verify"])
    assert broken.exit_code == 1
    assert "first broken event: 4" in broken.output


def test_verify_names_a_deleted_event(runner: CliRunner, database: Database) -> None:
    fill(database, 6)
    with database.unit_of_work() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.sequence == 2))
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1
    assert "first broken event: 2" in result.output


@pytest.fixture
def signing_every_4(policy: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node signs a checkpoint every 4 events with its key, as node processes do."""
    monkeypatch.setenv("EPIX_AUDIT_CHECKPOINT_EVERY", "4")
    get_settings.cache_clear()
    configure_audit(
        AuditPolicy(checkpoint_every=4, signer=lambda: node_checkpoint_signer(get_settings()))
    )


def _forge(events: Iterable[AuditEvent]) -> str:
    """What whoever can write the database can do: change event 2 and relink the events from
    the start (the hash is unkeyed); returns the last hash."""
    previous = GENESIS_HASH
    for event in events:
        if event.sequence == 2:
            event.permit_number = "FORGED"
        event.prev_hash = previous
        event.hash = previous = compute_hash(event)
    return previous


def _move_head(session: Session, head_hash: str) -> None:
    session.execute(
        update(AuditChainHead).where(AuditChainHead.id == HEAD_ROW_ID).values(hash=head_hash)
    )


def test_verify_notices_deleted_checkpoints_hiding_a_rewritten_trail(
    runner: CliRunner, database: Database, signing_every_4: None
) -> None:
    """The node signs a checkpoint every N events; whoever can write the database could delete
    them all and then rewrite any event, recomputing every later hash (the hash is unkeyed).
    Verification must notice that the checkpoint due at the last multiple of N is gone."""
    fill(database, 10)
    assert runner.invoke(cli, ["audit", "verify"]).exit_code == 0
    with database.unit_of_work() as session:
        session.execute(delete(AuditCheckpoint))
        _move_head(session, _forge(session.query(AuditEvent).order_by(AuditEvent.sequence)))
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1, result.output
    assert "EPIX-AUDIT-002" in result.output
    assert "audit_checkpoints[sequence=8]" in result.output


@pytest.mark.parametrize("with_export", [False, True])
def test_verify_names_a_trust_cert_that_is_not_a_certificate(
    runner: CliRunner, database: Database, tmp_path: Path, with_export: bool
) -> None:
    """A wrong file given as --trust-cert ended in a ValueError traceback."""
    fill(database, 2)
    not_a_certificate = tmp_path / "node.key.pem"
    not_a_certificate.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    arguments = ["audit", "verify", "--trust-cert", str(not_a_certificate)]
    if with_export:
        arguments += ["--export", str(not_a_certificate)]
    result = runner.invoke(cli, arguments)
    assert result.exit_code == 2, result.output
    assert "is not a PEM certificate" in result.output
    assert "--trust-cert" in result.output


def test_checkpoint_refuses_to_sign_a_planted_checkpoint_of_a_forged_trail(
    runner: CliRunner, database: Database, signing_every_4: None
) -> None:
    """`epix audit checkpoint` signed every pending checkpoint row as it found it: whoever
    could write the database planted one naming the head of a rewritten trail, had the node
    sign it at the operator's next routine checkpoint, then swapped the rewritten events in,
    and `epix audit verify` found a node-signed checkpoint vouching for them."""
    fill(database, 6)
    with database.unit_of_work() as session:
        forged = session.query(AuditEvent).order_by(AuditEvent.sequence).all()
        session.expunge_all()
    forged_head = _forge(forged)
    with database.unit_of_work() as session:
        session.execute(delete(AuditCheckpoint))
        session.add(
            AuditCheckpoint(sequence=6, head_hash=forged_head, created_at=forged[-1].occurred_at)
        )
    made = runner.invoke(cli, ["audit", "checkpoint"])
    assert made.exit_code == 1, made.output
    assert "EPIX-AUDIT-001" in made.output and "audit_checkpoints[sequence=6]" in made.output
    with database.unit_of_work() as session:  # the attacker swaps the rewritten trail in
        _move_head(session, _forge(session.query(AuditEvent).order_by(AuditEvent.sequence)))
    result = runner.invoke(cli, ["audit", "verify"])
    assert result.exit_code == 1, result.output


def test_checkpoint_export_and_purge_dry_run(runner: CliRunner, database: Database) -> None:
    fill(database, 3)
    made = runner.invoke(cli, ["audit", "checkpoint"])
    assert made.exit_code == 0, made.output
    assert "checkpoint at event 3" in made.output
    assert runner.invoke(cli, ["audit", "verify"]).exit_code == 0
    exported = runner.invoke(cli, ["audit", "export", "--from", "2000-01-01", "--to", "2999-01-01"])
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert [line["record"] for line in lines] == ["export", "checkpoint"] + ["event"] * 4
    assert [line["sequence"] for line in lines[2:]] == [1, 2, 3, 4]
    assert lines[-1]["action"] == "audit_checkpoint"
    none = runner.invoke(cli, ["audit", "export", "--to", "2000-01-01"])
    assert [json.loads(line)["first_sequence"] for line in none.output.splitlines()] == [None]
    dry = runner.invoke(cli, ["audit", "purge", "--dry-run"])
    assert dry.exit_code == 0
    assert "nothing is due" in dry.output
    future = runner.invoke(cli, ["audit", "purge", "--before", "2999-01-01"])
    assert future.exit_code == 1
    assert "EPIX-REQ-004" in future.output


def test_users_lifecycle_from_the_command_line(runner: CliRunner, database: Database) -> None:
    created = runner.invoke(
        cli,
        [
            "users",
            "create",
            "border-1",
            "--party",
            "xb",
            "--authority",
            "XB Customs",
            "--role",
            "customs",
            "--role",
            "management_authority",
            "--password-stdin",
        ],
        input="a long enough password\n",
    )
    assert created.exit_code == 0, created.output
    listed = runner.invoke(cli, ["users", "list", "--party", "XB"])
    assert "border-1\tXB\tXB Customs\tcustoms,management_authority\tactive" in listed.output
    issued = runner.invoke(cli, ["users", "issue-key", "border-1", "--expires-days", "30"])
    assert issued.exit_code == 0
    raw_key = issued.stdout.strip().splitlines()[-1]
    assert raw_key.startswith("epix_")
    keys = runner.invoke(cli, ["users", "keys", "border-1"])
    assert raw_key not in keys.output and "revoked=no" in keys.output
    key_id = keys.output.split("\t")[0]
    assert runner.invoke(cli, ["users", "revoke-key", key_id]).exit_code == 0
    assert "revoked=no" not in runner.invoke(cli, ["users", "keys", "border-1"]).output
    assert runner.invoke(cli, ["users", "disable", "border-1", "--reason", "test"]).exit_code == 0
    assert "\tdisabled" in runner.invoke(cli, ["users", "list"]).output
    assert runner.invoke(cli, ["users", "enable", "border-1"]).exit_code == 0
    duplicate = runner.invoke(
        cli,
        ["users", "create", "border-1", "--party", "XB", "--authority", "X", "--role", "customs"],
    )
    assert duplicate.exit_code == 1
    assert "EPIX-AUTH-007" in duplicate.output
    verified = runner.invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-03-01", "2026-01-01"),
        ("2026-01-01", "2026-01-01"),
        ("2026-01-01T10:00:00", "2026-01-01"),
    ],
)
def test_export_refuses_an_empty_or_reversed_period(
    runner: CliRunner, database: Database, start: str, end: str
) -> None:
    """FROM <= time < TO: a TO not after FROM selects nothing, which must not pass for an
    empty audit trail."""
    fill(database, 2)
    result = runner.invoke(cli, ["audit", "export", "--from", start, "--to", end])
    assert result.exit_code == 2, result.output
    assert "--to" in result.output


@pytest.mark.parametrize("command", [["verify"], ["checkpoint"], ["export"], ["purge"]])
def test_audit_commands_refuse_a_database_that_does_not_exist(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mistyped data directory is named, not created and then reported intact."""
    data_dir = tmp_path / "no-such-node"
    monkeypatch.setenv("EPIX_DATA_DIR", str(data_dir))
    monkeypatch.delenv("EPIX_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["audit", *command])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "There is no EPIX database at sqlite:///" in result.output
    assert "intact" not in result.output
    assert not data_dir.exists()
