"""A permit the node accepted under its EPIX_MAX_BODY_BYTES can be looked up at the border.

The lookup parsed the stored bytes again with the parser's built-in cap (5 MB) instead of the
one the permit was accepted under: on a node configured for larger permits, every lookup of
one beyond 5 MB was refused with EPIX-XML-004, so customs could not check it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from epix.db import Database
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.signatures.sign import sign_document
from epix.xml.parse import DEFAULT_MAX_BYTES
from tests.exchange.conftest import headers, make_node

pytestmark = pytest.mark.anyio
MA = "management_authority"


async def test_a_permit_larger_than_the_parsers_default_cap_is_looked_up(
    tmp_path: Path, sqlite_database: Database
) -> None:
    node = make_node(tmp_path, sqlite_database, max_body_bytes=2 * DEFAULT_MAX_BYTES)
    key_pem, cert_pem = node.demo.signing_identity("XA")
    unsigned = write_permit(demo_permit(number="XA-LARGE-1", lines=6000))
    body = sign_document(unsigned, key_pem, cert_pem, max_bytes=2 * DEFAULT_MAX_BYTES)
    assert DEFAULT_MAX_BYTES < len(body) < 2 * DEFAULT_MAX_BYTES
    transport = httpx.ASGITransport(app=node.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        sent = await client.post("/v1/messages", content=body, headers=headers(node.key("XA", MA)))
        assert sent.status_code == 201, sent.text[:500]
        looked_up = await client.get(
            "/v1/permits/XA/XA-LARGE-1",
            headers={"Authorization": f"Bearer {node.key('XB', 'customs')}"},
        )
    assert looked_up.status_code == 200, looked_up.text[:500]
    view = looked_up.json()
    assert view["signature"]["valid"] is True
    assert len(view["lines"]) == 6000
