"""Another site cannot make a logged-in browser act on the API: not even a GET, which leases the
Party's inbox or records a lookup in the person's name."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import text

from epix.api.app import create_app
from epix.db import Database
from epix.settings import Settings
from tests.web.conftest import (
    OFFICER,
    OFFICER_PASSWORD,
    LiveNode,
    OtherOrigin,
    create_officer,
    fill_border_details,
    log_in,
    wait,
)
from tests.web.proxy import AnswerDroppingProxy


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
    assert "EPIX-AUTH-012" in browser.find_element(By.TAG_NAME, "body").text
    assert len(_pull_inbox(live_node)) == 1  # the permit for XB is still there for its system
    # The officer is still logged in (another site cannot log them out either) and the node's
    # own pages work, as an address typed by the officer does.
    browser.get(f"{live_node.url}/web/lookup")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{live_node.url}/v1/auth/whoami")
    assert OFFICER in browser.find_element(By.TAG_NAME, "body").text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Sec-Fetch-Site": "same-site"},
    ],
    ids=["origin", "referer", "sec-fetch-site"],
)
def test_another_site_cannot_log_the_officer_out(
    sqlite_database: Database, tmp_path: Path, headers: dict[str, str]
) -> None:
    create_officer(sqlite_database)
    client = TestClient(create_app(Settings(data_dir=tmp_path), sqlite_database))
    login = {"username": OFFICER, "password": OFFICER_PASSWORD}
    assert client.post("/v1/auth/login", json=login).status_code == 200
    refused = client.post("/v1/auth/logout", headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "EPIX-AUTH-012")
    assert client.get("/v1/auth/whoami").json()["username"] == OFFICER
    with sqlite_database.engine.connect() as connection:  # audited as other such refusals are
        audited = connection.execute(
            text("SELECT outcome, path, detail FROM audit_events WHERE action = 'auth.refused'")
        ).all()
    assert [tuple(row) for row in audited] == [
        ("EPIX-AUTH-012", "/v1/auth/logout", '{"credential":"session"}')
    ]
    assert client.post("/v1/auth/logout").status_code == 204  # from the node's own page
    assert client.get("/v1/auth/whoami").status_code == 401


@pytest.fixture
def host_rewriting_proxy(live_node: LiveNode) -> Iterator[AnswerDroppingProxy]:
    """A reverse proxy that sends the node its own address as Host (nginx's bare
    ``proxy_pass``), with EPIX_NODE_BASE_URL naming the node, not the proxy: the node takes the
    pages' own writes, whose Origin is the proxy's, for another site's."""
    server = AnswerDroppingProxy(live_node.url, pass_host=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(timeout=10)


@pytest.mark.browser
def test_a_write_refused_as_cross_site_is_shown_on_the_page_not_sent_to_log_in(
    browser: WebDriver, live_node: LiveNode, host_rewriting_proxy: AnswerDroppingProxy
) -> None:
    """Logging in again cannot cure a cross-site refusal (EPIX-AUTH-012, 403): the page says
    what happened and keeps the officer where they are, logged in."""
    node = replace(live_node, url=host_rewriting_proxy.url)
    # Through such a proxy the login itself is a cross-site write: the login page says so.
    log_in(browser, node)
    wait(browser).until(lambda b: "EPIX-AUTH-012" in b.find_element(By.ID, "problem").text)
    assert "/web/login" in browser.current_url
    # Logged in at the node's own address (the cookie of 127.0.0.1 goes to either port).
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    lookup = f"{node.url}/web/lookup?party=XA&number={node.permit_number}"
    browser.get(lookup)
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "fact-number"), node.permit_number)
    )
    fill_border_details(browser)
    browser.find_element(By.ID, "endorse-button").click()
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    wait(browser).until(lambda b: "EPIX-AUTH-012" in problem.text)
    assert "another site" in problem.text
    assert browser.current_url == lookup  # not sent to the login page
    assert host_rewriting_proxy.endorsements[0][1] == 403

    # Log out is refused alike: the page says so instead of showing the login page as if the
    # officer were logged out.
    browser.find_element(By.ID, "logout-button").click()
    wait(browser).until(lambda b: "EPIX-AUTH-012" in b.find_element(By.ID, "problem").text)
    assert browser.current_url == lookup
    assert browser.find_element(By.ID, "who").text.startswith(OFFICER)


def _officer_logged_in(database: Database, client: TestClient) -> None:
    create_officer(database)
    login = {"username": OFFICER, "password": OFFICER_PASSWORD}
    assert client.post("/v1/auth/login", json=login).status_code == 200


def test_on_a_node_served_over_https_an_http_origin_is_another_site(
    sqlite_database: Database, tmp_path: Path
) -> None:
    """http://node and https://node are two origins: a page on the plain-http address (anyone on
    the network path can write one) must not act as the logged-in officer on the https node,
    whether the node sees https itself or behind a TLS proxy that passes requests on over http."""
    settings = Settings(data_dir=tmp_path, node_base_url="https://node.example")
    app = create_app(settings, sqlite_database)
    over_tls = TestClient(app, base_url="https://node.example")
    _officer_logged_in(sqlite_database, over_tls)
    cookie = {"Cookie": f"epix_session={over_tls.cookies['epix_session']}"}
    behind_proxy = TestClient(app, base_url="http://node.example")  # TLS ended in front
    for client in (over_tls, behind_proxy):
        for origin in ("http://node.example", "http://node.example:443", "https://node.example:80"):
            refused = client.post("/v1/auth/logout", headers={"Origin": origin, **cookie})
            assert (refused.status_code, refused.json()["code"]) == (403, "EPIX-AUTH-012"), origin
        login_page = client.post(
            "/web/login",
            data={"username": OFFICER, "password": OFFICER_PASSWORD},
            headers={"Origin": "http://node.example"},
            follow_redirects=False,
        )
        assert login_page.status_code == 403
        assert "EPIX-AUTH-012" in login_page.text
    assert over_tls.get("/v1/auth/whoami").json()["username"] == OFFICER  # still logged in
    # The node's own https origin, with or without its default port, is its own.
    accepted = behind_proxy.post(
        "/v1/auth/logout", headers={"Origin": "https://NODE.example:443", **cookie}
    )
    assert accepted.status_code == 204


def test_on_a_node_served_over_http_an_https_origin_is_another_site(
    sqlite_database: Database, tmp_path: Path
) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path), sqlite_database))
    _officer_logged_in(sqlite_database, client)
    for origin in ("https://testserver", "null", "http://testserver:8080", "http://[::1"):
        refused = client.post("/v1/auth/logout", headers={"Origin": origin})
        assert (refused.status_code, refused.json()["code"]) == (403, "EPIX-AUTH-012"), origin
    assert (
        client.post("/v1/auth/logout", headers={"Origin": "http://testserver"}).status_code == 204
    )


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/login-trap.html"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ],
    ids=["origin", "referer", "opaque-origin", "sec-fetch-site"],
)
def test_another_site_cannot_log_a_browser_into_an_account(
    database: Database, tmp_path: Path, headers: dict[str, str]
) -> None:
    """Login CSRF: a page of another site that posts the attacker's user name and password
    (JSON or the login form) would leave the victim working in the attacker's account, which
    records what they enter. Both logins are refused (403 EPIX-AUTH-012, no cookie) and each
    refusal is audited as another cross-site refusal is; a script sending neither Origin nor
    Referer, and the node's own pages, still log in."""
    create_officer(database)
    client = TestClient(create_app(Settings(data_dir=tmp_path), database))
    login = {"username": OFFICER, "password": OFFICER_PASSWORD}
    refused = client.post("/v1/auth/login", json=login, headers=headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "EPIX-AUTH-012")
    form = client.post("/web/login", data=login, headers=headers, follow_redirects=False)
    assert form.status_code == 403
    assert "EPIX-AUTH-012" in form.text
    assert "epix_session" not in refused.cookies and "epix_session" not in form.cookies
    assert client.get("/v1/auth/whoami").status_code == 401
    with database.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT action, outcome, path, detail FROM audit_events"
                " WHERE action <> 'user_created' ORDER BY sequence"
            )
        ).all()
    assert [(row.action, row.outcome, row.path) for row in rows] == [
        ("auth.refused", "EPIX-AUTH-012", "/v1/auth/login"),
        ("auth.refused", "EPIX-AUTH-012", "/web/login"),
    ]
    assert all(json.loads(row.detail) == {"credential": "password"} for row in rows)
    assert OFFICER_PASSWORD not in repr(rows)

    own_page = {"Origin": "http://testserver", "Referer": "http://testserver/web/login"}
    for sent in ({}, own_page, {"Referer": "http://testserver/web/login"}):
        assert client.post("/v1/auth/login", json=login, headers=sent).status_code == 200, sent
        assert client.get("/v1/auth/whoami").json()["username"] == OFFICER
        assert client.post("/v1/auth/logout").status_code == 204
    accepted = client.post("/web/login", data=login, headers=own_page, follow_redirects=False)
    assert accepted.status_code == 303
