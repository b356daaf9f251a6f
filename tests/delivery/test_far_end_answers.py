"""What a peer or webhook receiver answers cannot break the worker: a refusal whose body is
JSON nested past Python's recursion limit is a refusal like any other. Before, json.loads
raised RecursionError out of the delivery: the row was re-claimed at every lease's end for
ever, never given up nor audited."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import select

from epix.audit.context import FAR_END_TEXT_LIMIT
from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.db import Database
from epix.delivery import webhooks
from epix.delivery.models import OutboxState
from epix.delivery.webhooks import publish_event, webhook_key
from tests.delivery.helpers import api_client, rows_after_one_pass, sender_settings

NESTED = b"[" * 100_000


class _Refusing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(422)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(NESTED)))
        self.end_headers()
        self.wfile.write(NESTED)


@pytest.fixture
def refusing_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_a_refusal_with_deeply_nested_json_fails_the_row_once(
    sqlite_database: Database, tmp_path: Path, refusing_receiver: str
) -> None:
    settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
    with sqlite_database.unit_of_work() as session:
        webhooks.create_subscription(
            session,
            party="XA",
            url=refusing_receiver,
            events=["status.changed"],
            created_by="ma-xa",
            node_base_url=settings.node_base_url,
            secret_key=webhook_key(settings),
            allow_private_addresses=True,
        )
        publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
    (row,) = rows_after_one_pass(sqlite_database, settings, claimed=1)
    assert (row.state, row.last_error_code, row.response_status, row.attempts) == (
        OutboxState.FAILED,
        "EPIX-DLV-006",
        422,
        1,
    )


# A far end's refusal as a careless or hostile one writes it: the credential it was sent, its
# own internal URL with its user information and a token, terminal escapes, and 20 KB more.
CARELESS_DETAIL = (
    "Refused Authorization: Bearer sent-s3cret for "
    "https://ops:pw-s3cret@inbox.internal.xb:8443/v1/inbox?token=tok-s3cret#frag\n"
    "\x1b[31mapi_key=key-s3cret " + "more " * 4000
)


class _Careless(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps(
            {"detail": CARELESS_DETAIL, "errors": [{"code": "EPIX-AUTH-001"}]}
        ).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/problem+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_a_far_ends_refusal_is_kept_shown_and_audited_bounded_and_without_credentials(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """The refusal's text was kept up to 4,000 characters (the audit trail's copy 1,000), as
    the far end wrote it: a hub's node admins read its credentials and URLs in GET /v1/outbox,
    and the append-only trail kept them."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Careless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = sender_settings(tmp_path, webhook_allow_private_addresses=True)
        with sqlite_database.unit_of_work() as session:
            webhooks.create_subscription(
                session,
                party="XA",
                url=f"http://127.0.0.1:{server.server_address[1]}/hook",
                events=["status.changed"],
                created_by="ma-xa",
                node_base_url=settings.node_base_url,
                secret_key=webhook_key(settings),
                allow_private_addresses=True,
            )
            publish_event(session, party="XA", event="status.changed", event_id="p-1", data={})
        (row,) = rows_after_one_pass(sqlite_database, settings, claimed=1)
    finally:
        server.shutdown()
        server.server_close()
    expected = (
        "HTTP 401 EPIX-AUTH-001: Refused Authorization: Bearer [redacted] for "
        "https://***@inbox.internal.xb:8443/v1/inbox?*** [31mapi_key=[redacted] more more"
    )
    assert (row.state, row.last_error_code, row.response_status) == ("failed", "EPIX-DLV-006", 401)
    assert row.last_error is not None and row.last_error.startswith(expected)
    assert len(row.last_error) == FAR_END_TEXT_LIMIT and row.last_error.endswith("…")

    admin = api_client(sqlite_database, tmp_path, "XB", Role.NODE_ADMIN, node_mode="hub")
    (shown,) = admin.get("/v1/outbox").json()
    assert (shown["last_error_code"], shown["response_status"]) == ("EPIX-DLV-006", 401)
    assert shown["last_error"] == row.last_error
    with sqlite_database.read() as session:
        audited = session.scalars(
            select(AuditEvent.detail).where(AuditEvent.action == "webhook.failed")
        ).one()
    assert json.loads(audited or "{}")["reason"] == row.last_error
    assert "s3cret" not in (audited or "") + json.dumps(shown)


@pytest.mark.parametrize("word", ["a-", "a.", "x-token-"])
def test_an_excerpt_of_a_megabyte_of_one_long_word_takes_no_time(word: str) -> None:
    """Patterns that started at every letter of a long word and read the rest of it each
    time: a peer's 20 KB of ``a-a-a-`` held the worker for minutes (in a process of its own
    here: the regular expression engine holds the interpreter until it is done)."""
    script = (
        "from epix.audit.context import far_end_text_for_audit\n"
        f"print(far_end_text_for_audit({word!r} * (1_000_000 // {len(word)})))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert ran.stdout == (word * FAR_END_TEXT_LIMIT)[: FAR_END_TEXT_LIMIT - 1] + "…\n"
