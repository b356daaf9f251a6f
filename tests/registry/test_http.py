"""The registry over HTTP: the signed document with ETag/304, views, Secretariat-only changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from epix.api.app import create_app
from epix.audit.models import AuditEvent
from epix.auth import service as auth_service
from epix.auth.principal import SECRETARIAT_PARTY, Role
from epix.db import Database
from epix.registry.document import read_registry
from epix.settings import Settings
from tests.pki import Identity
from tests.registry.conftest import ec_identity

Headers = dict[str, str]


def key_for(database: Database, party: str, role: Role) -> Headers:
    with database.unit_of_work() as session:
        user = auth_service.create_user(
            session,
            username=f"{role.value}-{party.lower()}",
            party=party,
            authority=f"{party} {role.value}",
            roles=(role,),
        )
        _, raw = auth_service.issue_api_key(session, user)
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def secretariat_files(tmp_path: Path, secretariat_identity: Identity) -> tuple[Path, Path]:
    key, cert = tmp_path / "secretariat.key.pem", tmp_path / "secretariat.cert.pem"
    key.write_bytes(secretariat_identity.key_pem)
    cert.write_bytes(secretariat_identity.cert_pem)
    return key, cert


@pytest.fixture
def client(database: Database, tmp_path: Path, secretariat_files: tuple[Path, Path]) -> TestClient:
    settings = Settings(
        data_dir=tmp_path / "data",
        registry_signing_key_path=secretariat_files[0],
        registry_signing_cert_path=secretariat_files[1],
    )
    return TestClient(create_app(settings, database), raise_server_exceptions=False)


def test_secretariat_changes_the_registry_and_the_signed_document_follows(
    client: TestClient, database: Database, secretariat_identity: Identity
) -> None:
    secretariat = key_for(database, SECRETARIAT_PARTY, Role.SECRETARIAT)
    first = client.get("/v1/registry")
    assert first.status_code == 200
    assert first.headers["x-epix-registry-version"] == "0"

    response = client.post(
        "/v1/registry/parties", json={"code": "xa", "name": "Exampleland"}, headers=secretariat
    )
    assert response.status_code == 201 and response.json()["code"] == "XA"
    authority = client.post(
        "/v1/registry/parties/XA/authorities",
        json={"kind": "management_authority", "name": "XA CITES MA"},
        headers=secretariat,
    ).json()
    identity = ec_identity("XA MA (TEST)")
    certificate = client.post(
        f"/v1/registry/authorities/{authority['id']}/certificates",
        json={"pem": identity.cert_pem.decode()},
        headers=secretariat,
    )
    assert certificate.status_code == 201
    assert certificate.json()["fingerprint"] == identity.fingerprint
    assert client.put(
        "/v1/registry/parties/XA/endpoint", json={"url": "https://xa.example"}, headers=secretariat
    ).json() == {"code": "XA", "endpoint_url": "https://xa.example"}
    revoked = client.post(
        f"/v1/registry/certificates/{identity.fingerprint}/revocation",
        json={"reason": "key compromise", "at": "2026-01-01T00:00:00Z"},
        headers=secretariat,
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"].startswith("2026-01-01")
    again = client.post(
        f"/v1/registry/certificates/{identity.fingerprint}/revocation",
        json={"reason": "again"},
        headers=secretariat,
    )
    assert again.status_code == 409 and again.json()["code"] == "EPIX-REG-006"

    document = client.get("/v1/registry")
    assert document.headers["x-epix-registry-version"] == "5"
    assert document.headers["etag"] != first.headers["etag"]
    snapshot = read_registry(document.content, secretariat_identity.cert_pem).snapshot
    assert snapshot.version == 5
    assert snapshot.parties[0].endpoint_url == "https://xa.example"
    listed = client.get("/v1/registry/parties").json()
    assert listed["version"] == 5
    assert listed["parties"][0]["authorities"][0]["certificates"][0]["revocation_reason"] == (
        "key compromise"
    )
    assert client.get(f"/v1/registry/certificates/{identity.fingerprint}").json()["party"] == "XA"


def test_the_document_answers_304_to_a_matching_etag(client: TestClient) -> None:
    first = client.get("/v1/registry")
    etag = first.headers["etag"]
    again = client.get("/v1/registry", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    # Followers and browsers may keep the public document, but ask again each time (ETag):
    # not the no-store of every other /v1 answer.
    assert first.headers["cache-control"] == again.headers["cache-control"] == "no-cache"
    other = client.get("/v1/registry", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.content == first.content


@pytest.mark.parametrize("role", [None, Role.MANAGEMENT_AUTHORITY, Role.CUSTOMS])
def test_only_the_secretariat_may_change_the_registry_over_http(
    client: TestClient, database: Database, role: Role | None
) -> None:
    headers = key_for(database, "XA", role) if role else {}
    response = client.post(
        "/v1/registry/parties", json={"code": "XA", "name": "Exampleland"}, headers=headers
    )
    assert response.status_code == (403 if role else 401)
    assert response.json()["code"] == ("EPIX-AUTH-004" if role else "EPIX-AUTH-001")
    assert client.get("/v1/registry/parties").json()["parties"] == []


def test_refusals_are_problem_json_with_registry_codes(
    client: TestClient, database: Database
) -> None:
    secretariat = key_for(database, SECRETARIAT_PARTY, Role.SECRETARIAT)
    cases = [
        (
            "post",
            "/v1/registry/parties/XQ/authorities",
            {"kind": "customs", "name": "n"},
            404,
            "EPIX-REG-001",
        ),
        ("post", "/v1/registry/authorities/42/certificates", {"pem": "junk"}, 422, "EPIX-REG-004"),
        ("post", "/v1/registry/parties", {"code": "1A", "name": "n"}, 422, "EPIX-CODE-007"),
        (
            "put",
            "/v1/registry/parties/XA/endpoint",
            {"url": "javascript:alert(1)"},
            422,
            "EPIX-REG-012",
        ),
        ("post", "/v1/registry/parties", {"code": "XA"}, 422, "EPIX-REQ-004"),
    ]
    for method, path, body, status, code in cases:
        response = client.request(method, path, json=body, headers=secretariat)
        assert (response.status_code, response.json()["code"]) == (status, code), path
        assert response.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/registry/parties/XQ").json()["code"] == "EPIX-REG-001"
    assert client.get("/v1/registry/certificates/" + "0" * 64).json()["code"] == "EPIX-REG-005"


def test_expiring_certificates_are_listed(client: TestClient, database: Database) -> None:
    secretariat = key_for(database, SECRETARIAT_PARTY, Role.SECRETARIAT)
    client.post(
        "/v1/registry/parties", json={"code": "XA", "name": "Exampleland"}, headers=secretariat
    )
    authority = client.post(
        "/v1/registry/parties/XA/authorities",
        json={"kind": "node", "name": "XA node"},
        headers=secretariat,
    ).json()
    identity = ec_identity("XA node (TEST)")  # valid one year
    client.post(
        f"/v1/registry/authorities/{authority['id']}/certificates",
        json={"pem": identity.cert_pem.decode()},
        headers=secretariat,
    )
    assert client.get("/v1/registry/certificates/expiring").json()["certificates"] == []
    soon = client.get("/v1/registry/certificates/expiring?within_days=400").json()
    assert [c["fingerprint"] for c in soon["certificates"]] == [identity.fingerprint]


def test_a_follower_without_a_copy_is_not_ready_and_serves_no_document(
    database: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", registry_source_url="http://127.0.0.1:9/")
    client = TestClient(create_app(settings, database), raise_server_exceptions=False)
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["registry"].startswith(
        "EPIX-REG-009"
    )
    missing = client.get("/v1/registry")
    assert missing.status_code == 503 and missing.json()["code"] == "EPIX-REG-009"


def test_a_follower_whose_registry_read_fails_is_not_ready_instead_of_a_500(
    database: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path / "data", registry_source_url="http://127.0.0.1:9/")
    client = TestClient(create_app(settings, database))  # a server exception fails the test
    with database.engine.begin() as connection:
        connection.execute(text("DROP TABLE registry_documents"))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {
        "database": "ok",
        "registry": "unavailable: ProgrammingError"
        if database.engine.dialect.name == "postgresql"
        else "unavailable: OperationalError",
    }


def refused_events(database: Database) -> list[tuple[str, str]]:
    with database.unit_of_work() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.outcome != "ok").order_by(AuditEvent.sequence)
        ).all()
        return [(event.action, event.outcome) for event in events]


def test_refused_registry_changes_over_http_are_audited_with_their_code(
    client: TestClient, database: Database
) -> None:
    customs = key_for(database, "XA", Role.CUSTOMS)
    secretariat = key_for(database, SECRETARIAT_PARTY, Role.SECRETARIAT)
    party = {"code": "XA", "name": "Exampleland"}
    assert client.post("/v1/registry/parties", json=party, headers=customs).status_code == 403
    assert client.post("/v1/registry/parties", json=party, headers=secretariat).status_code == 201
    assert client.post("/v1/registry/parties", json=party, headers=secretariat).status_code == 409
    weak = client.post(
        "/v1/registry/authorities/42/certificates", json={"pem": "junk"}, headers=secretariat
    )
    assert weak.status_code == 422
    assert refused_events(database) == [
        ("registry.change", "EPIX-AUTH-004"),
        ("registry.party.add", "EPIX-REG-010"),
        ("registry.certificate.add", "EPIX-REG-004"),
    ]
    assert [p["code"] for p in client.get("/v1/registry/parties").json()["parties"]] == ["XA"]


def test_a_signing_key_not_the_certificates_is_a_503_naming_the_setting_not_a_500(
    database: Database, tmp_path: Path, secretariat_files: tuple[Path, Path]
) -> None:
    """The Secretariat's node with a registry signing key that is not its certificate's (a
    key rolled over without its certificate) answered the public GET /v1/registry with a 500."""
    other_key = tmp_path / "other.key.pem"
    other_key.write_bytes(ec_identity("CITES").key_pem)
    settings = Settings(
        data_dir=tmp_path / "data",
        registry_signing_key_path=other_key,
        registry_signing_cert_path=secretariat_files[1],
    )
    client = TestClient(create_app(settings, database))  # a server exception fails the test
    answer = client.get("/v1/registry")
    problem = answer.json()
    assert (answer.status_code, problem["code"]) == (503, "EPIX-REG-009")
    assert problem["detail"].startswith(
        "The registry cannot be signed with this node's registry signing key: "
    )
    assert "PRIVATE KEY" not in answer.text
