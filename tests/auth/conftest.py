"""An app on a fresh SQLite database, an httpx client over ASGI, and a way to make users."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from epix.api.app import create_app
from epix.auth import service
from epix.auth.models import User
from epix.auth.principal import Role
from epix.db import Database
from epix.settings import Settings

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(tmp_path: Path, sqlite_database: Database) -> FastAPI:
    settings = Settings(data_dir=tmp_path / "data", node_base_url="http://testserver")
    return create_app(settings, sqlite_database)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


MakeUser = Callable[..., User]


def _make_user(
    database: Database,
    username: str = "ma-officer",
    *,
    party: str = "XA",
    roles: tuple[Role, ...] = (Role.MANAGEMENT_AUTHORITY,),
    password: str | None = PASSWORD,
) -> User:
    hashed = service.hash_password(password) if password is not None else None
    with database.unit_of_work() as session:
        return service.create_user(
            session,
            username=username,
            party=party,
            authority=f"{party} Management Authority",
            roles=roles,
            password=hashed,
        )


@pytest.fixture
def make_user(sqlite_database: Database) -> MakeUser:
    """A user on the SQLite database of ``app``."""

    return partial(_make_user, sqlite_database)


@pytest.fixture
def make_user_in() -> MakeUser:
    """A user on the database given as first argument (SQLite or PostgreSQL)."""
    return _make_user


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
