"""The permit check page where the page's script does not run: the browser sends the form to
/web/check, which looks the permit up by the same service call as the API (the same Party
scoping and audit) and answers with it on the page, every value escaped, under the strict
Content-Security-Policy."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.exchange.lookup import ACTION_LOOKUP
from tests.web.conftest import (
    OFFICER,
    LiveNode,
    back_after_logging_out,
    create_officer,
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
    create_officer(
        live_node.database, "officer-xc", "another long passphrase", "XC", Role.NODE_ADMIN
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


TOKEN = "issuer-secret-7f3a"
THIRD = "officer-xc"  # customs of a Party that is neither the issuer nor the destination
THIRD_PASSWORD = "another long passphrase"


@pytest.fixture
def permit_with_token(live_node: LiveNode) -> str:
    """A permit whose issuer set a security token, and a customs officer of XC who needs it."""
    number = f"{live_node.permit_number}-T"
    live_node.submit_permit(number, security_token=TOKEN)
    live_node.add_customs_officer(THIRD, THIRD_PASSWORD, party="XC")
    return number


def _check_with_token(browser: WebDriver, number: str, token: str) -> None:
    browser.find_element(By.ID, "token").send_keys(token)
    _check(browser, "XA", number)


def test_without_script_a_permit_with_a_security_token_is_checked_with_it(
    browser_without_script: WebDriver, live_node: LiveNode, permit_with_token: str
) -> None:
    """The token goes in the form's body (a POST), so it is in no address the browser keeps or
    sends on, nor in the page or the audit trail; the permit is found as the API finds it."""
    browser = browser_without_script
    log_in(browser, live_node, THIRD_PASSWORD, THIRD)
    wait(browser).until(ec.url_contains("/web/lookup"))
    _check_with_token(browser, permit_with_token, TOKEN)
    verdict = wait(browser).until(ec.visibility_of_element_located((By.ID, "verdict")))

    assert verdict.text == "Signature valid"
    assert browser.find_element(By.ID, "fact-number").text == f"XA {permit_with_token}"
    assert browser.current_url == f"{live_node.url}/web/check"
    assert TOKEN not in browser.page_source
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""
    history = browser.execute_cdp_cmd("Page.getNavigationHistory", {})["entries"]
    assert all(TOKEN not in entry["url"] for entry in history)
    assert severe_console_messages(browser) == []
    lookups = _lookups(live_node, permit_with_token)
    assert [(event.outcome, event.actor_username) for event in lookups] == [("ok", THIRD)]
    assert all(TOKEN not in repr(vars(event)) for event in lookups)


@pytest.fixture
def access_lines(live_node: LiveNode) -> Iterator[list[str]]:
    """The live node's access log lines (uvicorn's, after its secret-query filter) while the
    test runs."""
    logger = logging.getLogger("uvicorn.access")
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_without_script_a_wrong_or_missing_token_is_refused_as_the_api_refuses_it(
    live_node: LiveNode, permit_with_token: str, access_lines: list[str]
) -> None:
    with httpx.Client(base_url=live_node.url, headers={"Accept": "text/html"}) as client:
        login = client.post("/web/login", data={"username": THIRD, "password": THIRD_PASSWORD})
        assert login.status_code == 303, login.text
        path = f"/v1/permits/XA/{permit_with_token}"
        api = client.get(path, params={"token": "nope-nope"}, headers={"Accept": "*/*"})
        wrong = client.post(
            "/web/check", data={"party": "XA", "number": permit_with_token, "token": "nope-nope"}
        )
        without = client.post(
            "/web/check", data={"party": "XA", "number": permit_with_token, "token": " "}
        )
        assert without.status_code == 303  # no token: the check's own address, which reloads
        assert without.headers["location"] == f"/web/check?party=XA&number={permit_with_token}"
        missing = client.get(without.headers["location"])
        right = client.post(
            "/web/check", data={"party": "xa", "number": permit_with_token, "token": TOKEN}
        )
    assert api.status_code == wrong.status_code == missing.status_code == 404
    assert api.json()["code"] == "EPIX-STATE-007"
    assert "EPIX-STATE-007" in wrong.text and "EPIX-STATE-007" in missing.text
    assert right.status_code == 200 and 'id="verdict"' in right.text
    assert right.headers["cache-control"] == "no-store"
    assert TOKEN not in right.text
    assert any("POST /web/check " in line for line in access_lines), access_lines
    assert any("token=[redacted]" in line for line in access_lines)  # the API's lookup
    assert not [line for line in access_lines if TOKEN in line or "nope-nope" in line]


def test_without_script_a_token_check_when_logged_out_asks_for_the_token_again(
    browser_without_script: WebDriver, live_node: LiveNode, permit_with_token: str
) -> None:
    """The token is kept nowhere while the officer logs in: back on the check page, with the
    permit filled in, the page says to type it again."""
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/lookup")
    _check_with_token(browser, permit_with_token, TOKEN)
    wait(browser).until(ec.url_contains("/web/login"))
    assert TOKEN not in browser.current_url
    submit_login(browser, THIRD_PASSWORD, THIRD)
    notice = wait(browser).until(ec.visibility_of_element_located((By.ID, "notice")))
    assert "security token again" in notice.text
    assert browser.find_element(By.ID, "number").get_attribute("value") == permit_with_token
    assert _lookups(live_node, permit_with_token) == []
    browser.find_element(By.ID, "token").send_keys(TOKEN)  # party and number are there
    browser.find_element(By.ID, "lookup-button").click()
    status = wait(browser).until(ec.visibility_of_element_located((By.ID, "status")))
    assert status.text == "ISSUED"


def test_a_token_check_posted_by_another_site_is_refused(
    live_node: LiveNode, permit_with_token: str
) -> None:
    with httpx.Client(base_url=live_node.url, headers={"Accept": "text/html"}) as client:
        client.post("/web/login", data={"username": THIRD, "password": THIRD_PASSWORD})
        response = client.post(
            "/web/check",
            data={"party": "XA", "number": permit_with_token, "token": TOKEN},
            headers={"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"},
        )
    assert response.status_code == 403
    assert "EPIX-AUTH-012" in response.text
    assert _lookups(live_node, permit_with_token) == []
