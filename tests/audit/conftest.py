"""Helpers for audit tests: a node signer and a quick way to fill the chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from epix.audit.service import AuditPolicy, configure_audit, current_policy, record_event
from epix.audit.signing import CheckpointSigner
from epix.db import Database
from epix.settings import get_settings
from tests.pki import make_identity


@pytest.fixture(scope="session")
def node_signer() -> CheckpointSigner:
    identity = make_identity("EPIX node of XA (TEST)", kind="ec", size=256)
    return CheckpointSigner(identity.key_pem, identity.cert_pem)


@pytest.fixture
def policy() -> Iterator[None]:
    """Restore the process-wide audit policy after a test changes it."""
    saved = current_policy()
    yield
    configure_audit(saved)


@pytest.fixture
def no_auto_checkpoints(policy: None) -> None:
    configure_audit(AuditPolicy(checkpoint_every=0, retention_years=5))


def fill(database: Database, count: int, action: str = "lookup") -> None:
    with database.unit_of_work() as session:
        for index in range(count):
            record_event(
                session,
                action=action,
                outcome="ok",
                party="XB",
                permit_number=f"XA-{index:04d}",
                payload=f"payload {index}".encode(),
            )


@pytest.fixture
def runner(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    """``epix`` commands on ``database``, with a node data directory of their own."""
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()
