"""A lookup for a Party code or permit number longer than any permit on file can have, through
the API and the check page alike, on both database backends: refused as malformed
(EPIX-REQ-004), never with the database's own words, and the same for every caller."""

from __future__ import annotations

import httpx
import pytest

from epix.db import Database
from tests.web.conftest import OFFICER, OFFICER_PASSWORD, LiveNode


@pytest.fixture
def live_database(database: Database) -> Database:
    return database


@pytest.mark.parametrize(
    ("party", "number", "field"),
    [("XAXAXAXAX", "26XA0123", "party"), ("XA", "9" * 65, "number")],
)
def test_a_value_no_permit_can_have_is_refused_as_malformed(
    live_node: LiveNode, party: str, number: str, field: str
) -> None:
    with httpx.Client(base_url=live_node.url, headers={"Accept": "text/html"}) as client:
        login = client.post("/web/login", data={"username": OFFICER, "password": OFFICER_PASSWORD})
        assert login.status_code == 303, login.text
        api = client.get(f"/v1/permits/{party}/{number}", headers={"Accept": "application/json"})
        page = client.get("/web/check", params={"party": party, "number": number[:35]})
    assert api.status_code == 422, api.text
    assert (api.json()["code"], api.json()["errors"][0]["location"]) == ("EPIX-REQ-004", field)
    if field == "party":  # the page takes at most 35 characters of a number
        assert page.status_code == 422
        assert 'data-code="EPIX-REQ-004"' in page.text
        assert "at most 8 characters" in page.text
