"""A refused endorse form of the page without script is always a page naming the refusal's
code, never a 500, on SQLite and PostgreSQL (which refuses a NUL character itself)."""

from __future__ import annotations

import pytest

from epix.db import Database
from tests.web.conftest import LiveNode
from tests.web.test_endorse_without_script import _endorsements, _form_of, _logged_in_client


@pytest.fixture
def live_database(database: Database) -> Database:
    return database


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"side": "sideways"}, "EPIX-REQ-004"),
        ({"date": "2026-13-45"}, "EPIX-REQ-004"),
        ({"port": "ZZ"}, "EPIX-QTY-006"),
        ({"quantity": "1.250"}, "EPIX-QTY-004"),
        ({"quantity": "1 250"}, "EPIX-QTY-004"),
        ({"line_id": "no-such-line"}, "EPIX-QTY-003"),
        ({"unit": []}, "EPIX-REQ-004"),
        ({"idempotency_key": "has spaces"}, "EPIX-REQ-012"),
        ({"officer": "nul\x00char"}, "EPIX-"),
        ({"number": "NO-SUCH-PERMIT"}, "EPIX-STATE-007"),
        ({"number": "NUL\x00"}, "EPIX-"),
    ],
    ids=[
        "side",
        "date",
        "port",
        "grouping",
        "space",
        "line",
        "unit",
        "key",
        "nul",
        "permit",
        "nul-number",
    ],
)
def test_a_refused_endorse_form_is_a_page_with_its_code(
    live_node: LiveNode, changes: dict[str, str | list[str]], code: str
) -> None:
    """Whatever the form holds, the answer is a page naming the refusal's code, never a 500,
    and nothing is recorded. A text replaces a field's first value, a list all of them."""
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        for name, value in changes.items():
            form[name] = value if isinstance(value, list) else [value, *form[name][1:]]
        refused = client.post("/web/endorse", data=form)
    assert 400 <= refused.status_code < 500, refused.text
    assert code in refused.text
    assert "Traceback" not in refused.text
    assert _endorsements(live_node) == []


def test_an_endorse_form_with_no_quantity_and_no_port_says_what_to_enter(
    live_node: LiveNode,
) -> None:
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, officer="J. Jansen", transport_document="AWB 1")
        form["quantity"] = [""] * len(form["quantity"])
        refused = client.post("/web/endorse", data=form)
    assert refused.status_code == 422
    assert '<a href="#port">EPIX-REQ-004: Enter the port (UN/LOCODE).</a>' in refused.text
    assert '<a href="#qty-0">EPIX-REQ-004: Enter the quantity of at least one line.</a>' in (
        refused.text
    )
    assert _endorsements(live_node) == []
