"""A new password is Argon2-hashed before the transaction that stores it opens: on SQLite a
hash (~50 ms) inside it held the one write lock that every other writer of the node waits for."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth import service
from epix.auth.principal import Role
from epix.cli.main import cli
from epix.db import Database
from epix.exchange.demo import bootstrap_demo
from epix.settings import Settings, get_settings

from .conftest import PASSWORD, MakeUser


class LockProbingHasher(PasswordHasher):
    """The node's Argon2 hasher that, as each hash starts, has a writer of its own (a plain
    sqlite3 connection to the node's database file) try to take the write lock without waiting:
    ``lock_free`` says, hash by hash, whether another writer could write meanwhile."""

    def __init__(self, database: Database) -> None:
        super().__init__()
        self.path = str(database.engine.url.database)
        self.lock_free: list[bool] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        writer = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("ROLLBACK")
            self.lock_free.append(True)
        except sqlite3.OperationalError as exc:  # "database is locked"
            assert "locked" in str(exc)
            self.lock_free.append(False)
        finally:
            writer.close()
        return super().hash(password, salt=salt)


@pytest.fixture
def hasher(sqlite_database: Database, monkeypatch: pytest.MonkeyPatch) -> LockProbingHasher:
    probing = LockProbingHasher(sqlite_database)
    monkeypatch.setattr(service, "_hasher", probing)
    return probing


def _actions(database: Database) -> list[str]:
    with database.read() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.sequence)))


@pytest.mark.anyio
async def test_creating_a_user_over_the_api_hashes_outside_the_write_lock(
    client: httpx.AsyncClient,
    sqlite_database: Database,
    make_user: MakeUser,
    hasher: LockProbingHasher,
) -> None:
    make_user("admin", party="XA", roles=(Role.NODE_ADMIN,), password=None)
    with sqlite_database.unit_of_work() as session:
        _, key = service.issue_api_key(session, service.get_user(session, "admin"))
    before = _actions(sqlite_database)
    new_user = {"username": "officer", "party": "XA", "authority": "XA MA", "roles": ["customs"]}

    short = await client.post(
        "/v1/users", json={**new_user, "password": "too short"}, headers={"X-API-Key": key}
    )
    assert (short.status_code, short.json()["code"]) == (422, "EPIX-REQ-004")
    assert short.json()["errors"][0]["location"] == "password"
    assert hasher.lock_free == []  # refused before hashing
    assert _actions(sqlite_database) == before

    created = await client.post(
        "/v1/users", json={**new_user, "password": PASSWORD}, headers={"X-API-Key": key}
    )
    assert created.status_code == 201, created.text
    assert hasher.lock_free == [True]
    assert _actions(sqlite_database) == [*before, "user_created"]
    login = await client.post("/v1/auth/login", json={"username": "officer", "password": PASSWORD})
    assert login.status_code == 200, login.text


def test_the_users_commands_hash_outside_the_write_lock(
    sqlite_database: Database,
    hasher: LockProbingHasher,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", sqlite_database.engine.url.render_as_string(False))
    create = ("users", "create", "bob", "--party", "XA", "--authority", "XA MA", "--role=customs")
    get_settings.cache_clear()
    try:
        short = CliRunner().invoke(cli, [*create, "--password-stdin"], input="too short\n")
        created = CliRunner().invoke(cli, [*create, "--password-stdin"], input=f"{PASSWORD}\n")
        changed = CliRunner().invoke(
            cli, ["users", "set-password", "bob"], input="a new long password\n"
        )
    finally:
        get_settings.cache_clear()

    assert (short.exit_code, short.output) == (
        1,
        "EPIX-REQ-004: A password needs at least 12 characters. (password)\n",
    )
    assert created.exit_code == 0, created.output
    assert (changed.exit_code, changed.output) == (0, "password set for bob\n")

    assert hasher.lock_free == [True, True]
    assert _actions(sqlite_database) == ["user_created", "user_password_set"]
    with sqlite_database.read() as session:
        stored = service.stored_password_hash(session, "bob")
    assert service.check_password("bob", stored, "a new long password").username == "bob"


def test_the_demo_users_are_hashed_outside_the_write_lock(
    sqlite_database: Database, hasher: LockProbingHasher, tmp_path: Path
) -> None:
    setup = bootstrap_demo(sqlite_database, Settings(data_dir=tmp_path / "data"))
    assert hasher.lock_free == [True] * len(setup.users)
    assert len(setup.users) == 6
