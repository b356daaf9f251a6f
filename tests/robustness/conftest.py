"""A demo node built once per worker (with one permit on file) and copied per test, and the
one check of a refusal.

Bootstrapping the demo generates keys (about a second); copying its SQLite file and data
directory takes milliseconds, so every fuzzed operation starts from a pristine node even when
an earlier one revoked keys or disabled users.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from epix.api.app import create_app
from epix.auth import service as auth
from epix.db import Database
from epix.errors import ERROR_TABLE
from epix.exchange.demo import DemoSetup, bootstrap_demo
from epix.registry import repository
from epix.registry import service as registry
from epix.registry.roles import MANAGEMENT_AUTHORITY
from epix.settings import Settings
from epix.signatures.sign import sign_document
from tests.robustness.documents import signed_permit, xa_certificate

PROBLEM_JSON = "application/problem+json"
PERMIT_NUMBER = "XA-FUZZ-0001"  # documents.signed_permit(), on file in every node copy


@dataclass
class Node:
    settings: Settings
    database: Database
    app: FastAPI
    demo: DemoSetup

    def key(self, party: str, role: str) -> str:
        return self.demo.api_key(party, role)

    def sign_as_xa(self, document: bytes) -> bytes:
        key_pem, cert_pem = self.demo.signing_identity("XA")
        return sign_document(document, key_pem, cert_pem)

    def submission_headers(self, message_id: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.key('XA', 'management_authority')}",
            "Content-Type": "application/xml",
            "X-EPIX-Message-Id": message_id,
            "X-EPIX-From": "XA",
            "X-EPIX-To": "XB",
            "X-EPIX-Document-Type": "permit",
        }


def _settings(root: Path) -> Settings:
    return Settings(
        data_dir=root / "data",
        node_base_url="http://testserver",
        run_worker_in_process=False,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture(scope="session")
def node_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("robustness-template")
    database = Database(f"sqlite:///{root / 'epix.sqlite3'}")
    database.migrate()
    settings = _settings(root)
    node = Node(
        settings, database, create_app(settings, database), bootstrap_demo(database, settings)
    )
    with database.unit_of_work() as session:
        # The seed documents' signer becomes a second XA Management Authority certificate.
        secretariat = auth.principal_of(auth.get_user(session, "cites-secretariat"))
        authority = repository.find_authority(
            session, "XA", MANAGEMENT_AUTHORITY, "XA Management Authority (DEMO)"
        )
        assert authority is not None
        registry.add_certificate(
            session, authority_id=authority.id, pem=xa_certificate(), actor=secretariat
        )
    response = TestClient(node.app).post(
        "/v1/messages",
        content=signed_permit(),
        headers=node.submission_headers("msg-template-permit"),
    )
    assert response.status_code == 201, response.text
    database.dispose()
    return root


@pytest.fixture
def node(node_template: Path, tmp_path: Path) -> Iterator[Node]:
    """A fresh copy of the demo node: its own database file and data directory."""
    root = tmp_path / "node"
    shutil.copytree(node_template, root)
    settings = _settings(root)
    database = Database(f"sqlite:///{root / 'epix.sqlite3'}")
    demo_file = root / "data" / "demo" / "demo.json"
    demo = json.loads(demo_file.read_text())
    demo["keys_dir"] = str(root / "data" / "demo" / "keys")
    demo_file.write_text(json.dumps(demo))
    setup = bootstrap_demo(database, settings)  # loads the copied demo.json
    yield Node(settings, database, create_app(settings, database), setup)
    database.dispose()


def assert_problem(status: int, content_type: str, body: bytes) -> None:
    """A refusal is problem+json whose every error has a table code, a message and a location.

    No input may cause a server error. The only 5xx allowed are the deliberate ones of the table
    (e.g. 503 EPIX-REG-009 while no registry is loaded), never 500 EPIX-REQ-007."""
    assert status != 500, f"server error: {body[:500]!r}"
    if status < 400:
        return
    assert content_type.split(";")[0].strip() == PROBLEM_JSON, (status, content_type, body[:300])
    problem: dict[str, Any] = json.loads(body)
    errors = problem.get("errors")
    assert isinstance(errors, list) and errors, problem
    for error in errors:
        assert error["code"] in ERROR_TABLE, error
        assert isinstance(error["message"], str) and error["message"].strip(), error
        assert isinstance(error.get("location"), str) and error["location"], error
    assert problem["code"] in ERROR_TABLE, problem
    if status >= 500:
        assert ERROR_TABLE[problem["code"]].http_status == status, problem
