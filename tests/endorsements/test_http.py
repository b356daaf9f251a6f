"""The endorsement API: customs only, every bad input a problem+json with its code."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.auth import service as auth_service
from epix.auth.principal import Role
from epix.db import Database, utcnow
from epix.endorsements.models import Reservation
from epix.exchange.models import Permit
from epix.settings import Settings
from tests.endorsements.conftest import MakePermit, StoredPermit

Headers = dict[str, str]


@pytest.fixture
def client(db: Database, tmp_path: Path) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", node_party="XB")
    return TestClient(create_app(settings, db), raise_server_exceptions=False)


@pytest.fixture
def key_for(db: Database) -> Callable[..., Headers]:
    def make(party: str, role: Role = Role.CUSTOMS) -> Headers:
        with db.unit_of_work() as session:
            user = auth_service.create_user(
                session,
                username=f"{role.value}-{party.lower()}",
                party=party,
                authority=f"{party} {role.value}",
                roles=(role,),
            )
            _, raw = auth_service.issue_api_key(session, user)
        return {"Authorization": f"Bearer {raw}"}

    return make


def url(permit: StoredPermit, suffix: str) -> str:
    return f"/v1/permits/{permit.issuing_party}/{permit.number}/{suffix}"


def endorsement_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "side": "import",
        "port": "XBABC",
        "date": utcnow().date().isoformat(),
        "officer": "Officer Jane Roe",
        "transport_document": "AWB 176-12345675",
        "lines": [{"line_id": "1", "quantity": "10", "unit": "PCS"}],
    }
    body.update(changes)
    return body


def problem_codes(response: Any, status: int) -> list[str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [error["code"] for error in response.json()["errors"]]


def test_reserve_confirm_and_read_the_ledger(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit()  # XA/E/..., slash in the number
    headers = key_for("XB")
    reserved = client.post(
        url(permit, "reservations"),
        headers=headers,
        json={
            "side": "import",
            "declaration_reference": "MRN-26XB-1",
            "lines": [{"line_id": "1", "quantity": 6, "unit": "PCS"}],
        },
    )
    assert reserved.status_code == 201, reserved.text
    reservation_id = reserved.json()["reservation_id"]
    assert reserved.headers["location"].endswith(reservation_id)
    assert reserved.json()["status"] == "active"

    ledger = client.get(url(permit, "ledger"), headers=headers).json()
    assert ledger["lines"][0] | {"remaining_by_side": None} == {
        "line_id": "1",
        "unit": "PCS",
        "permitted": "10",
        "reserved": "6",
        "used": "0",
        "remaining": "4",
        "remaining_by_side": None,
    }

    confirm_body = endorsement_body(port="XB ABC")
    del confirm_body["side"], confirm_body["lines"]
    confirmed = client.post(
        url(permit, f"reservations/{reservation_id}/confirm"), headers=headers, json=confirm_body
    )
    assert confirmed.status_code == 201, confirmed.text
    endorsement = confirmed.json()
    assert endorsement["permit"]["status"] == "used"
    assert endorsement["port"] == "XBABC"
    assert endorsement["signed_by"] == "node"
    assert endorsement["lines"] == [{"line_id": "1", "quantity": "6", "unit": "PCS"}]

    ledger = client.get(url(permit, "ledger"), headers=headers).json()
    assert (ledger["lines"][0]["used"], ledger["lines"][0]["remaining"]) == ("6", "0")
    # The issuing MA reads its permit's ledger too; a third Party does not see it.
    assert client.get(
        url(permit, "ledger"), headers=key_for("XA", Role.MANAGEMENT_AUTHORITY)
    ).is_success
    assert problem_codes(client.get(url(permit, "ledger"), headers=key_for("XC")), 404) == [
        "EPIX-STATE-007"
    ]


def test_release_over_http(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit()
    headers = key_for("XB")
    reservation = client.post(
        url(permit, "reservations"),
        headers=headers,
        json={
            "side": "import",
            "declaration_reference": "MRN-1",
            "lines": [{"line_id": "1", "quantity": "10", "unit": "PCS"}],
        },
    ).json()
    path = url(permit, f"reservations/{reservation['reservation_id']}/release")
    released = client.post(path, headers=headers)
    assert released.status_code == 200 and released.json()["status"] == "released"
    assert problem_codes(client.post(path, headers=headers), 409) == ["EPIX-QTY-008"]


def test_direct_endorsement_by_customs(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit()
    headers = key_for("XB")
    response = client.post(url(permit, "endorsements"), headers=headers, json=endorsement_body())
    assert response.status_code == 201, response.text
    endorsement = response.json()
    assert endorsement["side"] == "import"
    assert [(f["to"], f["state"]) for f in endorsement["forwarding"]] == [("XA", "pending")]

    listed = client.get(url(permit, "endorsements"), headers=headers).json()
    assert [item["endorsement_id"] for item in listed] == [endorsement["endorsement_id"]]
    document = client.get(
        url(permit, f"endorsements/{endorsement['endorsement_id']}/xml"), headers=headers
    )
    assert document.headers["content-type"] == "application/xml"
    assert hashlib.sha256(document.content).hexdigest() == endorsement["document_sha256"]
    assert b"<ds:Signature" in document.content
    missing = client.get(url(permit, "endorsements/nope/xml"), headers=headers)
    assert problem_codes(missing, 404) == ["EPIX-REQ-005"]


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"side": "export"}, 403, "EPIX-STATE-006"),  # XB is not the exporter
        ({"lines": [{"line_id": "1", "quantity": -2, "unit": "PCS"}]}, 422, "EPIX-QTY-004"),
        ({"lines": [{"line_id": "1", "quantity": "ten", "unit": "PCS"}]}, 422, "EPIX-QTY-004"),
        (
            {"lines": [{"line_id": "1", "quantity": "1E+1000000", "unit": "PCS"}]},
            422,
            "EPIX-QTY-004",
        ),
        ({"lines": [{"line_id": "1", "quantity": "5", "unit": "KGM"}]}, 422, "EPIX-QTY-002"),
        ({"lines": [{"line_id": "1", "quantity": "11", "unit": "PCS"}]}, 422, "EPIX-QTY-001"),
        ({"lines": [{"line_id": "7", "quantity": "1", "unit": "PCS"}]}, 422, "EPIX-QTY-003"),
        ({"port": "Rotterdam harbour"}, 422, "EPIX-QTY-006"),
        ({"port": "QQABC"}, 422, "EPIX-QTY-006"),
        ({"side": "sideways"}, 422, "EPIX-REQ-004"),
        ({"date": "yesterday"}, 422, "EPIX-REQ-004"),
        ({"lines": []}, 422, "EPIX-REQ-004"),
    ],
)
def test_bad_endorsement_input_is_refused_with_a_code(
    client: TestClient,
    key_for: Callable[..., Headers],
    make_permit: MakePermit,
    changes: dict[str, Any],
    status: int,
    code: str,
) -> None:
    permit = make_permit()
    response = client.post(
        url(permit, "endorsements"), headers=key_for("XB"), json=endorsement_body(**changes)
    )
    assert problem_codes(response, status) == [code]
    assert response.json()["errors"][0]["location"]


def test_someone_elses_permit_is_refused(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit(issuing_party="XA", recipient_party="XC")
    response = client.post(
        url(permit, "endorsements"), headers=key_for("XB"), json=endorsement_body()
    )
    assert problem_codes(response, 403) == ["EPIX-STATE-006"]


def test_cancelled_permit_is_refused_over_http(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit(status="cancelled")
    response = client.post(
        url(permit, "endorsements"), headers=key_for("XB"), json=endorsement_body()
    )
    assert problem_codes(response, 409) == ["EPIX-STATE-003"]


def test_only_customs_may_endorse(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit()
    path = url(permit, "endorsements")
    assert problem_codes(client.post(path, json=endorsement_body()), 401) == ["EPIX-AUTH-001"]
    ma = key_for("XB", Role.MANAGEMENT_AUTHORITY)
    assert problem_codes(client.post(path, headers=ma, json=endorsement_body()), 403) == [
        "EPIX-AUTH-004"
    ]


def test_unknown_permit_and_reservation(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    headers = key_for("XB")
    response = client.post(
        "/v1/permits/XA/NOPE/endorsements", headers=headers, json=endorsement_body()
    )
    assert problem_codes(response, 404) == ["EPIX-STATE-007"]
    permit = make_permit()
    response = client.post(url(permit, "reservations/not-a-reservation/release"), headers=headers)
    assert problem_codes(response, 404) == ["EPIX-QTY-005"]


def test_reservation_lifetime_is_capped(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    permit = make_permit()
    response = client.post(
        url(permit, "reservations"),
        headers=key_for("XB"),
        json={
            "side": "import",
            "declaration_reference": "MRN-1",
            "lines": [{"line_id": "1", "quantity": "1", "unit": "PCS"}],
            "ttl_seconds": 365 * 24 * 3600,
        },
    )
    assert problem_codes(response, 422) == ["EPIX-REQ-004"]


def test_a_permit_the_caller_may_not_see_answers_like_a_missing_one(
    client: TestClient, db: Database, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    """A third Party's customs cannot look up a permit its issuer protected with a security
    token; the border routes must not tell it that the permit exists (or who may endorse it)."""
    hidden = make_permit(issuing_party="XA", recipient_party="XC", number="XA/E/HIDDEN")
    with db.unit_of_work() as session:
        row = session.get(Permit, hidden.id)
        assert row is not None
        row.security_token_sha256 = hashlib.sha256(b"issuer-token").hexdigest()
    third_party = key_for("XB")
    reservation = {
        "side": "import",
        "declaration_reference": "DECL-1",
        "lines": [{"line_id": "1", "quantity": "1", "unit": "PCS"}],
    }
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "ledger", None),
        ("GET", "endorsements", None),
        ("GET", "endorsements/some-id/xml", None),
        ("POST", "endorsements", endorsement_body()),
        ("POST", "reservations", reservation),
        ("POST", "reservations/some-id/release", None),
        (
            "POST",
            "reservations/some-id/confirm",
            {k: v for k, v in endorsement_body().items() if k not in ("side", "lines")},
        ),
    ]
    for method, suffix, body in calls:
        answers = [
            client.request(
                method, f"/v1/permits/XA/{number}/{suffix}", headers=third_party, json=body
            )
            for number in ("XA/E/HIDDEN", "XA/E/ABSENT")
        ]
        seen, missing = (answer.text.replace("ABSENT", "HIDDEN") for answer in answers)
        assert [a.status_code for a in answers] == [404, 404], (suffix, seen)
        assert seen == missing, suffix


def test_a_reservation_on_a_permit_numbered_beyond_latin_1_answers_201_once(
    client: TestClient, key_for: Callable[..., Headers], make_permit: MakePermit, db: Database
) -> None:
    """A permit number is any text up to 35 characters. The reservation's Location header
    carried the number as it is, which an HTTP header cannot (Latin-1 only): the reservation
    was committed, then the answer failed with a 500, and a client sending it again reserved
    the quantities twice."""
    permit = make_permit(number="XA/Ω/0001")
    reserved = client.post(
        url(permit, "reservations"),
        headers=key_for("XB"),
        json={
            "side": "import",
            "declaration_reference": "MRN-26XB-Ω",
            "lines": [{"line_id": "1", "quantity": 6, "unit": "PCS"}],
        },
    )
    assert reserved.status_code == 201, reserved.text
    reservation_id = reserved.json()["reservation_id"]
    assert reserved.headers["location"] == (
        f"/v1/permits/XA/XA/%CE%A9/0001/reservations/{reservation_id}"
    )
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Reservation)) == 1


def test_reading_the_ledger_and_the_endorsements_is_audited_as_a_lookup(
    client: TestClient, db: Database, key_for: Callable[..., Headers], make_permit: MakePermit
) -> None:
    """A permit's lookup was audited, its ledger and endorsements (which tell as much) were
    not: a customs officer could read them and no event named them."""
    permit = make_permit()
    customs, management = key_for("XB"), key_for("XA", Role.MANAGEMENT_AUTHORITY)
    third_party = key_for("XC")
    made = client.post(url(permit, "endorsements"), headers=customs, json=endorsement_body())
    assert made.status_code == 201, made.text
    endorsement = made.json()
    endorsement_id, document_sha256 = endorsement["endorsement_id"], endorsement["document_sha256"]
    with db.read() as session:
        before = session.scalar(select(func.max(AuditEvent.sequence)))

    reads = [
        (customs, "ledger", 200),
        (management, "endorsements", 200),
        (customs, f"endorsements/{endorsement_id}/xml", 200),
        (customs, "endorsements/nope/xml", 404),
        (third_party, "ledger", 404),
    ]
    for headers, suffix, status in reads:
        assert client.get(url(permit, suffix), headers=headers).status_code == status, suffix

    with db.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.sequence > before).order_by(AuditEvent.sequence)
        ).all()
    assert [
        (
            e.action,
            e.outcome,
            e.actor_username,
            e.actor_party,
            e.party,
            e.permit_number,
            e.method,
            e.path,
            e.payload_sha256,
            json.loads(e.detail),
        )
        for e in events
    ] == [
        (
            "permit.lookup",
            "ok",
            "customs-xb",
            "XB",
            "XA",
            permit.number,
            "GET",
            url(permit, "ledger"),
            permit.sha256,
            {"read": "ledger"},
        ),
        (
            "permit.lookup",
            "ok",
            "management_authority-xa",
            "XA",
            "XA",
            permit.number,
            "GET",
            url(permit, "endorsements"),
            permit.sha256,
            {"read": "endorsements"},
        ),
        (
            "permit.lookup",
            "ok",
            "customs-xb",
            "XB",
            "XA",
            permit.number,
            "GET",
            url(permit, f"endorsements/{endorsement_id}/xml"),
            document_sha256,
            {"read": "endorsement", "endorsement_id": endorsement_id},
        ),
        (
            "permit.lookup",
            "EPIX-REQ-005",
            "customs-xb",
            "XB",
            "XA",
            permit.number,
            "GET",
            url(permit, "endorsements/nope/xml"),
            None,
            {"read": "endorsement", "endorsement_id": "nope"},
        ),
        (
            "permit.lookup",
            "EPIX-STATE-007",
            "customs-xc",
            "XC",
            "XA",
            permit.number,
            "GET",
            url(permit, "ledger"),
            None,
            {"read": "ledger"},
        ),
    ]
