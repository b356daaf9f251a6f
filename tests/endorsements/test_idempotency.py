"""Idempotency-Key on reserve, confirm and endorse: a retry whose first answer was lost gets that
answer and records nothing twice, on SQLite and PostgreSQL, also when the copies race."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.auth import service as auth_service
from epix.auth.principal import Role
from epix.db import Database, utcnow
from epix.endorsements.idempotency import IdempotencyKey, Operation, answer_once
from epix.endorsements.models import Endorsement, IdempotencyRecord, Reservation
from epix.errors import EpixError
from epix.settings import Settings
from tests.endorsements.conftest import StoredPermit, customs, store_permit
from tests.endorsements.test_http import endorsement_body, problem_codes, url

Headers = dict[str, str]
KEY = "Idempotency-Key"


@pytest.fixture
def client(database: Database, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", node_party="XB")
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


@pytest.fixture
def key_for(database: Database) -> Callable[[str], Headers]:
    """An API key of a customs officer of ``party``."""

    def make(party: str) -> Headers:
        with database.unit_of_work() as session:
            user = auth_service.create_user(
                session,
                username=f"customs-{party.lower()}",
                party=party,
                authority=f"{party} Customs",
                roles=(Role.CUSTOMS,),
            )
            _, raw = auth_service.issue_api_key(session, user)
        return {"Authorization": f"Bearer {raw}"}

    return make


def export_body(quantity: str = "4", **changes: Any) -> dict[str, Any]:
    """A partial export endorsement (XA's customs; line 1 permits 10 PCS)."""
    lines = [{"line_id": "1", "quantity": quantity, "unit": "PCS"}]
    return endorsement_body(side="export", port="XAABC", lines=lines, **changes)


def reservation_body(quantity: str = "4") -> dict[str, Any]:
    return {
        "side": "export",
        "declaration_reference": "MRN-26XA-1",
        "lines": [{"line_id": "1", "quantity": quantity, "unit": "PCS"}],
    }


def ledger_line(client: TestClient, permit: StoredPermit, headers: Headers) -> dict[str, Any]:
    response = client.get(url(permit, "ledger"), headers=headers)
    assert response.status_code == 200, response.text
    line: dict[str, Any] = response.json()["lines"][0]
    return line


def actions(database: Database) -> list[str]:
    with database.unit_of_work() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.sequence)))


def count(database: Database, model: type[Any]) -> int:
    with database.unit_of_work() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_retried_endorsement_answers_as_the_first_and_is_recorded_once(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit = store_permit(database)
    headers = key_for("XA") | {KEY: "6f1c2a8e-0b7d-4c1e-9a51-2f3d4e5f6a7b"}
    first = client.post(url(permit, "endorsements"), headers=headers, json=export_body())
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post(url(permit, "endorsements"), headers=headers, json=export_body())

    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert count(database, Endorsement) == 1
    assert (ledger_line(client, permit, headers)["used"]) == "4"
    recorded = actions(database)
    assert recorded.count("endorsement.record") == 1
    assert recorded.count("endorsement.replay") == 1
    # The key is evidence on both events: the replay points back at the record it answered from.
    with database.unit_of_work() as session:
        evidence = session.scalars(
            select(AuditEvent.headers).where(
                AuditEvent.action.in_(("endorsement.record", "endorsement.replay"))
            )
        ).all()
    assert [json.loads(kept).get(KEY.lower()) for kept in evidence] == [headers[KEY]] * 2
    # Without the key the same request is a new one, refused as before (one consignment).
    del headers[KEY]
    retry = client.post(url(permit, "endorsements"), headers=headers, json=export_body())
    assert problem_codes(retry, 409) == ["EPIX-STATE-005"]


def test_a_retried_reservation_holds_the_quantity_once(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit = store_permit(database)
    headers = key_for("XA") | {KEY: "reserve-1"}
    first = client.post(url(permit, "reservations"), headers=headers, json=reservation_body())
    again = client.post(url(permit, "reservations"), headers=headers, json=reservation_body())

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert count(database, Reservation) == 1
    assert ledger_line(client, permit, headers)["reserved"] == "4"
    assert actions(database).count("reservation.replay") == 1


def test_a_retried_confirmation_answers_as_the_first(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit = store_permit(database)
    headers = key_for("XA")
    reserved = client.post(url(permit, "reservations"), headers=headers, json=reservation_body())
    path = url(permit, f"reservations/{reserved.json()['reservation_id']}/confirm")
    body = export_body()
    del body["side"], body["lines"]
    keyed = headers | {KEY: "confirm-1"}
    first = client.post(path, headers=keyed, json=body)
    again = client.post(path, headers=keyed, json=body)

    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json()
    assert count(database, Endorsement) == 1
    assert ledger_line(client, permit, headers)["used"] == "4"
    # Without the key it is a second confirmation, refused as before.
    assert problem_codes(client.post(path, headers=headers, json=body), 409) == ["EPIX-QTY-008"]


def test_a_key_used_for_another_request_is_refused(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit, other = store_permit(database), store_permit(database)
    headers = key_for("XA") | {KEY: "one-key"}
    first = client.post(url(permit, "endorsements"), headers=headers, json=export_body())
    assert first.status_code == 201, first.text

    for target, body in (
        (permit, export_body(quantity="5")),  # another quantity
        (permit, export_body(officer="Officer John Doe")),
        (other, export_body()),  # the same body for another permit
    ):
        refused = client.post(url(target, "endorsements"), headers=headers, json=body)
        assert problem_codes(refused, 422) == ["EPIX-REQ-013"]
        assert "different request" in refused.json()["detail"]
        assert refused.json()["errors"][0]["location"] == KEY
    assert count(database, Endorsement) == 1
    # The key is scoped to the operation and to the Party: these are new requests.
    reserved = client.post(url(other, "reservations"), headers=headers, json=reservation_body())
    assert reserved.status_code == 201, reserved.text
    importer = key_for("XB") | {KEY: "one-key"}
    imported = client.post(url(other, "endorsements"), headers=importer, json=endorsement_body())
    assert imported.status_code == 201, imported.text


def test_the_same_request_spelled_differently_is_the_same_request(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    """The fingerprint is of the parsed body: key order, spacing and a default given do not
    count; a retry that re-serialises its JSON is still a retry."""
    permit = store_permit(database)
    headers = key_for("XA") | {KEY: "spelling"}
    first = client.post(url(permit, "endorsements"), headers=headers, json=export_body())
    body = dict(reversed(export_body(declaration_reference=None).items()))
    again = client.post(url(permit, "endorsements"), headers=headers, json=body)
    assert again.status_code == 201, again.text
    assert again.json() == first.json()


@pytest.mark.parametrize(
    "value",
    [b"", b"two words", b"x" * 256, "caf\u00e9".encode("latin-1"), b"tab\there", b"del\x7f"],
    ids=["empty", "space", "too-long", "not-ascii", "tab", "control"],
)
def test_a_malformed_key_is_refused_and_nothing_is_recorded(
    database: Database, client: TestClient, key_for: Callable[[str], Headers], value: bytes
) -> None:
    permit = store_permit(database)
    headers: dict[str, Any] = key_for("XA") | {KEY: value}
    response = client.post(url(permit, "endorsements"), headers=headers, json=export_body())
    assert problem_codes(response, 400) == ["EPIX-REQ-012"]
    assert count(database, Endorsement) == 0


def test_two_keys_in_one_request_are_refused(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit = store_permit(database)
    headers = [*key_for("XA").items(), (KEY, "first"), (KEY, "second")]
    response = client.post(url(permit, "reservations"), headers=headers, json=reservation_body())
    assert problem_codes(response, 400) == ["EPIX-REQ-012"]
    assert count(database, Reservation) == 0


def test_a_refused_request_leaves_its_key_free(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    """Only answers that changed something are kept: corrected and sent again, the request
    with the same key is judged on its own."""
    permit = store_permit(database)
    headers = key_for("XA") | {KEY: "corrected"}
    too_much = client.post(url(permit, "endorsements"), headers=headers, json=export_body("11"))
    assert problem_codes(too_much, 422) == ["EPIX-QTY-001"]
    assert count(database, IdempotencyRecord) == 0
    corrected = client.post(url(permit, "endorsements"), headers=headers, json=export_body("10"))
    assert corrected.status_code == 201, corrected.text
    again = client.post(url(permit, "endorsements"), headers=headers, json=export_body("10"))
    assert again.json() == corrected.json()
    assert again.headers["idempotent-replayed"] == "true"


def test_a_key_may_be_used_again_once_it_expired_and_expired_keys_are_purged(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit = store_permit(database)
    xa, xb = key_for("XA"), key_for("XB")
    for party, headers in (("XA", xa), ("XB", xb)):
        reserved = client.post(
            url(permit, "reservations"),
            headers=headers | {KEY: f"old-{party}"},
            json=reservation_body("1") | {"side": "export" if party == "XA" else "import"},
        )
        assert reserved.status_code == 201, reserved.text
    with database.unit_of_work() as session:
        session.execute(
            update(IdempotencyRecord).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    # Past its time the key is free: another request with it is new, not refused.
    new = client.post(
        url(permit, "reservations"), headers=xa | {KEY: "old-XA"}, json=reservation_body("2")
    )
    assert new.status_code == 201, new.text
    assert "idempotent-replayed" not in new.headers
    assert ledger_line(client, permit, xa)["reserved"] == "4"  # 1 + 2 on export, 1 on import (XB)
    with database.unit_of_work() as session:
        kept = session.execute(
            select(IdempotencyRecord.party, IdempotencyRecord.key, IdempotencyRecord.expires_at)
        ).all()
    # XB's expired key went with it (purged on the way); the new one lives for the setting.
    assert [(party, key) for party, key, _ in kept] == [("XA", "old-XA")]
    lifetime = kept[0].expires_at - utcnow()
    assert timedelta(hours=23, minutes=59) < lifetime <= timedelta(hours=24)


@pytest.mark.parametrize("hours", ["0", "721", "a day"])
def test_the_key_lifetime_setting_is_validated(monkeypatch: pytest.MonkeyPatch, hours: str) -> None:
    monkeypatch.setenv("EPIX_IDEMPOTENCY_KEY_HOURS", hours)
    with pytest.raises(ValueError, match="idempotency_key_hours"):
        Settings()


THREADS = 6


def _together(work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` on several threads released at once; their results in thread order."""
    barrier = threading.Barrier(THREADS)
    results: list[Any] = [None] * THREADS

    def run(index: int) -> None:
        barrier.wait()
        results[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_copies_of_one_request_create_one_endorsement_and_get_its_answer(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    permit = store_permit(database)
    headers = key_for("XA") | {KEY: "raced"}
    path = url(permit, "endorsements")
    responses = _together(lambda _: client.post(path, headers=headers, json=export_body()))

    assert [r.status_code for r in responses] == [201] * THREADS, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1
    assert sorted(r.headers.get("idempotent-replayed", "") for r in responses) == [""] + [
        "true"
    ] * (THREADS - 1)
    assert count(database, Endorsement) == 1
    assert actions(database).count("endorsement.record") == 1


def test_concurrent_uses_of_one_key_on_several_permits_create_one(
    database: Database, client: TestClient, key_for: Callable[[str], Headers]
) -> None:
    """Different requests: they lock different permits, so the key's unique constraint decides;
    the losers are refused with a code, never a 500, never a second reservation."""
    permits = [store_permit(database) for _ in range(THREADS)]
    headers = key_for("XA") | {KEY: "one-for-all"}
    responses = _together(
        lambda i: client.post(
            url(permits[i], "reservations"), headers=headers, json=reservation_body()
        )
    )
    codes = sorted(
        "ok" if r.status_code == 201 else problem_codes(r, r.status_code)[0] for r in responses
    )
    assert codes[-1] == "ok" and codes.count("ok") == 1, codes
    assert set(codes[:-1]) <= {"EPIX-REQ-013", "EPIX-REQ-014"}, codes
    assert count(database, Reservation) == 1


@pytest.mark.postgres
def test_a_key_committed_while_this_request_waited_on_it_decides(
    postgres_database: Database,
) -> None:
    """PostgreSQL, deterministic: request B (another permit) inserts the key while request A,
    which inserted it first, is still open; B waits on A's row, A commits, B is refused with
    EPIX-REQ-013 from A's record (the savepoint undoes B's insert, not its transaction)."""
    database = postgres_database
    first, second = store_permit(database), store_permit(database)
    actor = customs("XA")
    a_claimed, b_waits = threading.Event(), threading.Event()
    outcome: list[str] = []

    def request(permit: StoredPermit, fingerprint: str) -> None:
        def create() -> tuple[str, dict[str, object]]:
            a_claimed.set()  # called once the key row is in, uncommitted
            assert b_waits.wait(timeout=30)
            return "resource-A", {"made": "A"}

        try:
            with database.unit_of_work() as session:
                answer_once(
                    session,
                    IdempotencyKey("shared", fingerprint),
                    operation=Operation.RESERVE,
                    actor=actor,
                    issuing_party=permit.issuing_party,
                    number=permit.number,
                    lifetime=timedelta(hours=1),
                    request=None,
                    create=create,
                )
            outcome.append(f"{fingerprint}: ok")
        except EpixError as exc:
            outcome.append(f"{fingerprint}: {exc.findings[0].code}")

    a = threading.Thread(target=request, args=(first, "A"))
    a.start()
    assert a_claimed.wait(timeout=30)
    b = threading.Thread(target=request, args=(second, "B"))
    b.start()
    deadline = time.monotonic() + 30
    while not _waiting_on_a_lock(database) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _waiting_on_a_lock(database)  # B waits for A's uncommitted key row
    b_waits.set()
    for thread in (a, b):
        thread.join(timeout=60)
    assert sorted(outcome) == ["A: ok", "B: EPIX-REQ-013"]
    with database.unit_of_work() as session:
        rows = session.execute(select(IdempotencyRecord.resource_id, IdempotencyRecord.answer))
        assert rows.all() == [("resource-A", '{"made": "A"}')]


def _waiting_on_a_lock(database: Database) -> bool:
    """Whether a session of this database waits for another transaction's lock."""
    with database.engine.connect() as connection:
        waiting = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()
    return bool(waiting)
