"""Whatever names another Party's thing by its id or number (a message, an inbox entry, an
outbox row, a webhook subscription, an API key, a permit behind its issuer's security token, a
reservation, an endorsement) is answered exactly as the same request naming nothing: the same
status, the same body but for the id, the same headers, and the same database statements (the
timing class), so nobody can probe what other Parties have.

Each real id is compared with a made-up one of the same length, so that even Content-Length
must agree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.testclient import TestClient

from epix.auth import service as auth
from epix.auth.principal import Role
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from tests.database_work import database_work
from tests.robustness.conftest import PERMIT_NUMBER, Node
from tests.robustness.documents import sign_as_xa

TOKEN_PERMIT = "XA-TOKN-0001"
HOOK = "http://93.184.216.34/epix"  # a public address: no name to resolve
# Headers that differ between any two answers.
_PER_ANSWER = {"date", "x-request-id"}


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    statements: list[str]


def _key_of_new_user(node: Node, username: str, party: str, role: Role) -> str:
    with node.database.unit_of_work() as session:
        auth.create_user(
            session, username=username, party=party, authority=f"{party} {role}", roles=(role,)
        )
        return auth.issue_api_key(session, auth.get_user(session, username))[1]


def _made_up(real: str) -> str:
    """Another id of the same length and kind that names nothing."""
    last = real[-1]
    return real[:-1] + ("8" if last == "9" else "9" if last.isdigit() else "x")


def _set_up(node: Node, client: TestClient) -> dict[str, str]:
    """Things of XA and XB on file: a permit behind a security token, a webhook subscription
    and its delivery, a reservation, an endorsement, an inbox entry; their ids."""
    xa_ma, xa_customs = node.key("XA", "management_authority"), node.key("XA", "customs")
    xb_customs = node.key("XB", "customs")
    as_xa_ma = {"Authorization": f"Bearer {xa_ma}"}
    submitted = client.post(
        "/v1/messages",
        content=sign_as_xa(write_permit(demo_permit(number=TOKEN_PERMIT))),
        headers={
            **node.submission_headers("msg-token-permit"),
            "X-EPIX-Security-Token": "token-0123456789",
        },
    )
    assert submitted.status_code == 201, submitted.text
    hook = client.post(
        "/v1/webhooks",
        json={"url": HOOK, "events": ["endorsement.received", "message.received"]},
        headers=as_xa_ma,
    )
    assert hook.status_code == 201, hook.text
    permit = f"/v1/permits/XA/{PERMIT_NUMBER}"
    line = client.get(f"{permit}/ledger", headers=as_xa_ma).json()["lines"][0]
    lines = [{"line_id": line["line_id"], "quantity": "1", "unit": line["unit"]}]
    reserved = client.post(
        f"{permit}/reservations",
        json={"side": "import", "declaration_reference": "MRN-1", "lines": lines},
        headers={"Authorization": f"Bearer {xb_customs}"},
    )
    assert reserved.status_code == 201, reserved.text
    border = {"port": "NLRTM", "officer": "J. Jansen", "transport_document": "MAEU1"}
    endorsed = client.post(
        f"{permit}/endorsements",
        json={
            **border,
            "side": "export",
            "date": datetime.now(UTC).date().isoformat(),
            "lines": lines,
        },
        headers={"Authorization": f"Bearer {xa_customs}"},
    )
    assert endorsed.status_code == 201, endorsed.text
    pulled = client.get("/v1/inbox", headers={"Authorization": f"Bearer {xb_customs}"}).json()
    outbox = client.get("/v1/outbox", headers=as_xa_ma).json()
    keys = client.get("/v1/users/xa-management_authority/api-keys", headers=as_xa_ma).json()
    return {
        "entry": str(pulled["entries"][0]["id"]),
        "outbox": str(outbox[0]["id"]),
        "hook": str(hook.json()["id"]),
        "key": str(keys[0]["id"]),
        "reservation": reserved.json()["reservation_id"],
        "endorsement": endorsed.json()["endorsement_id"],
    }


def test_another_partys_things_are_answered_as_things_that_do_not_exist(node: Node) -> None:
    client = TestClient(node.app, base_url="http://testserver")
    ids = _set_up(node, client)
    xb_ma = node.key("XB", "management_authority")
    xa_ma = node.key("XA", "management_authority")
    xc_customs = _key_of_new_user(node, "xc-customs", "XC", Role.CUSTOMS)
    permit = f"/v1/permits/XA/{PERMIT_NUMBER}"
    token_permit = f"/v1/permits/XA/{TOKEN_PERMIT}"
    reserve = {
        "side": "import",
        "declaration_reference": "MRN-2",
        "lines": [{"line_id": "1", "quantity": "1", "unit": "PCS"}],
    }
    border = {"port": "NLRTM", "date": "2026-01-02", "officer": "X", "transport_document": "Y"}
    # (method, address with {id}, the real id, caller, request keywords)
    cases: list[tuple[str, str, str, str, dict[str, Any]]] = [
        ("GET", "/v1/messages/{id}", "msg-template-permit", xb_ma, {}),
        ("GET", "/v1/inbox/{id}", ids["entry"], xa_ma, {}),
        ("HEAD", "/v1/inbox/{id}", ids["entry"], xa_ma, {}),
        ("POST", "/v1/inbox/{id}/ack", ids["entry"], xa_ma, {}),
        ("GET", "/v1/outbox/{id}", ids["outbox"], xb_ma, {}),
        ("POST", "/v1/webhooks/{id}/secret", ids["hook"], xb_ma, {"json": {}}),
        ("DELETE", "/v1/webhooks/{id}", ids["hook"], xb_ma, {}),
        ("POST", "/v1/api-keys/{id}/revoke", ids["key"], xb_ma, {}),
        ("GET", "/v1/permits/XA/{id}", TOKEN_PERMIT, xc_customs, {}),
        ("GET", "/v1/permits/XA/{id}/xml", TOKEN_PERMIT, xc_customs, {}),
        ("POST", "/v1/permits/XA/{id}/reservations", TOKEN_PERMIT, xc_customs, {"json": reserve}),
        (
            "POST",
            "/v1/permits/XA/{id}/reservations",
            TOKEN_PERMIT,
            xc_customs,
            {"json": reserve, "headers": {"Idempotency-Key": "k-1"}},
        ),
        (
            "POST",
            "/v1/permits/XA/{id}/endorsements",
            TOKEN_PERMIT,
            xc_customs,
            {"json": {**reserve, **border}},
        ),
        ("GET", "/v1/permits/XA/{id}/ledger", PERMIT_NUMBER, xc_customs, {}),
        ("GET", "/v1/permits/XA/{id}/endorsements", PERMIT_NUMBER, xc_customs, {}),
        ("GET", f"{token_permit}/endorsements/{{id}}/xml", ids["endorsement"], xa_ma, {}),
        ("POST", f"{permit}/reservations/{{id}}/release", ids["reservation"], xc_customs, {}),
        (
            "POST",
            f"{permit}/reservations/{{id}}/confirm",
            ids["reservation"],
            xc_customs,
            {"json": border},
        ),
    ]
    different = []
    for method, address, real, caller, keywords in cases:
        fake = _made_up(real)
        extra_headers = keywords.pop("headers", {})
        answers = []
        for each in (real, fake):
            headers = {"Authorization": f"Bearer {caller}", **extra_headers}
            with database_work(node.database) as seen:
                response = client.request(
                    method, address.format(id=each), headers=headers, **keywords
                )
            answers.append(
                Answer(
                    response.status_code,
                    {k: v for k, v in response.headers.items() if k not in _PER_ANSWER},
                    response.content.replace(real.encode(), fake.encode()),
                    seen,
                )
            )
        mine, nothing = answers
        if mine.status < 400 or mine != nothing:
            queries = f"{len(mine.statements)} vs {len(nothing.statements)} statements"
            extra = sorted(set(mine.statements) ^ set(nothing.statements))
            different.append(f"{method} {address}: {mine.status}, {queries}, {extra}")
    assert not different, "\n".join(different)
