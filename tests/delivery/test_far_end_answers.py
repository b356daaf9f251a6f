"""What a peer or webhook receiver answers cannot break the worker: a refusal whose body is
JSON nested past Python's recursion limit is a refusal like any other. Before, json.loads
raised RecursionError out of the delivery: the row was re-claimed at every lease's end for
ever, never given up nor audited."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from epix.db import Database
from epix.delivery import webhooks
from epix.delivery.models import OutboxState
from epix.delivery.webhooks import publish_event, webhook_key
from tests.delivery.helpers import rows_after_one_pass, sender_settings

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
