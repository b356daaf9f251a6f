"""Failed web logins are counted per user name and client address: past the limit, attempts
are refused with 429 EPIX-AUTH-010 and Retry-After, even with the right password, while the
same user logs in from elsewhere. The counts are in the database: every worker process of a
node shares them, and guesses sent in parallel are counted before their password is checked."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from epix.api.app import create_app
from epix.auth import service
from epix.auth.models import ThrottleRecord, User
from epix.auth.throttle import Refusal, Throttle
from epix.db import Database
from epix.errors import EpixError
from epix.settings import Settings

from .conftest import PASSWORD, MakeUser

pytestmark = pytest.mark.anyio
WINDOW = 600
THROTTLE_KEY = b"a throttle key of thirty-two byte"


def _throttled_app(tmp_path: Path, database: Database) -> FastAPI:
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        login_max_failures=3,
        login_failure_window_seconds=WINDOW,
    )
    return create_app(settings, database)


@pytest.fixture
def throttled_app(tmp_path: Path, sqlite_database: Database) -> FastAPI:
    return _throttled_app(tmp_path, sqlite_database)


def _client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def attacker(throttled_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with _client_from(throttled_app, "192.0.2.66") as client:
        yield client


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"username": username, "password": password})


def _login_outcomes(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT outcome FROM audit_events WHERE action = 'login' ORDER BY sequence")
            ).scalars()
        )


async def test_past_the_limit_even_the_right_password_waits_but_not_from_elsewhere(
    throttled_app: FastAPI,
    attacker: httpx.AsyncClient,
    sqlite_database: Database,
    make_user: MakeUser,
) -> None:
    make_user("officer")
    for guess in ("guess one", "guess two", "guess three"):
        assert (await _login(attacker, "officer", guess)).json()["code"] == "EPIX-AUTH-002"

    for username in ("officer", "OFFICER", "officer"):  # case variants count as the same name
        refused = await _login(attacker, username, PASSWORD)
        assert refused.status_code == 429
        assert refused.json()["code"] == "EPIX-AUTH-010"
        assert 0 < int(refused.headers["retry-after"]) <= WINDOW
        assert "epix_session" not in refused.cookies

    async with _client_from(throttled_app, "198.51.100.7") as officer:
        assert (await _login(officer, "officer", PASSWORD)).status_code == 200

    # The stretch of throttled attempts is one audit row, however long it goes on.
    assert _login_outcomes(sqlite_database) == ["EPIX-AUTH-002"] * 3 + ["EPIX-AUTH-010", "ok"]


async def test_an_ipv6_client_is_counted_by_its_64_not_by_each_address(
    throttled_app: FastAPI, make_user: MakeUser
) -> None:
    """A host is given a whole /64 and may send from any address in it: counted address by
    address, it could guess one officer's password without limit. Another /64 still logs in."""
    make_user("officer")
    for host in range(1, 4):
        async with _client_from(throttled_app, f"2001:db8:1:2::{host:x}") as guesser:
            assert (await _login(guesser, "officer", "a guess")).status_code == 401
    async with _client_from(throttled_app, "2001:db8:1:2:aaaa:bbbb:cccc:dddd") as guesser:
        refused = await _login(guesser, "officer", PASSWORD)
    assert refused.status_code == 429 and refused.json()["code"] == "EPIX-AUTH-010"
    async with _client_from(throttled_app, "2001:db8:1:3::1") as officer:
        assert (await _login(officer, "officer", PASSWORD)).status_code == 200


async def test_a_successful_login_clears_the_count(
    attacker: httpx.AsyncClient, make_user: MakeUser
) -> None:
    make_user("officer")
    for _ in range(2):
        assert (await _login(attacker, "officer", "typo")).status_code == 401
    assert (await _login(attacker, "officer", PASSWORD)).status_code == 200
    for _ in range(2):
        assert (await _login(attacker, "officer", "typo")).status_code == 401
    assert (await _login(attacker, "officer", PASSWORD)).status_code == 200


async def test_a_password_typed_as_the_user_name_is_not_kept_in_the_throttle_table(
    attacker: httpx.AsyncClient, sqlite_database: Database, make_user: MakeUser
) -> None:
    """The login's audit leaves out a name nobody has (often a password typed into the wrong
    field), but the throttle table kept it as typed, until a later attempt purged it, and in
    every backup meanwhile; its rows are now named by a keyed hash."""
    make_user("officer")
    assert (await _login(attacker, PASSWORD, "officer")).json()["code"] == "EPIX-AUTH-002"
    with sqlite_database.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM auth_throttle")).all()
    assert len(rows) == 2, rows  # the name's and the address's count
    assert PASSWORD.casefold() not in repr(rows).casefold()


async def test_many_user_names_from_one_address_are_refused_by_address(
    tmp_path: Path, sqlite_database: Database, make_user: MakeUser
) -> None:
    """Each name's own count stays low when an address tries many names (a password check is
    ~50 ms of Argon2 each): past EPIX_LOGIN_ADDRESS_MAX_FAILURES the address waits, whatever
    name it tries; successful logins from there do not count, and other addresses are free."""
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        login_max_failures=3,
        login_address_max_failures=4,
        login_failure_window_seconds=WINDOW,
    )
    app = create_app(settings, sqlite_database)
    make_user("officer")
    async with _client_from(app, "192.0.2.66") as sprayer:
        for name in ("anna", "bert", "carl"):
            assert (await _login(sprayer, name, "guess")).status_code == 401
        assert (await _login(sprayer, "officer", PASSWORD)).status_code == 200
        assert (await _login(sprayer, "dora", "guess")).status_code == 401  # the 4th failure
        refused = await _login(sprayer, "emil", "guess")
        assert refused.status_code == 429
        assert refused.json()["code"] == "EPIX-AUTH-010"
        assert "from your address" in refused.json()["detail"]
        assert "user name" not in refused.json()["detail"]
        assert 0 < int(refused.headers["retry-after"]) <= WINDOW
        assert (await _login(sprayer, "officer", PASSWORD)).status_code == 429
    async with _client_from(app, "198.51.100.7") as officer:
        assert (await _login(officer, "officer", PASSWORD)).status_code == 200


async def test_every_worker_process_counts_the_same_failures(
    tmp_path: Path, database: Database, make_user_in: MakeUser
) -> None:
    """Two apps on one database stand for two ``epix serve --workers`` processes: guesses spread
    over both are counted together, so more workers give no more guesses."""
    make_user_in(database, "officer")
    first, second = _throttled_app(tmp_path, database), _throttled_app(tmp_path, database)
    async with _client_from(first, "192.0.2.66") as one, _client_from(second, "192.0.2.66") as two:
        codes = [
            (await _login(client, "officer", f"guess {n}")).json()["code"]
            for n, client in enumerate((one, two, one, two, one, two))
        ]
    assert codes == ["EPIX-AUTH-002"] * 3 + ["EPIX-AUTH-010"] * 3


async def test_guesses_sent_at_once_get_no_more_tries_than_the_limit(
    throttled_app: FastAPI, attacker: httpx.AsyncClient, make_user: MakeUser
) -> None:
    """Each login is counted before its (slow, Argon2) password check, so a burst of parallel
    guesses cannot all be checked before the first failure is counted."""
    make_user("officer")
    answers = await asyncio.gather(*(_login(attacker, "officer", f"g{n}") for n in range(12)))
    codes = sorted(answer.json()["code"] for answer in answers)
    assert codes == ["EPIX-AUTH-002"] * 3 + ["EPIX-AUTH-010"] * 9


def test_a_source_may_try_again_once_its_oldest_attempt_leaves_the_window(
    database: Database,
) -> None:
    now = [1000.0]
    throttle = Throttle("login", 2, 60, key=THROTTLE_KEY, clock=lambda: now[0])

    def count(*source: str) -> Refusal | None:
        with database.unit_of_work() as session:
            return throttle.count(session, *source)

    def wait(*source: str) -> int | None:
        with database.read() as session:
            return throttle.retry_after(session, *source)

    assert count("officer", "192.0.2.1") is None
    now[0] += 20
    assert count("officer", "192.0.2.1") is None
    assert wait("officer", "192.0.2.1") == 40
    assert wait("OFFICER", "192.0.2.1") == 40
    assert wait("officer", "192.0.2.2") is None
    assert wait("clerk", "192.0.2.1") is None
    assert count("officer", "192.0.2.1") == Refusal(40, first=True)
    assert count("officer", "192.0.2.1") == Refusal(40, first=False)  # not counted again
    now[0] += 39.5
    assert wait("officer", "192.0.2.1") == 1
    now[0] += 0.5
    assert wait("officer", "192.0.2.1") is None
    assert count("officer", "192.0.2.1") is None  # one attempt left in the window, plus this
    assert wait("officer", "192.0.2.1") == 20


def test_sources_whose_attempts_left_the_window_are_purged(database: Database) -> None:
    now = [1000.0]
    throttle = Throttle("credential", 1, 60, key=THROTTLE_KEY, clock=lambda: now[0])
    with database.unit_of_work() as session:
        for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
            throttle.count(session, address)
    now[0] += 61
    with database.unit_of_work() as session:
        throttle.count(session, "192.0.2.4")
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(ThrottleRecord)) == 1
        assert throttle.retry_after(session, "192.0.2.4") is not None  # the one kept


async def test_parallel_guesses_on_either_database_get_no_more_checks_than_the_limit(
    tmp_path: Path, database: Database, make_user_in: MakeUser
) -> None:
    """The password is checked outside the login's write transactions, so many checks run at
    once; each attempt is still counted (committed) before its check, so a burst of guesses,
    in two worker processes, gets exactly the limit's worth of checks, the rest waiting."""
    make_user_in(database, "officer")
    first, second = _throttled_app(tmp_path, database), _throttled_app(tmp_path, database)
    async with _client_from(first, "192.0.2.66") as one, _client_from(second, "192.0.2.66") as two:
        answers = await asyncio.gather(
            *(_login((one, two)[n % 2], "officer", f"guess {n}") for n in range(16))
        )
    codes = sorted(answer.json()["code"] for answer in answers)
    assert codes == ["EPIX-AUTH-002"] * 3 + ["EPIX-AUTH-010"] * 13
    assert _login_outcomes(database).count("EPIX-AUTH-002") == 3


def test_the_password_check_holds_no_write_lock(
    tmp_path: Path, sqlite_database: Database, make_user: MakeUser
) -> None:
    """On SQLite a write transaction holds the one write lock every writer waits for: the
    Argon2 check (here made slow by the stored hash's own parameters) must not run inside one.
    A write sent while the login's password is being checked goes through at once."""
    make_user("officer")
    slow = PasswordHasher(time_cost=25, memory_cost=65536, parallelism=1)
    slow_hash = slow.hash(PASSWORD)
    started = time.perf_counter()
    slow.verify(slow_hash, PASSWORD)
    check_seconds = time.perf_counter() - started
    with sqlite_database.unit_of_work() as session:
        session.execute(
            update(User).where(User.username == "officer").values(password_hash=slow_hash)
        )
    client = TestClient(_throttled_app(tmp_path, sqlite_database))
    answers: list[httpx.Response] = []
    login = threading.Thread(
        target=lambda: answers.append(
            client.post("/v1/auth/login", json={"username": "officer", "password": PASSWORD})
        )
    )
    login.start()
    try:
        deadline = time.monotonic() + 10
        while not _attempts_counted(sqlite_database) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(check_seconds / 5)  # the check is under way
        assert login.is_alive()
        started = time.perf_counter()
        with sqlite_database.unit_of_work() as session:
            Throttle("probe", 1, 60, key=THROTTLE_KEY).count(session, "192.0.2.1")
        waited = time.perf_counter() - started
    finally:
        login.join(timeout=30)
    assert answers[0].status_code == 200, answers[0].text
    assert waited < check_seconds / 4, (waited, check_seconds)
    with sqlite_database.read() as session:  # stored again under the current parameters
        stored = session.scalars(select(User.password_hash)).one()
        assert stored != slow_hash and not PasswordHasher().check_needs_rehash(stored)


def _attempts_counted(database: Database) -> bool:
    with database.read() as session:
        return any(
            row.attempts
            for row in session.scalars(select(ThrottleRecord))
            if row.key.startswith("login\n")
        )


def test_a_password_changed_or_a_user_disabled_during_the_check_does_not_log_in(
    sqlite_database: Database, make_user: MakeUser
) -> None:
    """The check runs outside the transaction that logs the person in, which reads the user
    again: what changed meanwhile wins."""
    make_user("officer")
    with sqlite_database.read() as session:
        stored = service.stored_password_hash(session, "officer")
    checked = service.check_password("officer", stored, PASSWORD)
    new_password = service.hash_password("another long password")
    with sqlite_database.unit_of_work() as session:
        service.set_password(session, service.get_user(session, "officer"), new_password)
    with pytest.raises(EpixError) as changed, sqlite_database.unit_of_work() as session:
        service.accept_password(session, checked)
    assert changed.value.findings[0].code == "EPIX-AUTH-002"

    with sqlite_database.read() as session:
        stored = service.stored_password_hash(session, "officer")
    checked = service.check_password("officer", stored, "another long password")
    with sqlite_database.unit_of_work() as session:
        service.disable_user(session, service.get_user(session, "officer"))
    with pytest.raises(EpixError) as disabled, sqlite_database.unit_of_work() as session:
        service.accept_password(session, checked)
    assert disabled.value.findings[0].code == "EPIX-AUTH-006"
