"""Two Party nodes on loopback: XA's permit goes out, XB's endorsement comes back.

``epix demo --two-nodes`` (and the end-to-end test) sets up two ``epix serve`` processes in party
mode, each with its own database and data directory. Node A (Party XA) also runs the
Secretariat's registry: it holds the Secretariat signing key and publishes ``GET /v1/registry``;
node B (Party XB) follows that document, pinned to the Secretariat certificate. The registry
lists both Parties' Management Authority, customs and node certificates and both endpoints.
Each node holds an API key for the other (``peer_node`` role, EPIX_PEER_API_KEYS); node B's
registry follower presents its key to A too (under the Secretariat's code), so A lists XB among
the registry's followers (``epix registry followers``).

The scenario: XA's Management Authority signs a permit and submits it at A; A forwards it to B;
XB's customs look it up, reserve and confirm the import inspection at B; B forwards the signed
endorsement to A, where it lands in XA's inbox once and its signature verifies against the
published registry. Every key here is generated for the run (TEST ONLY) and never leaves the
temporary directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth import service as auth
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db import Database
from epix.exchange.node_identity import NODE_ROLE, node_identity
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry import service as registry
from epix.registry.document import read_registry
from epix.registry.roles import CUSTOMS, MANAGEMENT_AUTHORITY
from epix.registry.snapshot import SnapshotTrustStore
from epix.signatures.keys import ensure_identity
from epix.signatures.sign import sign_document
from epix.signatures.verify import verify_document

Echo = Callable[[str], None]
PARTY_A, PARTY_B = "XA", "XB"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Node:
    """One node: its Party, URL, data directory, database and environment."""

    party: str
    port: int
    data_dir: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True, slots=True)
class TwoNodes:
    """What the scenario needs: both nodes and the keys of the people acting (TEST ONLY)."""

    a: Node
    b: Node
    ma_key: str  # XA's Management Authority at node A
    customs_key: str  # XB's customs at node B
    signer: tuple[bytes, bytes]  # XA's Management Authority signing key and certificate
    anchor_pem: bytes  # the Secretariat certificate node B pins


def issue_user_key(
    database: Database, username: str, party: str, authority: str, role: Role
) -> str:
    """A new user with one role; returns the raw API key issued to it."""
    with database.unit_of_work() as session:
        user = auth.create_user(
            session, username=username, party=party, authority=authority, roles=[role]
        )
        return auth.issue_api_key(session, user, label="two-node demo")[1]


def _register_registry(
    database: Database, certificates: dict[tuple[str, str], bytes], endpoints: dict[str, str]
) -> None:
    """The Secretariat's registry on node A: both Parties, their endpoints and certificates."""
    with database.unit_of_work() as session:
        secretariat = auth.create_user(
            session,
            username="cites-secretariat",
            party=SECRETARIAT_PARTY,
            authority="CITES Secretariat",
            roles=[Role.SECRETARIAT],
        )
        actor: Principal = auth.principal_of(secretariat)
        for party, endpoint in endpoints.items():
            registry.add_party(
                session, code=party, name=f"Demo Party {party}", endpoint=endpoint, actor=actor
            )
        for (party, kind), pem in certificates.items():
            authority = registry.add_authority(
                session, party=party, kind=kind, name=f"{party} {kind} (DEMO)", actor=actor
            )
            registry.add_certificate(session, authority_id=authority.id, pem=pem, actor=actor)


def prepare(base: Path, *, database_urls: tuple[str | None, str | None] = (None, None)) -> TwoNodes:
    """Keys, databases, registry, users and environments of both nodes, under ``base``."""
    keys = base / "keys"
    ports = free_port(), free_port()
    data_dirs = base / "node-a", base / "node-b"
    urls = [
        url or f"sqlite:///{(data_dir / 'epix.sqlite3').resolve()}"
        for url, data_dir in zip(database_urls, data_dirs, strict=True)
    ]
    for data_dir in data_dirs:
        data_dir.mkdir(parents=True, exist_ok=True)
    _, anchor_pem = ensure_identity(
        keys,
        "secretariat",
        party=SECRETARIAT_PARTY,
        role="secretariat",
        common_name="CITES Secretariat registry (DEMO)",
    )
    certificates: dict[tuple[str, str], bytes] = {}
    signers: dict[tuple[str, str], tuple[bytes, bytes]] = {}
    for party in (PARTY_A, PARTY_B):
        for kind in (MANAGEMENT_AUTHORITY, CUSTOMS):
            signers[party, kind] = ensure_identity(
                keys, f"{party}-{kind}", party=party, role=kind, common_name=f"{party} {kind}"
            )
            certificates[party, kind] = signers[party, kind][1]
    for party, data_dir in zip((PARTY_A, PARTY_B), data_dirs, strict=True):
        certificates[party, NODE_ROLE] = node_identity(data_dir, party).cert_pem
    databases = [Database(url) for url in urls]
    try:
        for database in databases:
            database.migrate()
        db_a, db_b = databases
        _register_registry(
            db_a,
            certificates,
            {PARTY_A: f"http://127.0.0.1:{ports[0]}", PARTY_B: f"http://127.0.0.1:{ports[1]}"},
        )
        ma_key = issue_user_key(
            db_a, "xa-ma", PARTY_A, "XA Management Authority", Role.MANAGEMENT_AUTHORITY
        )
        key_of_b_at_a = issue_user_key(db_a, "node-xb", PARTY_B, "EPIX node of XB", Role.PEER_NODE)
        customs_key = issue_user_key(db_b, "xb-customs", PARTY_B, "XB Customs", Role.CUSTOMS)
        key_of_a_at_b = issue_user_key(db_b, "node-xa", PARTY_A, "EPIX node of XA", Role.PEER_NODE)
    finally:
        for database in databases:
            database.dispose()
    common = {
        "EPIX_NODE_MODE": "party",
        "EPIX_OUTBOX_POLL_SECONDS": "0.2",
        "EPIX_OUTBOX_BASE_DELAY_SECONDS": "0.5",
        "EPIX_OUTBOX_MAX_DELAY_SECONDS": "2",
        "EPIX_OUTBOX_CIRCUIT_COOLDOWN_SECONDS": "1",
    }
    key_path, cert_path = keys / "secretariat.key.pem", keys / "secretariat.cert.pem"
    a = Node(
        PARTY_A,
        ports[0],
        data_dirs[0],
        urls[0],
        common
        | {
            "EPIX_PEER_API_KEYS": json.dumps({PARTY_B: key_of_a_at_b}),
            "EPIX_REGISTRY_SIGNING_KEY_PATH": str(key_path),
            "EPIX_REGISTRY_SIGNING_CERT_PATH": str(cert_path),
        },
    )
    b = Node(
        PARTY_B,
        ports[1],
        data_dirs[1],
        urls[1],
        common
        | {
            # The same key identifies B's registry follower to A, the Secretariat's node.
            "EPIX_PEER_API_KEYS": json.dumps(
                {PARTY_A: key_of_b_at_a, SECRETARIAT_PARTY: key_of_b_at_a}
            ),
            "EPIX_REGISTRY_SOURCE_URL": f"{a.url}/v1/registry",
            "EPIX_REGISTRY_ANCHOR_PATH": str(cert_path),
            "EPIX_REGISTRY_REFRESH_SECONDS": "1",
        },
    )
    return TwoNodes(a, b, ma_key, customs_key, signers[PARTY_A, MANAGEMENT_AUTHORITY], anchor_pem)


def node_environment(node: Node) -> dict[str, str]:
    """The environment ``epix serve`` runs ``node`` with (no EPIX_* variable of the caller's)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("EPIX_")}
    return (
        env
        | node.env
        | {
            "EPIX_DATA_DIR": str(node.data_dir),
            "EPIX_DATABASE_URL": node.database_url,
            "EPIX_NODE_PARTY": node.party,
            "EPIX_NODE_BASE_URL": node.url,
        }
    )


def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


@contextmanager
def serving(node: Node, *, timeout: float = 60.0) -> Iterator[None]:
    """One node as an ``epix serve`` process (log appended to ``serve.log`` in its data
    directory), stopped after."""
    with ExitStack() as stack:
        log: IO[bytes] = stack.enter_context((node.data_dir / "serve.log").open("ab"))
        process = subprocess.Popen(
            [sys.executable, "-m", "epix.cli", "serve", "--port", str(node.port)],
            env=node_environment(node),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(_stop, process)
        wait_until(f"node {node.party} at {node.url}", _answers(node.url), timeout)
        yield


@contextmanager
def running(nodes: TwoNodes, *, timeout: float = 60.0) -> Iterator[None]:
    """Both nodes as ``epix serve`` processes (logs in their data directories), stopped after."""
    with ExitStack() as stack:
        for node in (nodes.a, nodes.b):
            stack.enter_context(serving(node, timeout=timeout))
        wait_until(
            "node B to hold the registry published by node A",
            lambda: httpx.get(f"{nodes.b.url}/v1/registry", timeout=2).status_code == 200,
            timeout,
        )
        yield


def _answers(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


def _ok(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the scenario produced, for checks and for printing the audit trails."""

    number: str
    message_id: str
    endorsement_id: str
    endorsement: bytes
    signer_fingerprint: str
    issuer_view: dict[str, Any]


def run_scenario(nodes: TwoNodes, echo: Echo, *, timeout: float = 60.0) -> Outcome:
    """XA → (node A → node B) → XB customs check, reserve, endorse → (node B → node A) → XA."""
    number = f"XA-2N-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    message_id = f"demo-{uuid.uuid4().hex}"
    ma = {"Authorization": f"Bearer {nodes.ma_key}"}
    customs = {"Authorization": f"Bearer {nodes.customs_key}"}
    with (
        httpx.Client(base_url=nodes.a.url, timeout=30) as node_a,
        httpx.Client(base_url=nodes.b.url, timeout=30) as node_b,
    ):
        echo(f"[1] XA's Management Authority signs permit {number} and submits it at node A")
        signed = sign_document(write_permit(demo_permit(number=number, lines=2)), *nodes.signer)
        receipt = _ok(
            node_a.post(
                "/v1/messages",
                content=signed,
                headers=ma
                | {
                    "Content-Type": "application/xml",
                    "X-EPIX-Message-Id": message_id,
                    "X-EPIX-From": PARTY_A,
                    "X-EPIX-To": PARTY_B,
                },
            ),
            201,
        )
        echo(f"    node A receipt: {receipt.headers['X-EPIX-Receipt-Status']}")

        echo("[2] node A forwards it to node B (outbox, node B's signed receipt verified)")
        wait_until(
            "node A to deliver the permit",
            lambda: (
                node_a.get(f"/v1/messages/{message_id}", headers=ma).json().get("state")
                == "delivered"
            ),
            timeout,
        )
        echo(f"    tracked at node A: delivered to {nodes.b.url}")

        echo(f"[3] XB's customs look permit {number} up at node B")
        view = _ok(node_b.get(f"/v1/permits/XA/{number}", headers=customs), 200).json()
        signer = view["signature"]["signer"] or {}
        echo(
            f"    status {view['status']}, signature valid: {view['signature']['valid']}, "
            f"signer {signer.get('authority_name')}"
        )
        lines = [
            {"line_id": line["line_id"], "quantity": line["permitted"], "unit": line["unit"]}
            for line in view["lines"]
        ]

        echo("[4] XB's customs reserve the quantities against their declaration, then confirm")
        reservation = _ok(
            node_b.post(
                f"/v1/permits/XA/{number}/reservations",
                headers=customs,
                json={"side": "import", "declaration_reference": "XB-DECL-1", "lines": lines},
            ),
            201,
        ).json()
        endorsement = _ok(
            node_b.post(
                f"/v1/permits/XA/{number}/reservations/{reservation['reservation_id']}/confirm",
                headers=customs,
                json={
                    "port": "NLRTM",
                    "date": datetime.now(UTC).date().isoformat(),
                    "officer": "Officer B. Example",
                    "transport_document": "AWB 123-45678901",
                },
            ),
            201,
        ).json()
        endorsement_id = endorsement["endorsement_id"]
        status_at_b = endorsement["permit"]["status"]
        echo(f"    endorsement {endorsement_id}, permit at node B: {status_at_b}")

        echo("[5] node B forwards the signed endorsement to XA's inbox at node A")
        entry = _inbox_entry(node_a, ma, endorsement_id, timeout)
        document = _ok(node_a.get(entry["url"], headers=ma), 200).content
        _ok(node_a.post(f"{entry['url']}/ack", headers=ma), 200)
        echo(f"    inbox entry {entry['id']}: {len(document)} bytes from {entry['from']}")

        echo("[6] XA checks XB's signature against the registry node A publishes")
        published = _ok(node_a.get("/v1/registry"), 200).content
        trust = SnapshotTrustStore(read_registry(published, nodes.anchor_pem).snapshot)
        verdict = verify_document(document, party=PARTY_B, role=NODE_ROLE, trust=trust)
        verdict.raise_if_invalid()
        assert verdict.certificate is not None
        echo(
            f"    valid: {verdict.valid}, signer {verdict.certificate.authority_name} "
            f"({verdict.certificate.fingerprint[:16]}…)"
        )

        echo("[7] XA looks its permit up at node A")
        issuer_view = _ok(node_a.get(f"/v1/permits/XA/{number}", headers=ma), 200).json()
        echo(f"    status {issuer_view['status']}")
        for event in issuer_view["history"]:
            echo(f"    {event['at']}  {event['action']:22} {event['party']}  {event['by']}")
    return Outcome(
        number,
        message_id,
        endorsement_id,
        document,
        verdict.certificate.fingerprint,
        issuer_view,
    )


def _inbox_entry(
    client: httpx.Client, headers: dict[str, str], message_id: str, timeout: float
) -> dict[str, Any]:
    """Pull the inbox until ``message_id`` is in it (entries of other messages are left)."""
    found: list[dict[str, Any]] = []

    def arrived() -> bool:
        page = _ok(client.get("/v1/inbox", headers=headers), 200).json()
        found.extend(e for e in page["entries"] if e["message_id"] == message_id)
        return bool(found)

    wait_until(f"message {message_id} in the inbox", arrived, timeout)
    return found[0]


@dataclass(frozen=True, slots=True)
class TrailEvent:
    sequence: int
    at: datetime
    action: str
    outcome: str
    party: str | None
    actor: str | None
    message_id: str | None
    permit_number: str | None
    detail: dict[str, Any]


def audit_trail(node: Node, *, message_ids: set[str], number: str) -> list[TrailEvent]:
    """The node's audit events about the scenario's messages and permit, in order."""
    database = Database(node.database_url)
    try:
        with database.unit_of_work() as session:
            events = session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.message_id.in_(message_ids) | (AuditEvent.permit_number == number)
                )
                .order_by(AuditEvent.sequence)
            ).all()
            return [
                TrailEvent(
                    e.sequence,
                    e.occurred_at,
                    e.action,
                    e.outcome,
                    e.party,
                    e.actor_username,
                    e.message_id,
                    e.permit_number,
                    json.loads(e.detail or "{}"),
                )
                for e in events
            ]
    finally:
        database.dispose()


def print_trails(nodes: TwoNodes, outcome: Outcome, echo: Echo) -> None:
    ids = {outcome.message_id, outcome.endorsement_id}
    for node in (nodes.a, nodes.b):
        echo(f"Audit trail of node {node.party} ({node.url}):")
        for event in audit_trail(node, message_ids=ids, number=outcome.number):
            echo(
                f"    #{event.sequence:<4} {event.at.isoformat(timespec='milliseconds')}  "
                f"{event.action:22} {event.outcome:4} {event.actor or '-':12} "
                f"{event.message_id or ''}"
            )
