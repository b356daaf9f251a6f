"""The permit check page where the page's script does not run: the browser sends the form to
/web/check, which looks the permit up by the same service call as the API (the same Party
scoping and audit) and answers with it on the page, every value escaped, under the strict
Content-Security-Policy."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth import service as auth
from epix.auth.principal import Role
from epix.exchange.lookup import ACTION_LOOKUP
from tests.web.conftest import (
    OFFICER,
    LiveNode,
    back_after_logging_out,
    log_in,
    rows_used,
    severe_console_messages,
    submit_login,
    wait,
)

pytestmark = pytest.mark.browser


def _check(browser: WebDriver, party: str, number: str) -> None:
    browser.find_element(By.ID, "party").send_keys(party)
    browser.find_element(By.ID, "number").send_keys(number)
    browser.find_element(By.ID, "lookup-button").click()


def _lookups(node: LiveNode, number: str) -> list[AuditEvent]:
    with node.database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == ACTION_LOOKUP, AuditEvent.permit_number == number)
                .order_by(AuditEvent.sequence)
            )
        )


def test_without_script_an_officer_checks_a_permit_on_a_page_the_node_answers(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    typed = live_node.permit_number.lower()  # copied from paper: found as printed
    _check(browser, "xa", f" {typed[:4]} {typed[4:]}")
    verdict = wait(browser).until(ec.visibility_of_element_located((By.ID, "verdict")))

    assert "/web/check?" in browser.current_url
    assert verdict.text == "Signature valid"
    assert browser.find_element(By.ID, "status").text == "ISSUED"
    assert browser.find_element(By.ID, "fact-number").text == f"XA {live_node.permit_number}"
    validity = browser.find_element(By.ID, "fact-validity").text
    assert validity.count(" UTC") == 2, validity
    assert "(XA)" in browser.find_element(By.ID, "fact-signer").text
    assert rows_used(browser) and all(used == "0" for used in rows_used(browser))
    species = browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr td")[1].text
    assert species not in ("", "—")
    assert browser.find_element(By.ID, "flags").text
    assert "message.submit ok (XA" in browser.find_element(By.ID, "history").text
    qr = browser.find_element(By.ID, "qr").get_attribute("src") or ""
    assert httpx.get(qr).headers["content-type"] == "image/svg+xml"
    assert browser.find_element(By.CSS_SELECTOR, "nav a[aria-current=page]").text == (
        "Check a permit"
    )
    assert severe_console_messages(browser) == []  # nothing refused by the policy, nothing broken

    # As the script does it: the number as typed, then as printed, both in the officer's name.
    lookups = _lookups(live_node, live_node.permit_number)
    assert [(event.outcome, event.actor_username) for event in lookups] == [("ok", OFFICER)]
    typed_first = _lookups(live_node, f"{typed[:4]} {typed[4:]}")
    assert [event.outcome for event in typed_first] == ["EPIX-STATE-007"]


def test_without_script_a_permit_not_on_file_is_refused_on_the_page(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    _check(browser, "XA", "NO-SUCH-PERMIT")
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-STATE-007" in problem.text
    assert browser.find_elements(By.ID, "result") == []
    assert browser.find_element(By.ID, "number").get_attribute("value") == "NO-SUCH-PERMIT"


def test_without_script_not_logged_in_goes_to_the_login_page_and_back(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/lookup")
    _check(browser, "XA", live_node.permit_number)
    wait(browser).until(ec.url_contains("/web/login"))
    assert _lookups(live_node, live_node.permit_number) == []
    submit_login(browser)
    status = wait(browser).until(ec.visibility_of_element_located((By.ID, "status")))
    assert status.text == "ISSUED"
    assert "/web/check?" in browser.current_url


def test_without_script_what_an_issuer_wrote_is_shown_as_text(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    """A value the page shows is never markup: the policy would keep a script from running,
    but it must not even reach the page as HTML."""
    cancelled = f"{live_node.permit_number}-C"
    live_node.submit_permit(cancelled)
    reason = '<b id="injected">bold</b><script>document.title="ran"</script> & more'
    path = f"/v1/permits/XA/{cancelled}/cancel"
    assert live_node.as_issuer("POST", path, {"reason": reason}).status_code == 200
    browser = browser_without_script
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    _check(browser, "XA", cancelled)
    detail = wait(browser).until(ec.visibility_of_element_located((By.ID, "status-detail")))
    assert browser.find_element(By.ID, "status").text == "CANCELLED"
    assert reason in detail.text
    assert browser.find_elements(By.ID, "injected") == []
    assert detail.find_elements(By.TAG_NAME, "script") == []


def test_with_script_the_check_form_still_stays_on_the_page(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """The script's check is unchanged: it asks the API, the page is not sent to /web/check,
    and the permit is looked up once."""
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    _check(browser, "XA", live_node.permit_number)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert browser.current_url.endswith("/web/lookup")
    assert browser.find_element(By.ID, "endorse-form").is_displayed()
    assert [event.path for event in _lookups(live_node, live_node.permit_number)] == [
        f"/v1/permits/XA/{live_node.permit_number}"
    ]


def test_the_check_page_shows_no_permit_the_api_would_not(live_node: LiveNode) -> None:
    """Party scoping as for the API: a user of a Party that is neither the issuer nor the
    destination, in a role that does not check permits, gets the same EPIX-STATE-007, and the
    refusal is audited the same way."""
    password = auth.hash_password("another long passphrase")
    with live_node.database.unit_of_work() as session:
        auth.create_user(
            session,
            username="officer-xc",
            party="XC",
            authority="XC node operator (DEMO)",
            roles=[Role.NODE_ADMIN],
            password=password,
        )
    with httpx.Client(base_url=live_node.url, headers={"Accept": "text/html"}) as client:
        login = client.post(
            "/web/login", data={"username": "officer-xc", "password": "another long passphrase"}
        )
        assert login.status_code == 303, login.text
        number = live_node.permit_number
        api = client.get(f"/v1/permits/XA/{number}", headers={"Accept": "application/json"})
        page = client.get("/web/check", params={"party": "XA", "number": number})
    assert api.status_code == page.status_code == 404
    assert api.json()["code"] == "EPIX-STATE-007"
    assert "EPIX-STATE-007" in page.text
    assert 'id="result"' not in page.text
    refused = [(event.outcome, event.actor_username) for event in _lookups(live_node, number)]
    assert refused == [("EPIX-STATE-007", "officer-xc")] * 2


def test_a_checked_permit_is_not_shown_again_from_the_cache_after_logging_out(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """A border post's browser is shared: once the officer has logged out, going back in its
    history must not show the permit checked before from the browser's cache (the page is
    answered with Cache-Control: no-store and asked for again, without the session)."""
    back_after_logging_out(browser, live_node, "/web/check")
    assert browser.find_elements(By.ID, "verdict") == []
    assert live_node.permit_number not in browser.page_source
