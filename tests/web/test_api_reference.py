"""The API reference (/docs, /redoc) in a real browser under the node's strict policy: the
viewers draw the node's operations, and the browser reports no Content-Security-Policy
violation (no inline script to allow, no inline style but ReDoc's own)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.web.conftest import LiveNode, severe_console_messages, wait

SUBMIT_OPERATION = "submit_message_v1_messages_post"  # POST /v1/messages
# ReDoc's sidebar always links "API docs by Redocly" with a logo from Redocly's CDN: the
# policy keeps the node's pages from loading anything of another site, and ReDoc then leaves
# the image out. The one violation expected.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture
def watched_browser(browser: WebDriver) -> Iterator[WebDriver]:
    """Chromium that records every securitypolicyviolation event of the pages it opens, from
    before their first script runs (an injected script, which the page's policy does not cover)."""
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {
            "source": "window.cspViolations = [];"
            "document.addEventListener('securitypolicyviolation', (event) => "
            "window.cspViolations.push(`${event.effectiveDirective} ${event.blockedURI} "
            "${event.sourceFile}:${event.lineNumber}`));"
        },
    )
    yield browser


def _violations(browser: WebDriver) -> list[str]:
    """What the page reported as securitypolicyviolation, and the console's errors."""
    reported: list[str] = browser.execute_script("return window.cspViolations")
    console = severe_console_messages(browser)
    return [problem for problem in reported + console if REDOCLY_LOGO not in problem]


@pytest.mark.browser
def test_swagger_ui_draws_the_operations_under_the_strict_policy(
    watched_browser: WebDriver, live_node: LiveNode
) -> None:
    browser = watched_browser
    browser.get(f"{live_node.url}/docs")
    operation = wait(browser).until(
        ec.visibility_of_element_located(
            (By.CSS_SELECTOR, f"#operations-messages-{SUBMIT_OPERATION}")
        )
    )
    assert operation.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text == "POST"
    assert "/v1/messages" in operation.text
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()  # unfolds
    wait(browser).until(lambda driver: operation.find_elements(By.CSS_SELECTOR, ".responses-table"))
    assert _violations(browser) == []


@pytest.mark.browser
def test_redoc_draws_the_operations_under_the_strict_policy(
    watched_browser: WebDriver, live_node: LiveNode
) -> None:
    browser = watched_browser
    browser.get(f"{live_node.url}/redoc")
    section = wait(browser).until(
        ec.visibility_of_element_located(
            (By.CSS_SELECTOR, f'[data-section-id="operation/{SUBMIT_OPERATION}"]')
        )
    )
    assert "/v1/messages" in section.text
    # Drawn with its style: the sidebar sits beside the operations, not above them.
    sidebar = browser.find_element(By.CSS_SELECTOR, ".menu-content")
    assert sidebar.rect["x"] + sidebar.rect["width"] <= section.rect["x"]
    search = browser.find_element(By.CSS_SELECTOR, 'input[placeholder="Search..."]')
    search.send_keys("Submit a signed permit")  # searched in ReDoc's blob: worker
    wait(browser).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, '[data-role="search:results"] li')
    )
    assert _violations(browser) == []


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_api_reference_allows_no_inline_script(live_node: LiveNode, page: str) -> None:
    policy = httpx.get(f"{live_node.url}{page}").headers["content-security-policy"]
    script = re.search(r"(?:^|; )script-src ([^;]*)", policy)
    assert script is not None, policy
    assert script.group(1) == "'self'", policy
    assert "unsafe-inline" not in policy


def test_each_redoc_answer_has_its_own_nonce(live_node: LiveNode) -> None:
    first, second = (httpx.get(f"{live_node.url}/redoc") for _ in range(2))
    nonces = [
        re.findall(r"'nonce-([^']+)'", answer.headers["content-security-policy"])
        for answer in (first, second)
    ]
    assert len(nonces[0]) == 1 and nonces[0] != nonces[1]
    assert f'nonce="{nonces[0][0]}"' in first.text


def test_a_redoc_answer_is_not_stored_so_its_nonce_is_never_served_twice(
    live_node: LiveNode,
) -> None:
    """A nonce is good only if no one else gets the same one: a browser's or a proxy's cache
    must not keep the page and hand its nonce out again."""
    answer = httpx.get(f"{live_node.url}/redoc")
    assert answer.headers["cache-control"] == "no-store"
