"""A real node on loopback (uvicorn in a thread) with a customs officer and one permit on file."""

from __future__ import annotations

import http.server
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from epix.api.app import create_app
from epix.auth import service as auth
from epix.auth.principal import Role
from epix.db import Database
from epix.exchange.demo import DemoSetup, bootstrap_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.settings import Settings
from epix.signatures.sign import sign_document
from tests.conftest import need, need_command

OFFICER = "officer-xb"
OFFICER_PASSWORD = "correct horse battery staple"


def create_officer(
    database: Database,
    username: str = OFFICER,
    password: str = OFFICER_PASSWORD,
    party: str = "XB",
    role: Role = Role.CUSTOMS,
) -> None:
    """A person of ``party`` in ``role`` (customs unless said otherwise); XB is the importing
    Party of the permits on file."""
    hashed = auth.hash_password(password)
    with database.unit_of_work() as session:
        auth.create_user(
            session,
            username=username,
            party=party,
            authority=f"{party} {role.value.replace('_', ' ').title()} (DEMO)",
            roles=[role],
            password=hashed,
        )


@dataclass
class LiveNode:
    url: str
    permit_number: str
    demo: DemoSetup
    database: Database

    def add_customs_officer(self, username: str, password: str, party: str = "XB") -> None:
        create_officer(self.database, username, password, party)

    def end_web_sessions(self, username: str) -> None:
        """Every web session of ``username`` ends (as a password change or a log-out does)."""
        with self.database.unit_of_work() as session:
            auth.end_web_sessions(session, auth.get_user(session, username).id)

    def submit_permit(self, number: str, security_token: str | None = None) -> None:
        """XA's Management Authority signs permit ``number`` and submits it for XB (with
        ``security_token``, only XA, XB and those who present it may look it up).

        Issued yesterday: the demo permit is valid from 09:30 UTC on its issue day, so one
        issued today could not be endorsed before then (EPIX-STATE-002).
        """
        key_pem, cert_pem = self.demo.signing_identity("XA")
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        permit = demo_permit(number=number, issued=yesterday)
        signed = sign_document(write_permit(permit), key_pem, cert_pem)
        headers = {
            "Authorization": f"Bearer {self.demo.api_key('XA', 'management_authority')}",
            "Content-Type": "application/xml",
            "X-EPIX-Message-Id": f"msg-{uuid.uuid4().hex}",
            "X-EPIX-From": "XA",
            "X-EPIX-To": "XB",
            "X-EPIX-Document-Type": "permit",
        }
        if security_token is not None:
            headers["X-EPIX-Security-Token"] = security_token
        response = httpx.post(f"{self.url}/v1/messages", content=signed, headers=headers)
        assert response.status_code in (200, 201), response.text

    def as_issuer(self, method: str, path: str, body: dict[str, object]) -> httpx.Response:
        """A call by XA's Management Authority (cancel, replace)."""
        key = self.demo.api_key("XA", "management_authority")
        return httpx.request(
            method, f"{self.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_database(sqlite_database: Database) -> Database:
    """The live node's database: SQLite; a module overrides it to run on both backends."""
    return sqlite_database


@pytest.fixture
def web_time_zones() -> dict[str, str]:
    """EPIX_WEB_TIME_ZONES of the live node: its Parties' border posts keep UTC (a test
    parametrizes it to try others)."""
    return {"XA": "UTC", "XB": "UTC"}


@pytest.fixture
def live_node(
    tmp_path: Path, live_database: Database, web_time_zones: dict[str, str]
) -> Iterator[LiveNode]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=tmp_path / "data",
        node_base_url=url,
        run_worker_in_process=False,
        web_time_zones=web_time_zones,
    )
    demo = bootstrap_demo(live_database, settings)
    app = create_app(settings, live_database)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    node = LiveNode(url, f"XA-{uuid.uuid4().hex[:10].upper()}", demo, live_database)
    try:
        node.add_customs_officer(OFFICER, OFFICER_PASSWORD)
        node.submit_permit(node.permit_number)
        yield node
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _chromium(*, script: bool = True) -> Iterator[webdriver.Chrome]:
    need_command("chromium")
    driver_path = need_command("chromedriver")
    options = webdriver.ChromeOptions()
    options.binary_location = need_command("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for tests
    if not script:
        options.add_experimental_option(
            "prefs", {"profile.managed_default_content_settings.javascript": 2}
        )
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # a broken browser install is a missing real part
        need(False, f"a working Chromium ({exc})")
        raise
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    yield from _chromium()


@pytest.fixture
def browser_without_script() -> Iterator[webdriver.Chrome]:
    """Chromium with JavaScript switched off (as on a locked-down customs workstation)."""
    yield from _chromium(script=False)


OtherOrigin = Callable[[str], str]


@pytest.fixture
def page_of_another_origin(tmp_path: Path) -> Iterator[OtherOrigin]:
    """Serves an HTML body from another origin on loopback (another port: same site, other
    origin, as a sibling host would be); gives the page's URL."""
    pages = tmp_path / "other-origin"
    pages.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(pages), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def page(body: str) -> str:
        name = f"{uuid.uuid4().hex}.html"
        (pages / name).write_text(f"<!doctype html><title>other site</title>{body}")
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    try:
        yield page
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


class _PageSwapTolerantWait(WebDriverWait[WebDriver]):
    """A wait whose condition may poll while a navigation replaces the page: Chromium then
    answers "Node with given id does not belong to the document" (a plain WebDriverException,
    which WebDriverWait does not ignore), and the next poll sees the new page. Any other error
    still ends the wait."""

    def until(self, method: Callable[[WebDriver], Any], message: str = "") -> Any:
        def tolerant(driver: WebDriver) -> Any:
            try:
                return method(driver)
            except WebDriverException as error:
                if "does not belong to the document" in (error.msg or ""):
                    return False
                raise

        return super().until(tolerant, message)


def wait(browser: WebDriver) -> WebDriverWait[WebDriver]:
    return _PageSwapTolerantWait(browser, 15)


def log_in(
    browser: WebDriver, node: LiveNode, password: str = OFFICER_PASSWORD, username: str = OFFICER
) -> None:
    browser.get(f"{node.url}/web/login")
    submit_login(browser, password, username)


def submit_login(
    browser: WebDriver, password: str = OFFICER_PASSWORD, username: str = OFFICER
) -> None:
    """Type the officer's name and password into the login page that is open, and log in."""
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login-button").click()


def back_after_logging_out(browser: WebDriver, node: LiveNode, page: str) -> None:
    """Log in, check the node's permit on ``page`` (/web/check or /web/lookup), log out and go
    back in the browser's history, as the next person at a shared border post's browser may:
    the login page is asked for again, the permit not shown."""
    log_in(browser, node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.get(f"{node.url}{page}?party=XA&number={node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "verdict")))
    wait(browser).until(ec.visibility_of_element_located((By.ID, "logout-button"))).click()
    wait(browser).until(ec.url_contains("/web/login"))
    browser.back()
    wait(browser).until(ec.url_contains("/web/login?next="))


def fill_border_details(browser: WebDriver) -> None:
    """The endorse form's port, officer and transport document, as an officer types them."""
    browser.find_element(By.ID, "port").send_keys("NLRTM")
    browser.find_element(By.ID, "officer").send_keys("Officer J. Jansen")
    browser.find_element(By.ID, "transport").send_keys("AWB 074-12345675")


def rows_used(browser: WebDriver) -> list[str]:
    return [
        row.find_elements(By.TAG_NAME, "td")[6].text
        for row in browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr")
    ]


def severe_console_messages(browser: WebDriver) -> list[str]:
    """Every error in the browser console since it was last read (reading empties it)."""
    return [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def console_errors(browser: WebDriver) -> list[str]:
    """Errors in the browser console, less the API refusals the page itself shows (a refused
    fetch is always logged as a failed resource)."""
    api = f"{browser.current_url.split('/web/')[0]}/v1/"
    return [
        message
        for message in severe_console_messages(browser)
        if not ("Failed to load resource" in message and message.startswith(api))
    ]
