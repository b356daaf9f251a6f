"""An endorsement whose answer never reaches the browser, pressed again: recorded once.

Between Chromium and the node sits a reverse proxy on loopback that passes every request on
and, while told to, drops the connection after the node has answered an endorsement, as a
network failing at the border does: the node recorded it, the page never hears of it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from sqlalchemy import select

from epix.audit.models import AuditEvent
from tests.web.conftest import OFFICER, LiveNode, fill_border_details, log_in, rows_used, wait
from tests.web.proxy import AnswerDroppingProxy

pytestmark = pytest.mark.browser


@pytest.fixture
def proxy(live_node: LiveNode) -> Iterator[AnswerDroppingProxy]:
    server = AnswerDroppingProxy(live_node.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join(timeout=10)


def open_endorse_form(browser: WebDriver, node: LiveNode, number: str) -> None:
    browser.get(f"{node.url}/web/lookup?party=XA&number={number}")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "fact-number"), number))
    fill_border_details(browser)
    for line in ("qty-2", "qty-3", "qty-4"):
        browser.find_element(By.NAME, line).clear()
    quantity = browser.find_element(By.NAME, "qty-1")
    quantity.clear()
    quantity.send_keys("10")


def press_endorse_and_lose_the_answer(browser: WebDriver, proxy: AnswerDroppingProxy) -> None:
    proxy.dropping.set()
    browser.find_element(By.ID, "endorse-button").click()
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "may or may not have been recorded" in problem.text
    assert "press Endorse again" in problem.text
    wait(browser).until(lambda b: b.find_element(By.ID, "endorse-button").is_enabled())
    proxy.dropping.clear()


def test_pressing_endorse_again_after_a_lost_answer_records_one_endorsement(
    browser: WebDriver, live_node: LiveNode, proxy: AnswerDroppingProxy
) -> None:
    node = replace(live_node, url=proxy.url)
    log_in(browser, node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    open_endorse_form(browser, node, node.permit_number)

    press_endorse_and_lose_the_answer(browser, proxy)
    assert proxy.endorsements[0][1:3] == (201, True)  # the node recorded it; the page never knew
    browser.find_element(By.ID, "endorse-button").click()  # the officer tries again

    done = wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "USED"))
    assert rows_used(browser)[0] == "10"  # not 20, and no "already used" refusal
    assert not browser.find_element(By.ID, "problem").is_displayed()
    keys = {key for key, *_ in proxy.endorsements}
    assert len(keys) == 1 and None not in keys  # every copy carried the one key
    assert proxy.endorsements[-1][1:] == (201, False, "true")  # answered from the record
    history = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#history li")]
    assert sum("endorsement.record" in item for item in history) == 1
    with live_node.database.unit_of_work() as session:
        audited = list(session.scalars(select(AuditEvent.action)))
    assert audited.count("endorsement.replay") == len(proxy.endorsements) - 1
    listed = httpx.get(
        f"{live_node.url}/v1/permits/XA/{live_node.permit_number}/endorsements",
        headers={"Authorization": f"Bearer {live_node.demo.api_key('XA', 'management_authority')}"},
    ).json()
    assert [item["endorsement_id"] for item in listed] == [done.text.removeprefix("Endorsed: ")]


def test_other_values_or_another_endorsement_get_a_new_key(
    browser: WebDriver, live_node: LiveNode, proxy: AnswerDroppingProxy
) -> None:
    second = f"{live_node.permit_number}-2"
    live_node.submit_permit(second)
    node = replace(live_node, url=proxy.url)
    log_in(browser, node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    open_endorse_form(browser, node, node.permit_number)
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "USED"))

    open_endorse_form(browser, node, second)  # the next consignment: a new key
    press_endorse_and_lose_the_answer(browser, proxy)
    browser.find_element(By.NAME, "qty-1").send_keys("0")  # changed after the failure: 100
    browser.find_element(By.ID, "endorse-button").click()
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    wait(browser).until(lambda b: "EPIX-" in problem.text)

    keys = [key for key, *_ in proxy.endorsements]
    assert len(keys) == 3 and len(set(keys)) == 3, proxy.endorsements
    # The changed request is a new one, judged as such: the lost one did endorse the permit.
    # (The same key would have had it refused as another request's, EPIX-REQ-013.)
    assert "EPIX-STATE-005" in problem.text
