"""Another site cannot make a logged-in browser act on the API: not even a GET, which leases the
Party's inbox or records a lookup in the person's name."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from epix.api.app import create_app
from epix.auth import service as auth
from epix.auth.principal import Role
from epix.db import Database
from epix.settings import Settings
from tests.web.conftest import OFFICER, OFFICER_PASSWORD, LiveNode, OtherOrigin, log_in, wait


def _pull_inbox(node: LiveNode) -> list[object]:
    key = node.demo.api_key("XB", "management_authority")
    answer = httpx.get(f"{node.url}/v1/inbox", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    entries: list[object] = answer.json()["entries"]
    return entries


@pytest.mark.browser
def test_a_link_on_another_site_cannot_lease_the_partys_inbox(
    browser: WebDriver, live_node: LiveNode, page_of_another_origin: OtherOrigin
) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(page_of_another_origin(f'<a id="go" href="{live_node.url}/v1/inbox">x</a>'))
    browser.find_element(By.ID, "go").click()
    wait(browser).until(ec.url_contains("/v1/inbox"))
    assert "EPIX-AUTH-009" in browser.find_element(By.TAG_NAME, "body").text
    assert len(_pull_inbox(live_node)) == 1  # the permit for XB is still there for its system
    # The officer is still logged in (another site cannot log them out either) and the node's
    # own pages work, as an address typed by the officer does.
    browser.get(f"{live_node.url}/web/lookup")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{live_node.url}/v1/auth/whoami")
    assert OFFICER in browser.find_element(By.TAG_NAME, "body").text


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "same-site"}],
    ids=["origin", "sec-fetch-site"],
)
def test_another_site_cannot_log_the_officer_out(
    sqlite_database: Database, tmp_path: Path, headers: dict[str, str]
) -> None:
    with sqlite_database.unit_of_work() as session:
        auth.create_user(
            session,
            username=OFFICER,
            party="XB",
            authority="XB Customs",
            roles=[Role.CUSTOMS],
            password=OFFICER_PASSWORD,
        )
    client = TestClient(create_app(Settings(data_dir=tmp_path), sqlite_database))
    login = {"username": OFFICER, "password": OFFICER_PASSWORD}
    assert client.post("/v1/auth/login", json=login).status_code == 200
    refused = client.post("/v1/auth/logout", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (401, "EPIX-AUTH-009")
    assert client.get("/v1/auth/whoami").json()["username"] == OFFICER
    assert client.post("/v1/auth/logout").status_code == 204  # from the node's own page
    assert client.get("/v1/auth/whoami").status_code == 401
