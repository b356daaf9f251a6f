"""A browser opening an address the node refuses gets a page a person reads, never JSON or a
traceback; the API and scripts keep problem+json."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from epix.api.app import create_app
from epix.db import Database
from epix.settings import Settings
from tests.web.conftest import LiveNode, wait

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _boom() -> None:
    raise RuntimeError("secret detail of a bug")


@pytest.fixture
def client(sqlite_database: Database, tmp_path: Path) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path), sqlite_database)
    app.add_api_route("/web/boom", _boom)
    return TestClient(app, raise_server_exceptions=False, headers={"Accept": BROWSER_ACCEPT})


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "title"),
    [
        ("GET", "/web/no-such-page", 404, "EPIX-REQ-005", "Page not found"),
        ("GET", "/no-such-page", 404, "EPIX-REQ-005", "Page not found"),
        ("POST", "/web/lookup", 405, "EPIX-REQ-006", "Page not found"),
        ("GET", "/web/boom", 500, "EPIX-REQ-007", "Something went wrong"),
        # Refused before routing: the check page's number with a NUL pasted in.
        (
            "GET",
            "/web/check?party=XA&number=26XA%000123",
            400,
            "EPIX-REQ-009",
            "The request was refused",
        ),
    ],
)
def test_a_refused_address_is_a_page_in_a_browser(
    client: TestClient, method: str, path: str, status: int, code: str, title: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert f"<title>{title} · EPIX</title>" in response.text
    assert f'data-code="{code}"' in response.text
    assert "Traceback" not in response.text and "secret detail" not in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"  # as every page


def test_the_endorse_answers_address_opened_again_leads_to_the_check_page(
    client: TestClient,
) -> None:
    """Enter in the address bar on an endorsement's answer page sends a GET to the form's
    address: not a refusal, but the way back to checking a permit."""
    response = client.get("/web/endorse", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/web/lookup")


def test_what_was_typed_into_the_address_is_only_text(client: TestClient) -> None:
    response = client.get("/web/<script>alert(1)</script>")
    assert response.status_code == 404
    assert "<script>alert" not in response.text


def test_the_api_and_scripts_keep_problem_json(client: TestClient) -> None:
    api = client.get("/v1/no-such-thing")  # a browser opening the API gets the API's answer
    script = client.get("/web/no-such-page", headers={"Accept": "application/json"})
    for response in (api, script):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "EPIX-REQ-005"


@pytest.mark.browser
def test_a_mistyped_address_is_a_page_that_leads_back(
    browser: WebDriver, live_node: LiveNode
) -> None:
    browser.get(f"{live_node.url}/web/lookpu")
    assert browser.title == "Page not found · EPIX"
    assert browser.find_element(By.TAG_NAME, "h1").text == "Page not found"
    assert "{" not in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.LINK_TEXT, "Go to Check a permit").click()
    wait(browser).until(ec.url_contains("/web/lookup"))
    blocked = [
        e["message"] for e in browser.get_log("browser") if "Security Policy" in e["message"]
    ]
    assert blocked == []  # the error page's own script and style are allowed
