"""Regression tests for refusals the fuzzers found: each is a coded problem with a location."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree
from starlette.testclient import TestClient

from epix.api.app import create_app
from epix.auth import service as auth
from epix.auth.principal import Role
from epix.db import Database
from epix.endorsements.document import read_endorsement, write_endorsement
from epix.errors import EpixError
from epix.settings import Settings
from epix.signatures import verify_document
from epix.xml import parse_xml
from tests.robustness.conftest import PERMIT_NUMBER, Node, assert_problem
from tests.robustness.documents import (
    endorsement_document,
    signed_permit,
    trust,
    xa_certificate,
)


@pytest.fixture
def client(node: Node) -> TestClient:
    return TestClient(node.app, base_url="http://testserver")


def _error(response: object) -> dict[str, object]:
    assert_problem(response.status_code, response.headers["content-type"], response.content)  # type: ignore[attr-defined]
    errors: list[dict[str, object]] = response.json()["errors"]  # type: ignore[attr-defined]
    return errors[0]


def test_a_json_body_that_is_not_utf8_is_a_coded_400_at_the_body(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/login",
        content=b'{"username": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["location"]) == ("EPIX-REQ-001", "body")


def test_malformed_json_names_the_reason_and_the_offset(client: TestClient) -> None:
    response = client.post(
        "/v1/auth/login", content=b'{"username": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "EPIX-REQ-001"
    assert "not valid JSON" in str(error["message"])
    assert str(error["location"]).startswith("body/")


def test_unknown_route_and_wrong_method_point_at_the_path(client: TestClient) -> None:
    missing = client.get("/v1/no-such-thing")
    assert missing.status_code == 404
    assert _error(missing)["location"] == "/v1/no-such-thing"
    wrong = client.delete("/v1/inbox")
    assert wrong.status_code == 405
    assert _error(wrong)["location"] == "/v1/inbox"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/inbox/2147483648",
        "/v1/outbox/211159136301858521088",
        "/v1/outbox?before=2147483648",
        "/v1/webhooks/99999999999999999999",
        "/v1/api-keys/99999999999999999999/revoke",
        "/v1/registry/authorities/2147483648/certificates",
        "/v1/inbox?cursor=99999999999",
        "/v1/inbox?cursor=%C2%B2",
    ],
)
def test_ids_beyond_the_database_integer_range_are_request_errors(
    client: TestClient, node: Node, path: str
) -> None:
    method = "GET" if "revoke" not in path and "certificates" not in path else "POST"
    if path.startswith("/v1/webhooks"):
        method = "DELETE"
    key = node.key("CITES", "secretariat") if "registry" in path else node.key("XB", "customs")
    response = client.request(method, path, headers={"Authorization": f"Bearer {key}"}, json={})
    assert 400 <= response.status_code < 500
    assert _error(response)["code"] in {"EPIX-REQ-004", "EPIX-REQ-008"}


def test_ids_at_the_edge_of_the_integer_range_answer_404_or_422_on_both_backends(
    database: Database, tmp_path: Path
) -> None:
    """PostgreSQL INTEGER is 32-bit: 2**31 used to reach the driver and fail there (a 500)."""
    with database.unit_of_work() as session:
        user = auth.create_user(
            session, username="ops", party="XB", authority="XB ops", roles=[Role.NODE_ADMIN]
        )
        _, key = auth.issue_api_key(session, user)
    app = create_app(Settings(data_dir=tmp_path, run_worker_in_process=False), database)
    client = TestClient(app, base_url="http://testserver")
    headers = {"Authorization": f"Bearer {key}"}
    largest = client.get("/v1/outbox/2147483647", headers=headers)
    assert largest.status_code == 404
    assert _error(largest)["code"] == "EPIX-DLV-009"
    beyond = client.get("/v1/outbox/2147483648", headers=headers)
    assert beyond.status_code == 422
    assert _error(beyond)["location"] == "path/row_id"


def _endorsement_with(path: str, value: str) -> bytes:
    root = etree.fromstring(write_endorsement(endorsement_document()))
    element = root.find(path, {"e": "urn:epix:endorsement:1"})
    assert element is not None
    element.text = value
    return etree.tostring(root)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("e:Date", "10000-01-01"),
        ("e:Date", "-0001-01-01"),
        ("e:IssuedAt", "10000-01-01T00:00:00Z"),
        ("e:IssuedAt", "2026-01-02T24:00:00Z"),
    ],
)
def test_schema_valid_dates_python_cannot_hold_are_refused_with_their_element(
    path: str, value: str
) -> None:
    with pytest.raises(EpixError) as refused:
        read_endorsement(etree.fromstring(_endorsement_with(path, value)))
    finding = refused.value.findings[0]
    assert (finding.code, finding.location) == ("EPIX-SCHEMA-001", path)
    assert value in finding.message


def test_an_endorsement_date_with_a_timezone_is_read_as_that_day() -> None:
    document = read_endorsement(etree.fromstring(_endorsement_with("e:Date", "2026-01-02+01:00")))
    assert document.endorsed_on.isoformat() == "2026-01-02"


def test_a_signed_endorsement_upload_with_an_impossible_date_is_a_422(
    client: TestClient, node: Node
) -> None:
    """The upload route reads the claimed document before verifying it: this was a 500."""
    response = client.post(
        "/v1/permits/XA/XA-FUZZ-0001/endorsements/signed",
        content=_endorsement_with("e:Date", "10000-01-01"),
        headers={
            "Authorization": f"Bearer {node.key('XB', 'customs')}",
            "Content-Type": "application/xml",
        },
    )
    assert response.status_code == 422
    assert _error(response)["code"] == "EPIX-SCHEMA-001"


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"not xml", "EPIX-XML-001"), (b"  \n", "EPIX-XML-006"), (b"<a/>" * 10, "EPIX-XML-004")],
)
def test_document_level_xml_refusals_point_at_the_root(data: bytes, code: str) -> None:
    with pytest.raises(EpixError) as refused:
        parse_xml(data, max_bytes=32)
    finding = refused.value.findings[0]
    assert (finding.code, finding.location) == (code, "/")


def test_a_signature_outside_the_xmldsig_schema_is_named_not_a_generic_failure() -> None:
    """signxml's schema check used to surface as EPIX-SIG-016 with a logged stack trace."""
    root = etree.fromstring(signed_permit())
    value = root.find(".//{http://www.w3.org/2000/09/xmldsig#}SignatureValue")
    assert value is not None
    value.set("schemeID", "x")
    verdict = verify_document(
        etree.tostring(root), party="XA", role="management_authority", trust=trust()
    )
    assert verdict.codes == ["EPIX-SIG-017"]
    assert "schemeID" in verdict.findings[0].message
    assert verdict.findings[0].location == "/rsm:CITESEPermit/ds:Signature"


@pytest.mark.parametrize("tag", ["SignatureValue", "DigestValue"])
def test_signature_and_digest_values_that_are_not_base64_are_named(tag: str) -> None:
    """Non-ASCII text there used to fail inside signxml: the catch-all EPIX-SIG-016."""
    root = etree.fromstring(signed_permit())
    value = root.find(f".//{{http://www.w3.org/2000/09/xmldsig#}}{tag}")
    assert value is not None
    value.text = "é" * 8
    verdict = verify_document(
        etree.tostring(root), party="XA", role="management_authority", trust=trust()
    )
    assert verdict.codes == ["EPIX-SIG-017"]
    assert f"ds:{tag} must hold base64" in verdict.findings[0].message


def _post(client: TestClient, node: Node, path: str, who: tuple[str, str], body: object) -> object:
    key = node.key(*who)
    return client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})


SECRETARIAT = ("CITES", "secretariat")
XA_MA = ("XA", "management_authority")
XB_CUSTOMS = ("XB", "customs")


@pytest.mark.parametrize(
    ("path", "who", "body", "location"),
    [
        ("/v1/registry/parties", SECRETARIAT, {"code": "QQ", "name": "a\x00b"}, "name"),
        (
            "/v1/registry/parties/XA/authorities",
            SECRETARIAT,
            {"kind": "customs", "name": "Customs\x07"},
            "name",
        ),
        (f"/v1/permits/XA/{PERMIT_NUMBER}/cancel", XA_MA, {"reason": "oops\x00"}, "reason"),
        (
            f"/v1/permits/XA/{PERMIT_NUMBER}/endorsements",
            XB_CUSTOMS,
            {
                "side": "import",
                "port": "NLRTM",
                "date": "2026-01-02",
                "officer": "Officer\x01",
                "transport_document": "AWB 1",
                "lines": [{"line_id": "1", "quantity": 1, "unit": "NAR"}],
            },
            "officer",
        ),
    ],
)
def test_text_an_xml_document_cannot_carry_is_refused_where_it_enters(
    client: TestClient, node: Node, path: str, who: tuple[str, str], body: object, location: str
) -> None:
    """NUL and control characters used to be stored, or to crash while the signed status,
    endorsement or registry document was written (a 500)."""
    response = _post(client, node, path, who, body)
    assert response.status_code == 422  # type: ignore[attr-defined]
    error = _error(response)
    assert (error["code"], error["location"]) == ("EPIX-REQ-004", location)
    assert "control character" in str(error["message"])


def test_a_revocation_time_beyond_the_last_utc_year_is_a_request_error(
    client: TestClient, node: Node
) -> None:
    fingerprint = x509.load_pem_x509_certificate(xa_certificate()).fingerprint(hashes.SHA256())
    response = _post(
        client,
        node,
        f"/v1/registry/certificates/{fingerprint.hex()}/revocation",
        SECRETARIAT,
        {"reason": "key lost", "at": "9999-12-31T23:59:59-14:00"},
    )
    assert response.status_code == 422  # type: ignore[attr-defined]
    error = _error(response)
    assert (error["code"], error["location"]) == ("EPIX-REQ-004", "at")


@pytest.mark.parametrize("url", ["http://[::1", "http://example.org:99999/hook"])
def test_a_malformed_webhook_url_is_refused_with_the_webhook_code(
    client: TestClient, node: Node, url: str
) -> None:
    response = _post(
        client, node, "/v1/webhooks", XA_MA, {"url": url, "events": ["permit.received"]}
    )
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert _error(response)["code"] == "EPIX-DLV-004"


def test_node_endpoints_must_be_printable_ascii(client: TestClient, node: Node) -> None:
    response = client.put(
        "/v1/registry/parties/XA/endpoint",
        json={"url": "http://é\x00.example/"},
        headers={"Authorization": f"Bearer {node.key(*SECRETARIAT)}"},
    )
    assert response.status_code == 422
    assert _error(response)["code"] == "EPIX-REG-012"
