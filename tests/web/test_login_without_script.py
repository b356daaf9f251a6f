"""Forms sent when the page's script has not run (switched off, or the person pressed Enter
before it loaded): a password or a permit's security token never goes into the address, and
logging in still works."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from epix.api.app import create_app
from epix.db import Database
from epix.settings import Settings
from tests.web.conftest import (
    OFFICER,
    OFFICER_PASSWORD,
    LiveNode,
    create_officer,
    submit_login,
    wait,
)


def _whoami(browser: WebDriver, node: LiveNode) -> httpx.Response:
    cookie = browser.get_cookie("epix_session")
    cookies = {"epix_session": cookie["value"]} if cookie else {}
    return httpx.get(f"{node.url}/v1/auth/whoami", cookies=cookies)


@pytest.mark.browser
def test_without_script_the_password_stays_out_of_the_address_and_the_login_works(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/login?next=/web/registry")
    submit_login(browser)
    wait(browser).until(ec.url_contains("/web/registry"))
    assert OFFICER_PASSWORD.split()[0] not in browser.current_url
    assert _whoami(browser, live_node).json()["username"] == OFFICER


@pytest.mark.browser
def test_without_script_a_wrong_password_is_shown_on_the_login_page(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/login")
    submit_login(browser, password="not the password")
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-AUTH-002" in problem.text
    assert browser.title == "Error: Log in · EPIX"
    assert "not the password" not in browser.current_url
    assert browser.find_element(By.ID, "username").get_attribute("value") == OFFICER
    assert _whoami(browser, live_node).status_code == 401


@pytest.fixture
def client(sqlite_database: Database, tmp_path: Path) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path), sqlite_database)
    return TestClient(app, headers={"Accept": "text/html"})


@pytest.mark.parametrize(
    ("next_page", "goes_to"),
    [
        ("/web/registry", "/web/registry"),
        ("/web/lookup?party=XA&number=N1", "/web/lookup?party=XA&number=N1"),
        ("https://evil.example/web/x", "/web/lookup"),
        ("//evil.example/web/x", "/web/lookup"),
        ("/\\evil.example/web/x", "/web/lookup"),
        ("/web/login", "/web/lookup"),
        ("/v1/users", "/web/lookup"),
        # Dot segments, as the browser (and epix.js returnPath) resolve them: not under /web/.
        ("/web/../v1/users", "/web/lookup"),
        ("/web/%2E%2e/v1/users", "/web/lookup"),
        ("/web/./../web/login", "/web/lookup"),
        ("/web/./registry", "/web/registry"),
    ],
)
def test_the_form_login_returns_only_to_a_page_of_this_node(
    client: TestClient, live_officer: None, next_page: str, goes_to: str
) -> None:
    response = client.post(
        "/web/login",
        params={"next": next_page},
        data={"username": OFFICER, "password": OFFICER_PASSWORD},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == goes_to


def test_another_site_cannot_log_a_browser_in(client: TestClient, live_officer: None) -> None:
    response = client.post(
        "/web/login",
        data={"username": OFFICER, "password": OFFICER_PASSWORD},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "EPIX-AUTH-012" in response.text
    assert "came from another site" in response.text
    assert "epix_session" not in response.cookies


def test_an_empty_form_is_refused_on_the_page(client: TestClient) -> None:
    response = client.post("/web/login", data={"username": " "})
    assert response.status_code == 422
    assert "Enter the user name and the password." in response.text


@pytest.fixture
def live_officer(sqlite_database: Database) -> None:
    create_officer(sqlite_database)


@pytest.mark.browser
def test_a_lookup_sent_before_the_script_runs_keeps_the_security_token_out_of_the_address(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/lookup")
    browser.find_element(By.ID, "party").send_keys("XA")
    browser.find_element(By.ID, "number").send_keys(live_node.permit_number)
    browser.find_element(By.ID, "token").send_keys("issuer-secret-token")
    browser.find_element(By.ID, "lookup-button").click()
    # Not logged in: on to the login page, to come back to the form (the token typed again).
    wait(browser).until(ec.url_contains("number%3D"))
    assert "issuer-secret-token" not in unquote(browser.current_url)


@pytest.mark.browser
def test_without_script_an_officer_logs_out_and_the_session_ends_on_the_node(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    """At a shared border post without script the next person must not find the officer
    logged in: the Log out button is a form, and the node ends the session (a copy of the
    cookie kept from before is refused too), not only the browser's cookie."""
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/login")
    assert not browser.find_element(By.ID, "logout-button").is_displayed()  # no one to log out
    submit_login(browser)
    wait(browser).until(ec.url_contains("/web/lookup"))
    cookie = browser.get_cookie("epix_session")
    assert cookie is not None
    wait(browser).until(ec.element_to_be_clickable((By.ID, "logout-button"))).click()

    wait(browser).until(ec.url_to_be(f"{live_node.url}/web/login"))
    assert not browser.find_element(By.ID, "logout-button").is_displayed()
    assert _whoami(browser, live_node).status_code == 401
    copied = httpx.get(f"{live_node.url}/v1/auth/whoami", cookies={"epix_session": cookie["value"]})
    assert copied.status_code == 401
    browser.get(f"{live_node.url}/web/check?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.url_contains("/web/login?next="))


def test_a_log_out_form_on_another_site_is_refused(live_node: LiveNode) -> None:
    """Another site's page must not end the officer's session either (EPIX-AUTH-012)."""
    with httpx.Client(base_url=live_node.url, headers={"Accept": "text/html"}) as client:
        client.post("/web/login", data={"username": OFFICER, "password": OFFICER_PASSWORD})
        refused = client.post("/web/logout", headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403 and "EPIX-AUTH-012" in refused.text
        assert client.get("/v1/auth/whoami").status_code == 200
        ended = client.post("/web/logout")
        assert ended.status_code == 303 and ended.headers["location"] == "/web/login"
        assert client.get("/v1/auth/whoami").status_code == 401
