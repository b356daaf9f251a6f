"""The key-registry page where the page's script does not run: the node answers with the Parties
and the certificates ending soon on the page, read by the same registry calls as the /v1
registry API, every value escaped; public, as the API is. Where the script runs, it only shows
the times in the reader's time zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from epix.api.app import create_app
from epix.db import Database
from epix.registry import service
from epix.settings import Settings
from tests.registry.conftest import SECRETARIAT, ec_identity
from tests.web.conftest import LiveNode, severe_console_messages, wait
from tests.web.test_pages_browser import in_time_zone

pytestmark = pytest.mark.browser

# A Party and an authority whose names look like markup: the page must show them as text.
MARKUP_PARTY = 'Demo <b>Party</b> & "XZ"'
MARKUP_AUTHORITY = "XZ <i>node</i> <script>alert(1)</script>"


def _add_party_with_a_certificate_ending_soon(node: LiveNode) -> str:
    """Party XZ with a node authority whose only certificate ends in 20 days (within the page's
    60); gives the certificate's fingerprint."""
    identity = ec_identity(
        "XZ node (TEST)", party="XZ", not_after=datetime.now(UTC) + timedelta(days=20)
    )
    with node.database.unit_of_work() as session:
        service.add_party(session, code="XZ", name=MARKUP_PARTY, actor=SECRETARIAT)
        authority = service.add_authority(
            session, party="XZ", kind="node", name=MARKUP_AUTHORITY, actor=SECRETARIAT
        )
        service.add_certificate(
            session, authority_id=authority.id, pem=identity.cert_pem, actor=SECRETARIAT
        )
    return identity.fingerprint


def _rows(browser: WebDriver) -> dict[str, list[str]]:
    return {
        row.get_attribute("data-party") or "": [
            cell.text for cell in row.find_elements(By.TAG_NAME, "td")
        ]
        for row in browser.find_elements(By.CSS_SELECTOR, "#parties tbody tr")
    }


def test_without_script_the_registry_page_shows_the_parties_and_the_certificates_ending_soon(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    fingerprint = _add_party_with_a_certificate_ending_soon(live_node)
    browser.get(f"{live_node.url}/web/registry")  # not logged in: public, as the API is

    assert browser.current_url == f"{live_node.url}/web/registry"
    rows = _rows(browser)
    api = httpx.get(f"{live_node.url}/v1/registry/parties").json()["parties"]
    assert {"XA", "XB", "XZ"} <= set(rows)
    assert rows == {
        party["code"]: [
            party["code"],
            party["name"],
            "; ".join(authority["name"] for authority in party["authorities"]) or "—",
            str(sum(len(authority["certificates"]) for authority in party["authorities"])),
            party["endpoint_url"] or "—",
        ]
        for party in api
    }
    assert rows["XA"][1] == "Demo Party XA" and int(rows["XA"][3]) >= 1
    assert rows["XZ"] == ["XZ", MARKUP_PARTY, MARKUP_AUTHORITY, "1", "—"]
    assert browser.find_elements(By.CSS_SELECTOR, "#parties b, #parties i, main script") == []

    (item,) = browser.find_elements(
        By.CSS_SELECTOR, f"#expiring li[data-fingerprint='{fingerprint}']"
    )
    until = r"\(until \d{4}-\d\d-\d\d \d\d:\d\d UTC\)"
    assert re.fullmatch(f"XZ {re.escape(MARKUP_AUTHORITY)}: 19 days left {until}", item.text), (
        item.text
    )
    assert browser.find_element(By.ID, "zone-note").text == "Times are in UTC."
    assert browser.find_elements(By.ID, "no-parties") == []
    assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]").text == "Key registry"
    assert severe_console_messages(browser) == []  # nothing refused by the policy, nothing broken


def test_with_script_the_registry_page_shows_its_times_in_the_readers_time_zone(
    browser: WebDriver, live_node: LiveNode
) -> None:
    fingerprint = _add_party_with_a_certificate_ending_soon(live_node)
    in_time_zone(browser, "Asia/Tokyo")
    browser.get(f"{live_node.url}/web/registry")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "zone-note"), "Asia/Tokyo"))

    (item,) = browser.find_elements(
        By.CSS_SELECTOR, f"#expiring li[data-fingerprint='{fingerprint}']"
    )
    assert item.text.startswith(f"XZ {MARKUP_AUTHORITY}: 19 days left (until ")
    assert item.text.endswith(" UTC+9)"), item.text
    codes = [
        row.get_attribute("data-party")
        for row in browser.find_elements(By.CSS_SELECTOR, "#parties tbody tr")
    ]
    assert {"XA", "XB", "XZ"} <= set(codes) and len(codes) == len(set(codes))  # drawn once
    assert len(browser.find_elements(By.CSS_SELECTOR, "#expiring li")) == len(
        httpx.get(f"{live_node.url}/v1/registry/certificates/expiring").json()["certificates"]
    )


def test_an_empty_registry_says_so(sqlite_database: Database, tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path), sqlite_database))
    assert client.get("/v1/registry/parties").json()["parties"] == []

    page = client.get("/web/registry", headers={"Accept": "text/html"})

    assert page.status_code == 200
    assert '<p id="no-parties">No Parties registered.</p>' in page.text
    assert 'id="parties"' not in page.text  # no empty table
    assert re.search(r'<ul id="expiring">\s*<li>None.</li>\s*</ul>', page.text), page.text
