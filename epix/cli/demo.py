"""``epix demo``: a scripted exchange against a running demo node, printing every step.

``epix demo --two-nodes`` instead starts two Party nodes itself (see ``epix.cli.two_nodes``).

XA's Management Authority signs a permit and submits it for XB; XB's customs pull it from their
inbox, check the bytes, acknowledge and look the permit up; XA tracks its message.
"""

from __future__ import annotations

import hashlib
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import httpx

from epix.cli import two_nodes as two_nodes_module
from epix.errors import EpixError
from epix.exchange.demo import load_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.registry.roles import CUSTOMS, MANAGEMENT_AUTHORITY
from epix.settings import get_settings
from epix.signatures.sign import sign_document


def _step(number: int, text: str) -> None:
    click.secho(f"[{number}] {text}", bold=True)


def _check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise click.ClickException(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}: {response.text[:500]}"
        )
    return response


def run_demo(
    client: httpx.Client, ma_key: str, customs_key: str, signer: tuple[bytes, bytes]
) -> dict[str, Any]:
    """The scenario itself; returns the final lookup (used by tests too)."""
    number = f"XA-DEMO-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:4]}"
    message_id = f"demo-{uuid.uuid4().hex}"
    _step(1, f"XA's Management Authority signs permit {number} (EPIX-DSIG-1)")
    signed = sign_document(write_permit(demo_permit(number=number)), *signer)
    digest = hashlib.sha256(signed).hexdigest()
    click.echo(f"    {len(signed)} bytes, SHA-256 {digest}")

    _step(2, f"XA submits it for XB as message {message_id}")
    receipt = _check(
        client.post(
            "/v1/messages",
            content=signed,
            headers={
                "Authorization": f"Bearer {ma_key}",
                "Content-Type": "application/xml",
                "X-EPIX-Message-Id": message_id,
                "X-EPIX-From": "XA",
                "X-EPIX-To": "XB",
                "X-EPIX-Document-Type": "permit",
            },
        ),
        200,
        201,
    )
    click.echo(
        f"    signed receipt: {receipt.headers['X-EPIX-Receipt-Status']}, "
        f"document SHA-256 {receipt.headers['X-EPIX-Document-SHA256']}"
    )

    customs = {"Authorization": f"Bearer {customs_key}"}
    _step(3, "XB's customs pull their inbox")
    page = _check(client.get("/v1/inbox", headers=customs), 200).json()
    entry = next((e for e in page["entries"] if e["message_id"] == message_id), None)
    if entry is None:
        raise click.ClickException("the message is not in XB's inbox")
    click.echo(f"    {len(page['entries'])} entries leased until {page['lease_expires_at']}")
    fetched = _check(client.get(entry["url"], headers=customs), 200).content
    same = hashlib.sha256(fetched).hexdigest() == digest
    click.echo(f"    entry {entry['id']}: {len(fetched)} bytes, byte-exact: {same}")
    _check(
        client.post(f"{entry['url']}/ack", params={"lease": page["lease_id"]}, headers=customs), 200
    )
    click.echo("    acknowledged")

    _step(4, f"XB's customs look permit {number} up")
    view: dict[str, Any] = _check(
        client.get(f"/v1/permits/XA/{number}", headers=customs), 200
    ).json()
    signer_info = view["signature"]["signer"] or {}
    click.echo(f"    status {view['status']}, valid {view['valid_from']} .. {view['valid_until']}")
    click.echo(
        f"    signature valid: {view['signature']['valid']}, signer "
        f"{signer_info.get('authority_name')} ({signer_info.get('fingerprint', '')[:16]}…)"
    )
    for line in view["lines"]:
        click.echo(
            f"    line {line['line_id']}: permitted {line['permitted']} {line['unit']}, "
            f"remaining {line['remaining']}"
        )
    for flag in view["compliance"]:
        click.echo(f"    compliance: {flag['code']} {flag['message']}")

    _step(5, "XA tracks its message")
    tracked = _check(
        client.get(f"/v1/messages/{message_id}", headers={"Authorization": f"Bearer {ma_key}"}), 200
    ).json()
    click.echo(f"    state: {tracked['state']}")
    return view


@click.command()
@click.option("--url", default=None, help="Base URL of the node (default: EPIX_NODE_BASE_URL).")
@click.option(
    "--two-nodes",
    is_flag=True,
    help="Start two Party nodes (XA, XB) on free loopback ports with temporary data "
    "directories and run permit out, endorsement back between them.",
)
def demo(url: str | None, two_nodes: bool) -> None:
    """Run a scripted exchange (sign → submit → pull → lookup → track) against a demo node."""
    if two_nodes:
        run_two_nodes()
        return
    settings = get_settings()
    setup = load_demo(settings)
    if setup is None:
        raise click.ClickException(
            f"No demo set up in {settings.data_dir}; start the node with 'epix serve --demo'."
        )
    with httpx.Client(base_url=url or settings.node_base_url, timeout=30) as client:
        run_demo(
            client,
            setup.api_key("XA", MANAGEMENT_AUTHORITY),
            setup.api_key("XB", CUSTOMS),
            setup.signing_identity("XA"),
        )
    click.secho("Done: the permit went from XA to XB byte-exact, signed and checked.", fg="green")


def run_two_nodes() -> None:
    """Two real nodes exchange a permit and its endorsement; every step and both audit trails
    are printed. Keys, databases and logs live in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="epix-two-nodes-") as base:
        click.echo(f"Setting up nodes XA and XB under {base} (keys generated: TEST ONLY)")
        nodes = two_nodes_module.prepare(Path(base))
        click.echo(f"    node A (XA, publishes the registry): {nodes.a.url}")
        click.echo(f"    node B (XB, follows it):             {nodes.b.url}")
        try:
            with two_nodes_module.running(nodes):
                outcome = two_nodes_module.run_scenario(nodes, click.echo)
        except (RuntimeError, TimeoutError, EpixError) as exc:
            raise click.ClickException(f"{exc} (node logs: {base}/node-*/serve.log)") from None
        two_nodes_module.print_trails(nodes, outcome, click.echo)
    click.secho(
        "Done: the permit went XA → XB node to node, and XB's signed endorsement came back "
        "to XA's inbox once.",
        fg="green",
    )
