"""A demo node (XA, XB, the Secretariat) on each backend, and an httpx client over ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from epix.api.app import create_app
from epix.db import Database
from epix.exchange.demo import DemoSetup, bootstrap_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.settings import Settings
from epix.signatures.sign import sign_document


@dataclass
class Node:
    """One node under test: its settings, database, app and demo users."""

    settings: Settings
    database: Database
    app: FastAPI
    demo: DemoSetup

    def key(self, party: str, role: str) -> str:
        return self.demo.api_key(party, role)

    def signed_permit(self, number: str | None = None, **kwargs: object) -> bytes:
        """A valid demo permit of XA for XB, signed by XA's Management Authority."""
        permit = demo_permit(number=number or f"XA-{uuid.uuid4().hex[:12]}", **kwargs)  # type: ignore[arg-type]
        key_pem, cert_pem = self.demo.signing_identity("XA")
        return sign_document(write_permit(permit), key_pem, cert_pem)


def make_node(tmp_path: Path, database: Database, **overrides: object) -> Node:
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url="http://testserver",
        **overrides,  # type: ignore[arg-type]
    )
    setup = bootstrap_demo(database, settings)
    return Node(settings, database, create_app(settings, database), setup)


@pytest.fixture
def node(tmp_path: Path, database: Database) -> Node:
    return make_node(tmp_path, database)


@pytest.fixture
async def client(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=node.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def headers(
    api_key: str,
    *,
    message_id: str | None = None,
    sender: str = "XA",
    recipient: str = "XB",
    content_type: str = "application/xml",
) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": content_type,
        "X-EPIX-Message-Id": message_id or f"msg-{uuid.uuid4().hex}",
        "X-EPIX-From": sender,
        "X-EPIX-To": recipient,
        "X-EPIX-Document-Type": "permit",
    }


async def submit(
    client: httpx.AsyncClient, node: Node, number: str, token: str | None = None
) -> bytes:
    """Submit a fresh signed permit of XA for XB (with a lookup token if given); its bytes."""
    body = node.signed_permit(number=number)
    sent = headers(node.key("XA", "management_authority"))
    if token:
        sent["X-EPIX-Security-Token"] = token
    response = await client.post("/v1/messages", content=body, headers=sent)
    assert response.status_code == 201, response.text
    return body
