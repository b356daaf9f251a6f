"""WCAG 2.1 AA essentials of the web pages, checked in real Chromium: names and labels from the
accessibility tree (DevTools protocol), announced errors linked to their fields, keyboard-only
use with visible focus, and reflow at 320 CSS px and at 200 % zoom."""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec

from tests.web.conftest import (
    OFFICER,
    OFFICER_PASSWORD,
    LiveNode,
    fill_border_details,
    log_in,
    wait,
)

pytestmark = pytest.mark.browser

# Roles a person operates or must be told about: each needs an accessible name.
NAMED_ROLES = frozenset(
    {"button", "link", "textbox", "searchbox", "combobox", "listbox", "checkbox", "radio",
     "spinbutton", "slider", "switch", "Date", "image", "img", "region", "form", "table",
     "heading", "navigation"}
)  # fmt: skip


def accessibility_tree(browser: WebDriver) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = browser.execute_cdp_cmd("Accessibility.getFullAXTree", {})[
        "nodes"
    ]
    return [node for node in nodes if not node.get("ignored")]


def role_of(node: dict[str, Any]) -> str:
    return str(node.get("role", {}).get("value", ""))


def name_of(node: dict[str, Any]) -> str:
    return str(node.get("name", {}).get("value", "")).strip()


def describe(browser: WebDriver, node: dict[str, Any]) -> str:
    backend = node.get("backendDOMNodeId")
    if backend is None:
        return role_of(node)
    element = browser.execute_cdp_cmd("DOM.describeNode", {"backendNodeId": backend})["node"]
    return f"{role_of(node)} <{element['localName']} {element.get('attributes', [])}>"


def accessibility_problems(browser: WebDriver) -> list[str]:
    """What a screen reader or keyboard user would miss on the page as it is now."""
    problems = [
        f"no accessible name: {describe(browser, node)}"
        for node in accessibility_tree(browser)
        if role_of(node) in NAMED_ROLES and not name_of(node)
    ]
    problems += browser.execute_script(
        """
        const problems = [];
        if (!document.documentElement.lang) problems.push("the page has no lang");
        if (!document.title.trim()) problems.push("the page has no title");
        const visible = (element) => !element.closest("[hidden]");
        for (const field of document.querySelectorAll("input, select, textarea")) {
          if (field.type !== "hidden" && visible(field) && !field.labels.length) {
            problems.push(`no <label> for ${field.outerHTML}`);
          }
        }
        let previous = 0;
        const headings = document.querySelectorAll("h1, h2, h3, h4, h5, h6");
        for (const heading of [...headings].filter(visible)) {
          const level = Number(heading.tagName[1]);
          if (previous === 0 ? level !== 1 : level > previous + 1) {
            problems.push(`h${level} "${heading.textContent}" after h${previous}`);
          }
          previous = level;
        }
        return problems;
        """
    )
    return problems


def open_permit(browser: WebDriver, node: LiveNode) -> None:
    log_in(browser, node)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    browser.get(f"{node.url}/web/lookup?party=XA&number={node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))


def open_checked_on_the_server(browser: WebDriver, node: LiveNode) -> None:
    """The permit as /web/check answers it (the check page for a browser without script)."""
    browser.get(f"{node.url}/web/check?party=XA&number={node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "verdict")))


def refuse_an_endorsement(browser: WebDriver, quantity_id: str = "qty-1") -> None:
    """More on line 1 than the permit allows: refused by the node (EPIX-QTY-001).
    ``quantity_id``: line 1's field (``qty-0`` on the page answered on the server)."""
    fill_border_details(browser)
    quantity = browser.find_element(By.ID, quantity_id)
    quantity.clear()
    quantity.send_keys("99999")
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))


def test_every_control_has_a_name_and_every_page_a_language_and_ordered_headings(
    browser: WebDriver, live_node: LiveNode
) -> None:
    browser.get(f"{live_node.url}/web/login")
    assert accessibility_problems(browser) == []
    browser.find_element(By.ID, "login-button").click()  # nothing typed: the error summary
    wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert accessibility_problems(browser) == []

    open_permit(browser, live_node)
    assert accessibility_problems(browser) == []
    refuse_an_endorsement(browser)
    assert accessibility_problems(browser) == []

    open_checked_on_the_server(browser, live_node)
    assert accessibility_problems(browser) == []
    refuse_an_endorsement(browser, "qty-0")  # the endorse form answered on the server
    assert accessibility_problems(browser) == []
    quantity = browser.find_element(By.ID, "qty-0")
    quantity.clear()
    quantity.send_keys("1")
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    assert accessibility_problems(browser) == []

    browser.get(f"{live_node.url}/web/registry")
    wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#parties tr[data-party='XB']"))
    )
    assert accessibility_problems(browser) == []


def test_the_registry_page_answered_on_the_server_is_accessible(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    """Without script the node fills the registry page: it must be as usable as the script's."""
    browser = browser_without_script
    browser.get(f"{live_node.url}/web/registry")
    assert browser.find_elements(By.CSS_SELECTOR, "#parties tr[data-party='XB']")
    assert accessibility_problems(browser) == []
    show_at(browser, 320, 1)
    assert overflowing(browser) == []


def ax_description(browser: WebDriver, element_id: str) -> str:
    """The accessible description Chromium computed for the element (what is read after it)."""
    backend = browser.execute_cdp_cmd(
        "DOM.describeNode",
        {"objectId": browser.execute_cdp_cmd(
            "Runtime.evaluate", {"expression": f"document.getElementById({element_id!r})"}
        )["result"]["objectId"]},
    )["node"]["backendNodeId"]  # fmt: skip
    nodes = browser.execute_cdp_cmd("Accessibility.getPartialAXTree", {"backendNodeId": backend})
    return str(nodes["nodes"][0].get("description", {}).get("value", ""))


def test_refusals_are_announced_and_lead_to_their_fields(
    browser: WebDriver, live_node: LiveNode
) -> None:
    open_permit(browser, live_node)
    refuse_an_endorsement(browser)

    summary = browser.find_element(By.ID, "problem")
    assert browser.switch_to.active_element == summary  # focus moved: it is read out
    assert browser.title.startswith("Error: ")
    link = summary.find_element(By.CSS_SELECTOR, "a[href='#qty-1']")
    assert "EPIX-QTY-001" in link.text
    quantity = browser.find_element(By.ID, "qty-1")  # said at the field, not by colour alone
    assert quantity.get_attribute("aria-invalid") == "true"
    assert "EPIX-QTY-001" in ax_description(browser, "qty-1")
    link.send_keys(Keys.ENTER)
    assert browser.switch_to.active_element == quantity

    quantity.clear()
    quantity.send_keys("1")
    browser.find_element(By.ID, "port").clear()
    browser.find_element(By.ID, "endorse-button").click()  # a required field left empty
    wait(browser).until(lambda b: b.switch_to.active_element == summary)
    assert "Enter the port" in summary.find_element(By.CSS_SELECTOR, "a[href='#port']").text
    assert "Enter the port" in ax_description(browser, "port")
    assert "5 letters" in ax_description(browser, "port")  # the hint is still read
    assert quantity.get_attribute("aria-invalid") is None  # the old refusal is gone


def focused(browser: WebDriver) -> dict[str, Any]:
    state: dict[str, Any] = browser.execute_script(
        """
        const element = document.activeElement;
        const style = getComputedStyle(element);
        return {
          id: element.id || `${element.tagName.toLowerCase()}:${element.textContent.trim()}`,
          outline: style.outlineStyle === "none" ? 0 : parseFloat(style.outlineWidth),
        };
        """
    )
    return state


def press(browser: WebDriver, *keys: str) -> None:
    ActionChains(browser).send_keys(*keys).perform()


def tab_to(browser: WebDriver, element_id: str) -> None:
    for _ in range(60):
        press(browser, Keys.TAB)
        if focused(browser)["id"] == element_id:
            return
    raise AssertionError(f"Tab never reaches #{element_id}")


def test_keyboard_alone_reaches_every_control_in_order_with_visible_focus(
    browser: WebDriver, live_node: LiveNode
) -> None:
    open_permit(browser, live_node)
    browser.get(browser.current_url)  # focus starts at the top of the page
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    stops: list[dict[str, Any]] = []
    for _ in range(40):
        press(browser, Keys.TAB)
        state = focused(browser)
        if stops and state["id"] == stops[-1]["id"]:
            continue  # the date field's day, month and year
        stops.append(state)
        if state["id"] == "endorse-button":
            break
    assert [stop["id"] for stop in stops] == [
        "a:Skip to main content",
        "a:EPIX",
        "a:Check a permit",
        "a:Key registry",
        "logout-button",
        "party",
        "number",
        "token",
        "lookup-button",
        "lines-scroll",
        "side",
        "port",
        "date",
        "officer",
        "transport",
        "qty-1",
        "qty-2",
        "qty-3",
        "qty-4",
        "endorse-button",
    ]
    assert [stop["id"] for stop in stops if stop["outline"] < 2] == []


def test_an_officer_logs_in_checks_and_endorses_with_the_keyboard_alone(
    browser: WebDriver, live_node: LiveNode
) -> None:
    browser.get(f"{live_node.url}/web/login")
    tab_to(browser, "username")
    press(browser, OFFICER, Keys.TAB, OFFICER_PASSWORD, Keys.ENTER)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "who"), OFFICER))
    tab_to(browser, "party")
    press(browser, "XA", Keys.TAB, live_node.permit_number, Keys.ENTER)
    wait(browser).until(ec.visibility_of_element_located((By.ID, "result")))
    assert "Signature valid" in browser.find_element(By.ID, "notice").text  # read out
    tab_to(browser, "port")
    press(browser, "NLRTM")
    tab_to(browser, "officer")
    press(browser, "Officer J. Jansen", Keys.TAB, "AWB 074-12345675")
    tab_to(browser, "endorse-button")
    press(browser, Keys.SPACE)
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), "USED"))
    assert "endorsed" in browser.find_element(By.ID, "notice").text


def overflowing(browser: WebDriver) -> list[str]:
    """Elements of the page reaching past the viewport's right edge, outside the boxes that
    scroll a wide table on their own (allowed: a data table needs its two dimensions)."""
    found: list[str] = browser.execute_script(
        """
        const width = document.documentElement.clientWidth;
        const found = [];
        if (document.documentElement.scrollWidth > width) {
          found.push(`page scrolls sideways: ${document.documentElement.scrollWidth} > ${width}`);
        }
        for (const element of document.body.querySelectorAll("*")) {
          if (element.closest(".table-scroll") && !element.matches(".table-scroll")) continue;
          const box = element.getBoundingClientRect();
          if (box.width && box.right > width + 0.5) {
            found.push(`${element.tagName.toLowerCase()}#${element.id} ends at ${box.right}`);
          }
        }
        return found;
        """
    )
    return found


def show_at(browser: WebDriver, width: int, scale: int) -> None:
    """A viewport of ``width`` CSS px; 640 at scale 2 is a 1280 px screen zoomed to 200 %."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 900, "deviceScaleFactor": scale, "mobile": False},
    )


@pytest.mark.parametrize(("width", "scale"), [(320, 1), (640, 2)])
def test_pages_reflow_without_sideways_scrolling(
    browser: WebDriver, live_node: LiveNode, width: int, scale: int
) -> None:
    show_at(browser, width, scale)
    browser.get(f"{live_node.url}/web/login")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "login-button")))
    assert overflowing(browser) == []
    open_permit(browser, live_node)
    assert overflowing(browser) == []
    refuse_an_endorsement(browser)
    assert overflowing(browser) == []
    lines = browser.find_element(By.CSS_SELECTOR, ".table-scroll")
    assert lines.get_attribute("tabindex") == "0"  # its own scrolling works by keyboard
    open_checked_on_the_server(browser, live_node)
    assert overflowing(browser) == []
    browser.get(f"{live_node.url}/web/registry")
    wait(browser).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#parties tr[data-party='XB']"))
    )
    assert overflowing(browser) == []
