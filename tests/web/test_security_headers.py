"""Browser security headers on every answer: pages, API, static files, refusals, the 500."""

from __future__ import annotations

from pathlib import Path

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
    OtherOrigin,
    create_officer,
    log_in,
    wait,
)

ANSWERS = [
    ("GET", "/web/login"),
    ("GET", "/web/lookup"),
    ("GET", "/web/registry"),
    ("GET", "/web/static/epix.js"),
    ("GET", "/web/qr.svg?party=XA&number=N1"),
    ("GET", "/web/no-such-page"),
    ("POST", "/web/lookup"),
    ("POST", "/web/endorse"),  # not logged in: the login page keeping the form
    ("POST", "/web/logout"),
    ("GET", "/v1/permits/XA/N1"),  # 401
    ("GET", "/healthz"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/reference-assets/swagger-ui-start.js"),
    ("GET", "/openapi.json"),
    ("POST", "/healthz?x=%00"),  # refused by a middleware
]


def _boom() -> None:
    raise RuntimeError("a bug")


@pytest.fixture
def client(sqlite_database: Database, tmp_path: Path) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path), sqlite_database)
    app.add_api_route("/web/boom", _boom)  # an unexpected error on a page
    app.add_api_route("/v1/boom", _boom)  # and in the API
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("method", "path"), [*ANSWERS, ("GET", "/web/boom")])
def test_every_answer_forbids_framing_sniffing_and_foreign_scripts(
    client: TestClient, method: str, path: str
) -> None:
    headers = client.request(method, path).headers
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "object-src 'none'" in policy
    assert "script-src 'self';" in policy  # no inline script, the API reference included
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"
    assert "strict-transport-security" not in headers  # plain http: HSTS would mean nothing


@pytest.mark.parametrize(
    ("method", "path", "status", "cache_control"),
    [
        ("GET", "/web/login", 200, "no-store"),  # a page
        ("GET", "/web/no-such-page", 404, "no-store"),
        ("GET", "/v1/permits/XA/N1", 401, "no-store"),  # an API refusal
        ("GET", "/v1/boom", 500, "no-store"),  # sent from outside the middleware stack
        ("GET", "/web/boom", 500, "no-store"),
        ("POST", "/healthz?x=%00", 400, "no-store"),  # refused by a middleware
        ("GET", "/redoc", 200, "no-store"),  # its nonce is of this answer only
        ("GET", "/docs", 200, "no-store"),
        # The same files for everyone: the browser keeps them.
        ("GET", "/web/static/epix.js", 200, None),
        ("GET", "/reference-assets/swagger-ui-start.js", 200, None),
    ],
)
def test_no_answer_but_the_static_files_is_kept_by_a_cache(
    client: TestClient, method: str, path: str, status: int, cache_control: str | None
) -> None:
    """One rule (SecurityHeaders): a shared browser going back after a log-out asks the node
    again; the 500 of an unexpected error in the API was stored."""
    answer = client.request(method, path)
    assert answer.status_code == status
    assert answer.headers.get("cache-control") == cache_control


def test_an_api_answer_is_not_kept_by_a_cache(
    client: TestClient, sqlite_database: Database
) -> None:
    create_officer(sqlite_database)
    login = client.post("/v1/auth/login", json={"username": OFFICER, "password": OFFICER_PASSWORD})
    whoami = client.get("/v1/auth/whoami")
    assert [login.status_code, whoami.status_code] == [200, 200]
    assert [login.headers["cache-control"], whoami.headers["cache-control"]] == ["no-store"] * 2


def test_a_node_on_https_asks_browsers_to_stay_on_https(
    sqlite_database: Database, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, node_base_url="https://epix.example.org")
    client = TestClient(create_app(settings, sqlite_database), base_url="https://epix.example.org")
    assert client.get("/web/login").headers["strict-transport-security"] == "max-age=31536000"


@pytest.fixture
def other_site(live_node: LiveNode, page_of_another_origin: OtherOrigin) -> str:
    """A page of another origin that frames the node's check page (clickjacking)."""
    return page_of_another_origin(f'<iframe src="{live_node.url}/web/lookup"></iframe>')


@pytest.mark.browser
def test_another_site_cannot_frame_the_pages(
    browser: WebDriver, live_node: LiveNode, other_site: str
) -> None:
    browser.get(other_site)
    wait(browser).until(
        lambda driver: any(
            "frame-ancestors" in entry["message"] for entry in driver.get_log("browser")
        )
    )


def test_no_api_answer_is_kept_by_a_browser_cache(live_node: LiveNode) -> None:
    """A Party's data from /v1 (a permit, its XML, a refusal alike) is not stored."""
    permit = f"/v1/permits/XA/{live_node.permit_number}"
    key = live_node.demo.api_key("XB", "customs")
    with httpx.Client(base_url=live_node.url, headers={"Authorization": f"Bearer {key}"}) as api:
        answers = [api.get(permit), api.get(f"{permit}/xml"), api.get("/v1/permits/XA/NONE")]
    assert [answer.status_code for answer in answers] == [200, 200, 404]
    assert [answer.headers.get("cache-control") for answer in answers] == ["no-store"] * 3


@pytest.mark.browser
def test_going_back_after_logging_out_does_not_show_a_permit_opened_from_the_api(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """An officer may open a permit's /v1 address in the shared browser (its JSON, its XML):
    after logging out, going back in the history asks the node again (401), where Chromium
    showed the permit from its cache."""
    permit = f"{live_node.url}/v1/permits/XA/{live_node.permit_number}"
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    for address in (permit, f"{permit}/xml"):
        browser.get(address)
        assert live_node.permit_number in browser.page_source  # logged in: shown
    browser.get(f"{live_node.url}/web/lookup")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "logout-button"))).click()
    wait(browser).until(ec.url_contains("/web/login"))
    shown = {}
    for _ in range(5):
        browser.back()
        if browser.current_url.startswith(permit):
            shown[browser.current_url] = browser.page_source
        if browser.current_url == permit:
            break
    assert set(shown) == {permit, f"{permit}/xml"}
    for address, page in shown.items():
        assert live_node.permit_number not in page, address
        assert "EPIX-AUTH-" in page, address
