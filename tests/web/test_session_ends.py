"""A web session that ends while an officer fills a form: after logging in again they are back on
the same page with what they typed, nothing was sent for them, and their submission counts once."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.web.conftest import OFFICER, LiveNode, log_in, rows_used, submit_login, wait

pytestmark = pytest.mark.browser


def value_of(browser: WebDriver, name: str) -> str:
    return str(browser.find_element(By.NAME, name).get_attribute("value"))


def type_into(browser: WebDriver, name: str, value: str) -> None:
    field = browser.find_element(By.NAME, name)
    field.clear()
    field.send_keys(value)


def open_permit_page(browser: WebDriver, node: LiveNode, page: str, shown: str) -> None:
    """Log in and open the node's permit on ``page`` (/web/lookup or /web/check), until the
    element ``shown`` is."""
    log_in(browser, node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{node.url}{page}?party=XA&number={node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, shown)))


def endorsements_in_history(browser: WebDriver) -> int:
    return sum(
        "endorsement.record" in item.text
        for item in browser.find_elements(By.CSS_SELECTOR, "#history li")
    )


def test_endorse_form_survives_the_session_ending_and_is_sent_once(
    browser: WebDriver, live_node: LiveNode
) -> None:
    open_permit_page(browser, live_node, "/web/lookup", "result")
    type_into(browser, "port", "NLRTM")
    type_into(browser, "officer", "Officer J. Jansen")
    type_into(browser, "transport", "AWB 074-12345675")
    type_into(browser, "qty-1", "10")
    browser.find_element(By.NAME, "qty-2").clear()  # only line 1 crosses today
    browser.find_element(By.NAME, "qty-3").clear()
    browser.find_element(By.NAME, "qty-4").clear()

    live_node.end_web_sessions(OFFICER)  # as a password change or a log-out elsewhere does
    browser.find_element(By.ID, "endorse-button").click()

    wait(browser).until(ec.url_contains("/web/login"))
    assert "what you typed is kept" in browser.find_element(By.ID, "notice").text
    submit_login(browser)
    wait(browser).until(lambda b: value_of(b, "port") == "NLRTM")
    assert browser.current_url.startswith(f"{live_node.url}/web/lookup?party=XA&number=")
    assert value_of(browser, "officer") == "Officer J. Jansen"
    assert value_of(browser, "transport") == "AWB 074-12345675"
    quantities = [value_of(browser, f"qty-{line}") for line in (1, 2, 3, 4)]
    assert quantities == ["10", "", "", ""]
    assert "it was not sent" in browser.find_element(By.ID, "notice").text
    assert rows_used(browser) == ["0", "0", "0", "0"]  # nothing was endorsed for them
    assert endorsements_in_history(browser) == 0

    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(lambda b: rows_used(b)[0] == "10")
    assert rows_used(browser) == ["10", "0", "0", "0"]
    assert endorsements_in_history(browser) == 1


def test_lookup_form_survives_a_log_out_in_another_tab(
    browser: WebDriver, live_node: LiveNode
) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    first_tab = browser.current_window_handle
    browser.find_element(By.ID, "party").send_keys("XA")
    browser.find_element(By.ID, "number").send_keys(live_node.permit_number)

    browser.switch_to.new_window("tab")
    browser.get(f"{live_node.url}/web/lookup")
    wait(browser).until(ec.element_to_be_clickable((By.ID, "logout-button"))).click()
    wait(browser).until(ec.url_contains("/web/login"))
    browser.close()
    browser.switch_to.window(first_tab)

    browser.find_element(By.ID, "lookup-button").click()
    wait(browser).until(ec.url_contains("/web/login"))
    submit_login(browser)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert browser.current_url == f"{live_node.url}/web/lookup"
    assert value_of(browser, "party") == "XA"
    assert live_node.permit_number in browser.find_element(By.ID, "fact-number").text


def test_typed_values_go_back_only_to_the_person_who_typed_them(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """On a shared tablet the next officer to log in does not get the previous one's form."""
    open_permit_page(browser, live_node, "/web/lookup", "result")
    type_into(browser, "port", "NLRTM")
    type_into(browser, "officer", "Officer J. Jansen")
    type_into(browser, "transport", "AWB 074-12345675")
    live_node.end_web_sessions(OFFICER)
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.url_contains("/web/login"))

    colleague, password = "officer-xb-2", "another long passphrase"
    live_node.add_customs_officer(colleague, password)
    browser.find_element(By.ID, "username").send_keys(colleague)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login-button").click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), colleague))
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert value_of(browser, "transport") == ""
    assert "typed" not in browser.find_element(By.ID, "notice").text


def test_login_returns_only_to_a_page_of_this_node(browser: WebDriver, live_node: LiveNode) -> None:
    """No open redirect: ``next`` is followed only to a page under /web/ of this origin."""
    for next_path in (
        "https://attacker.example/web/lookup",
        "//attacker.example/web/lookup",
        "/\\attacker.example/web/lookup",
        "javascript:alert(1)//web/",
        "/web/login",
        "/v1/auth/whoami",
    ):
        browser.get(f"{live_node.url}/web/login?next={quote(next_path, safe='')}")
        submit_login(browser)
        wait(browser).until(ec.url_to_be(f"{live_node.url}/web/lookup"))
    browser.get(f"{live_node.url}/web/login?next={quote('/web/registry?x=1', safe='')}")
    submit_login(browser)
    wait(browser).until(ec.url_to_be(f"{live_node.url}/web/registry?x=1"))


def test_a_security_token_is_not_kept_while_the_officer_logs_in_again(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """The token is a secret printed on the paper permit: it stays out of the tab's storage like
    a password. Back from the login the permit is filled in, the officer is asked for the token
    again, and nothing is looked up without it (that could be refused as an unknown permit)."""
    token = "S3CRET-TOKEN-0042"
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.find_element(By.ID, "party").send_keys("XA")
    browser.find_element(By.ID, "number").send_keys(live_node.permit_number)
    browser.find_element(By.ID, "token").send_keys(token)
    live_node.end_web_sessions(OFFICER)

    browser.find_element(By.ID, "lookup-button").click()
    wait(browser).until(ec.url_contains("/web/login"))
    kept = browser.execute_script("return sessionStorage.getItem('epix.typed-values')")
    assert live_node.permit_number in kept  # what was typed is kept ...
    assert token not in kept  # ... but the token
    submit_login(browser)
    wait(browser).until(
        ec.text_to_be_present_in_element((By.ID, "notice"), "Type the security token again")
    )
    assert value_of(browser, "party") == "XA"
    assert value_of(browser, "number") == live_node.permit_number
    assert value_of(browser, "token") == ""
    assert browser.switch_to.active_element.get_attribute("id") == "token"
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_the_check_pages_endorse_form_survives_the_session_ending_with_the_script_running(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """The check page (/web/check, a link, the QR code's way back) posts its endorse form to the
    node even where the script runs; the login page the node answers with carries what was
    typed, and its script must post it as it is, not log in by itself and lose it."""
    open_permit_page(browser, live_node, "/web/check", "endorse-form")
    type_into(browser, "port", "NLRTM")
    type_into(browser, "officer", "Officer J. Jansen")
    live_node.end_web_sessions(OFFICER)
    browser.find_element(By.ID, "endorse-button").click()

    wait(browser).until(ec.visibility_of_element_located((By.ID, "login-form")))
    assert "what you typed is kept" in browser.find_element(By.ID, "notice").text
    submit_login(browser)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-form")))
    assert value_of(browser, "port") == "NLRTM"
    assert value_of(browser, "officer") == "Officer J. Jansen"
    assert "it was not sent" in browser.find_element(By.ID, "notice").text
