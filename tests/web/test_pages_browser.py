"""The web pages in a real browser (Debian chromium): log in, check a permit, endorse it."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select

from epix.auth.principal import Role
from tests.web.conftest import (
    OFFICER,
    OFFICER_PASSWORD,
    LiveNode,
    back_after_logging_out,
    console_errors,
    create_officer,
    fill_border_details,
    log_in,
    rows_used,
    wait,
)

pytestmark = pytest.mark.browser


def test_wrong_password_shows_the_error_code(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node, password="not the password")
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-AUTH-002" in problem.text
    assert browser.current_url.endswith("/web/login")


def test_lookup_without_login_goes_to_the_login_page(
    browser: WebDriver, live_node: LiveNode
) -> None:
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.url_contains("/web/login"))


def test_officer_checks_and_endorses_a_permit(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.find_element(By.ID, "party").send_keys("XA")
    browser.find_element(By.ID, "number").send_keys(live_node.permit_number)
    browser.find_element(By.ID, "lookup-button").click()

    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert browser.find_element(By.ID, "verdict").text == "Signature valid"
    assert browser.find_element(By.ID, "status").text == "ISSUED"
    assert live_node.permit_number in browser.find_element(By.ID, "fact-number").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr")
    assert len(rows) >= 1
    qr = browser.find_element(By.ID, "qr")
    assert browser.execute_script("return arguments[0].naturalWidth", qr) > 0

    side = Select(browser.find_element(By.ID, "side"))
    assert side.first_selected_option.get_attribute("value") == "import"  # XB is the importer
    fill_border_details(browser)
    date_input = browser.find_element(By.ID, "date")
    browser.execute_script(
        "arguments[0].value = arguments[1]", date_input, date.today().isoformat()
    )
    browser.find_element(By.ID, "endorse-button").click()

    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "USED"))
    used = rows_used(browser)
    assert all(value != "0" for value in used)


def test_unknown_permit_shows_problem(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.find_element(By.ID, "party").send_keys("XA")
    browser.find_element(By.ID, "number").send_keys("NO-SUCH-PERMIT")
    browser.find_element(By.ID, "lookup-button").click()
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-STATE-007" in problem.text


def test_a_number_typed_in_lower_case_with_spaces_finds_the_permit(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """As copied from paper: "xa-1a2b3 c4d5e" for the printed XA-1A2B3C4D5E."""
    number = live_node.permit_number
    typed = f"{number[:8]} {number[8:]}".lower()
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.find_element(By.ID, "party").send_keys("xa")
    browser.find_element(By.ID, "number").send_keys(f" {typed} ")
    browser.find_element(By.ID, "lookup-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert browser.find_element(By.ID, "fact-number").text == f"XA {number}"
    assert not browser.find_element(By.ID, "problem").is_displayed()
    assert browser.title == "Check a permit · EPIX"


def test_registry_page_lists_the_parties(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.get(f"{live_node.url}/web/registry")
    wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#parties tr[data-party='XB']"))
    )
    codes = {
        row.get_attribute("data-party")
        for row in browser.find_elements(By.CSS_SELECTOR, "#parties tbody tr")
    }
    assert {"XA", "XB"} <= codes


def test_pages_leave_no_errors_in_the_console(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node, password="not the password")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    browser.get(f"{live_node.url}/web/registry")
    wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#parties tr[data-party='XB']"))
    )
    assert console_errors(browser) == []


def test_officer_logs_out(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    logout = wait(browser).until(ec.element_to_be_clickable((By.ID, "logout-button")))
    logout.click()
    wait(browser).until(ec.url_contains("/web/login"))
    assert browser.find_element(By.ID, "who").text == ""
    assert not browser.find_element(By.ID, "logout-button").is_displayed()
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.url_contains("/web/login"))  # the session is gone


def test_replaced_and_cancelled_permits_say_why(browser: WebDriver, live_node: LiveNode) -> None:
    replacement = f"{live_node.permit_number}-R"
    cancelled = f"{live_node.permit_number}-C"
    live_node.submit_permit(replacement)
    live_node.submit_permit(cancelled)
    path = f"/v1/permits/XA/{live_node.permit_number}/replace"
    assert live_node.as_issuer("POST", path, {"replaced_by": replacement}).status_code == 200
    path = f"/v1/permits/XA/{cancelled}/cancel"
    assert live_node.as_issuer("POST", path, {"reason": "issued in error"}).status_code == 200
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))

    browser.get(f"{live_node.url}/web/lookup?party=XA&number={cancelled}")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "CANCELLED"))
    assert "issued in error" in browser.find_element(By.ID, "status-detail").text

    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "REPLACED"))
    detail = browser.find_element(By.ID, "status-detail")
    assert replacement in detail.text
    detail.find_element(By.TAG_NAME, "a").click()  # check the permit that replaces it
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "fact-number"), replacement))
    assert browser.find_element(By.ID, "status").text == "ISSUED"


def test_refused_endorsement_shows_its_code_in_view_and_keeps_the_input(
    browser: WebDriver, live_node: LiveNode
) -> None:
    browser.set_window_size(1280, 720)  # a laptop: the endorse form is below the fold
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    browser.find_element(By.ID, "port").send_keys("ZZ")
    browser.find_element(By.ID, "officer").send_keys("Officer J. Jansen")
    browser.find_element(By.ID, "transport").send_keys("AWB 074-12345675")
    button = browser.find_element(By.ID, "endorse-button")
    browser.execute_script("arguments[0].scrollIntoView()", button)
    button.click()

    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-QTY-006" in problem.text
    top, bottom = browser.execute_script(
        "const box = arguments[0].getBoundingClientRect(); return [box.top, box.bottom];", problem
    )
    assert top >= 0 and bottom <= browser.execute_script("return window.innerHeight")
    assert browser.find_element(By.ID, "port").get_attribute("value") == "ZZ"
    assert browser.find_element(By.ID, "officer").get_attribute("value") == "Officer J. Jansen"


def test_the_api_reference_renders_from_the_nodes_own_assets(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """Swagger UI (served by the node, OpenAPI 3.1) lists the operations, console clean."""
    browser.get(f"{live_node.url}/docs")
    wait(browser).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    paths = {
        element.get_attribute("data-path")
        for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert "/v1/messages" in paths
    assert console_errors(browser) == []


def test_endorse_acts_on_the_permit_shown_not_on_the_number_typed_since(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """An officer who starts typing the next permit number before pressing Endorse endorses the
    permit on screen, the one whose lines and quantities they checked."""
    other = f"{live_node.permit_number}-2"
    live_node.submit_permit(other)
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    fill_border_details(browser)
    browser.find_element(By.ID, "number").send_keys("-2")  # the next permit, not yet checked
    browser.find_element(By.ID, "endorse-button").click()

    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "USED"))
    assert browser.find_element(By.ID, "fact-number").text == f"XA {live_node.permit_number}"
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={other}")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "fact-number"), other))
    assert browser.find_element(By.ID, "status").text == "ISSUED"
    assert rows_used(browser) == ["0", "0", "0", "0"]


def test_a_double_press_on_endorse_endorses_once(browser: WebDriver, live_node: LiveNode) -> None:
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    fill_border_details(browser)
    for line in ("qty-2", "qty-3", "qty-4"):
        browser.find_element(By.NAME, line).clear()
    quantity = browser.find_element(By.NAME, "qty-1")
    quantity.clear()
    quantity.send_keys("10")
    button = browser.find_element(By.ID, "endorse-button")
    browser.execute_script("arguments[0].click(); arguments[0].click();", button)  # impatient

    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(lambda b: b.find_element(By.ID, "endorse-button").is_enabled())
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    history = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#history li")]
    assert sum("endorsement.record" in item for item in history) == 1
    assert rows_used(browser)[0] == "10"
    assert not browser.find_element(By.ID, "problem").is_displayed()


def test_quantities_with_a_decimal_comma_are_read_and_ambiguous_ones_refused(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """A tablet's decimal keypad gives a comma in many Parties' locales: '12,5' is 12.5, while
    '1.250' (1.25 here, 1250 there) is refused on the page with what to write, never guessed."""
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    fill_border_details(browser)
    for line in ("qty-1", "qty-2", "qty-4"):
        browser.find_element(By.NAME, line).clear()
    kilograms = browser.find_element(By.NAME, "qty-3")  # line 3 is in KGM

    for typed, expected in (
        ("1.250", "could mean 1.25 or 1250 KGM: write 1250 for 1250, or 1.25 for 1.25"),
        ("1,125", "write 1125 for 1125, or 1.1250 for 1.125"),
        ("1 250", "is not a quantity"),
        ("1.250,5", "no thousands separators"),
    ):
        kilograms.clear()
        kilograms.send_keys(typed)
        browser.find_element(By.ID, "endorse-button").click()
        problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
        assert expected in problem.find_element(By.CSS_SELECTOR, "a[href='#qty-3']").text
    assert rows_used(browser) == ["0", "0", "0", "0"]  # nothing was sent

    kilograms.clear()
    kilograms.send_keys("12,5")
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(lambda b: rows_used(b)[2] == "12.5")
    assert rows_used(browser) == ["0", "0", "12.5", "0"]


def in_time_zone(browser: WebDriver, zone: str) -> None:
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": zone})


def test_times_are_shown_in_the_officers_time_zone_which_is_named(
    browser: WebDriver, live_node: LiveNode
) -> None:
    in_time_zone(browser, "Asia/Tokyo")
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    tokyo = ZoneInfo("Asia/Tokyo")
    for time in browser.find_elements(By.CSS_SELECTOR, "#fact-validity time, #history time"):
        at = datetime.fromisoformat(str(time.get_attribute("datetime"))).astimezone(tokyo)
        assert time.text == at.strftime("%Y-%m-%d %H:%M") + " UTC+9"
    valid_from = browser.find_element(By.CSS_SELECTOR, "#fact-validity time")
    assert str(valid_from.get_attribute("datetime")).endswith("T09:30:00+00:00")  # demo permit
    assert valid_from.text.endswith(" 18:30 UTC+9")
    assert "Asia/Tokyo" in browser.find_element(By.ID, "zone-note").text

    browser.get(f"{live_node.url}/web/registry")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "zone-note"), "Asia/Tokyo"))


def test_the_endorsement_date_is_today_where_the_officer_is(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """Not UTC's date: at UTC+14 and at UTC-11 one of the two differs from UTC at any hour."""
    log_in(browser, live_node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):
        in_time_zone(browser, zone)
        before = datetime.now(ZoneInfo(zone)).date().isoformat()
        browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
        wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
        after = datetime.now(ZoneInfo(zone)).date().isoformat()
        assert browser.find_element(By.ID, "date").get_attribute("value") in {before, after}


def test_after_logging_out_going_back_does_not_show_the_permit_checked_before(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """A border post's browser is shared: going back after logging out must not bring the
    check page back as it was (Chromium's back/forward cache keeps a page whole, the permit
    the script drew included); the page is asked for again, and its script, finding no
    session, sends the browser to the login page."""
    back_after_logging_out(browser, live_node, "/web/lookup")
    assert browser.find_elements(By.ID, "verdict") == []


def test_only_customs_of_the_permits_parties_see_the_endorse_form(
    browser: WebDriver, live_node: LiveNode
) -> None:
    """The API lets customs of the exporting or importing Party endorse, no one else: the page
    offers the form to them only, with the side their Party records; customs of another Party
    and the importing Party's Management Authority see the permit without it."""
    create_officer(live_node.database, "customs-xa", "an exporting passphrase", "XA")
    create_officer(live_node.database, "customs-xc", "an unrelated passphrase", "XC")
    create_officer(
        live_node.database, "ma-xb", "a management passphrase", "XB", Role.MANAGEMENT_AUTHORITY
    )
    for username, password, sides in (
        ("customs-xc", "an unrelated passphrase", []),
        ("ma-xb", "a management passphrase", []),
        (OFFICER, OFFICER_PASSWORD, ["import"]),  # XB imports
        ("customs-xa", "an exporting passphrase", ["export"]),  # XA issued and exports
    ):
        browser.delete_all_cookies()
        log_in(browser, live_node, password, username)
        wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), username))
        browser.get(f"{live_node.url}/web/lookup?party=XA&number={live_node.permit_number}")
        wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
        form = browser.find_element(By.ID, "endorse-form")
        assert form.is_displayed() == bool(sides), username
        options = Select(browser.find_element(By.ID, "side")).options
        assert [option.get_attribute("value") for option in options] == sides, username
