"""Another site cannot make a logged-in browser act on the API: not even a GET, which leases the
Party's inbox or records a lookup in the person's name."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.web.conftest import OFFICER, LiveNode, OtherOrigin, log_in, wait


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
