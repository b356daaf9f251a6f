"""Endorsing where the page's script does not run: the check page's endorse form is posted to
/web/endorse, which endorses through the API's own ``endorse_once`` (the same rules, audit and
Idempotency-Key record), protected against other sites as the API is."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.auth.principal import Role
from epix.endorsements.models import Endorsement
from epix.exchange.models import Permit
from tests.web.conftest import (
    OFFICER,
    OFFICER_PASSWORD,
    LiveNode,
    OtherOrigin,
    create_officer,
    fill_border_details,
    log_in,
    severe_console_messages,
    submit_login,
    wait,
)


def _endorsements(node: LiveNode) -> list[Endorsement]:
    with node.database.read() as session:
        permit = session.scalar(select(Permit).where(Permit.number == node.permit_number))
        assert permit is not None
        return list(session.scalars(select(Endorsement).where(Endorsement.permit_id == permit.id)))


def _open_check_page(browser: WebDriver, node: LiveNode) -> None:
    log_in(browser, node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    browser.get(f"{node.url}/web/check?party=XA&number={node.permit_number}")
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-form")))


@pytest.mark.browser
def test_without_script_an_officer_endorses_on_the_check_page(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    _open_check_page(browser, live_node)
    side = Select(browser.find_element(By.ID, "side"))
    assert [option.get_attribute("value") for option in side.options] == ["import"]  # XB imports
    today = datetime.now(UTC).date().isoformat()
    assert browser.find_element(By.ID, "date").get_attribute("value") == today
    remaining = browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr td")[7].text
    assert browser.find_element(By.ID, "qty-0").get_attribute("value") == remaining
    fill_border_details(browser)
    browser.find_element(By.ID, "endorse-button").click()

    result = wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    (recorded,) = _endorsements(live_node)
    assert result.text == f"Endorsed: {recorded.endorsement_id}"
    assert browser.current_url == f"{live_node.url}/web/endorse"
    assert browser.find_element(By.ID, "endorsed-port").text == "NLRTM"
    assert browser.find_element(By.ID, "endorsed-officer").text == "Officer J. Jansen"
    assert remaining in browser.find_element(By.ID, "endorsed-lines").text
    assert (recorded.side, recorded.officer) == ("import", "Officer J. Jansen")
    assert browser.find_elements(By.ID, "replayed") == []
    assert severe_console_messages(browser) == []

    # Back to the form and Endorse again (the answer seemed lost): the browser sends the same
    # form with the same Idempotency-Key, and the node answers with what it recorded.
    browser.back()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-form")))
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "replayed")))
    assert (
        browser.find_element(By.ID, "endorse-result").text == f"Endorsed: {recorded.endorsement_id}"
    )
    assert len(_endorsements(live_node)) == 1

    browser.find_element(By.ID, "check-again").click()
    status = wait(browser).until(ec.visibility_of_element_located((By.ID, "status")))
    assert status.text == "USED"


@pytest.mark.browser
def test_without_script_the_pages_say_who_is_logged_in(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    """A shared border browser without script: the check page and the endorse answer name
    the person the endorsement is recorded for (the header was left empty for the script)."""
    browser = browser_without_script
    _open_check_page(browser, live_node)
    assert browser.find_element(By.ID, "who").text == f"{OFFICER} · XB · customs"
    fill_border_details(browser)
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    assert browser.find_element(By.ID, "who").text == f"{OFFICER} · XB · customs"


def _far_from_utc() -> str:
    """A zone whose date is not UTC's now: 14 hours ahead from 10:00 UTC, 12 behind until
    12:00 UTC (a border post near midnight, seen from UTC)."""
    return "Pacific/Kiritimati" if datetime.now(UTC).hour >= 12 else "Etc/GMT+12"


@pytest.mark.browser
@pytest.mark.parametrize("web_time_zones", [{"XB": _far_from_utc()}])
def test_without_script_the_date_is_today_at_the_officers_border(
    browser_without_script: WebDriver, live_node: LiveNode, web_time_zones: dict[str, str]
) -> None:
    """The form fills in today in the officer's Party's time zone and names it; UTC's date
    (filled in before) is another day there."""
    browser = browser_without_script
    zone = web_time_zones["XB"]
    _open_check_page(browser, live_node)
    there = datetime.now(ZoneInfo(zone)).date().isoformat()
    assert there != datetime.now(UTC).date().isoformat()
    assert browser.find_element(By.ID, "date").get_attribute("value") == there
    assert f"today in {zone}, {there}" in browser.find_element(By.ID, "date-hint").text
    fill_border_details(browser)
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    (recorded,) = _endorsements(live_node)
    assert recorded.endorsed_on.isoformat() == there


@pytest.mark.parametrize("web_time_zones", [{}])
def test_without_a_known_zone_the_officer_types_the_date(live_node: LiveNode) -> None:
    """A Party whose zone the node does not know (one spanning several): no date is filled
    in, which could be the wrong day; the hint says the day in UTC, and a form sent without a
    date is refused at its field."""
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        assert re.search(r'<input id="date" name="date" type="date" required value=""', page.text)
        hint = re.search(r'<span class="hint" id="date-hint">([^<]*)</span>', page.text)
        assert hint is not None
        assert f"in UTC it is {datetime.now(UTC):%Y-%m-%d}" in hint[1]
        assert "may be another day" in hint[1]
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        refused = client.post("/web/endorse", data=form)
    assert refused.status_code == 422 and "EPIX-REQ-004: Enter the date." in refused.text
    assert '<a href="#date">EPIX-REQ-004: Enter the date.</a>' in refused.text
    assert _endorsements(live_node) == []


@pytest.mark.browser
def test_without_script_a_refused_endorsement_keeps_the_input_and_links_the_field(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    browser = browser_without_script
    _open_check_page(browser, live_node)
    fill_border_details(browser)
    quantity = browser.find_element(By.ID, "qty-0")
    quantity.clear()
    quantity.send_keys("999999")
    browser.find_element(By.ID, "endorse-button").click()

    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-QTY-001" in problem.text
    assert browser.title.startswith("Error:")
    assert browser.switch_to.active_element == problem  # focused without script: read out
    link = problem.find_element(By.CSS_SELECTOR, "a")
    assert link.get_attribute("href") == f"{live_node.url}/web/endorse#qty-0"
    quantity = browser.find_element(By.ID, "qty-0")
    assert quantity.get_attribute("value") == "999999"
    assert quantity.get_attribute("aria-invalid") == "true"
    described = (quantity.get_attribute("aria-describedby") or "").split()
    assert described == ["qty-hint", "qty-0-error"]
    assert "EPIX-QTY-001" in browser.find_element(By.ID, "qty-0-error").text
    assert browser.find_element(By.ID, "port").get_attribute("value") == "NLRTM"
    assert browser.find_element(By.ID, "officer").get_attribute("value") == "Officer J. Jansen"
    assert _endorsements(live_node) == []

    # Corrected and sent again from the same page: recorded.
    quantity.clear()
    quantity.send_keys("1")
    browser.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    assert len(_endorsements(live_node)) == 1


@pytest.mark.browser
def test_without_script_an_endorse_form_survives_the_session_ending(
    browser_without_script: WebDriver, live_node: LiveNode
) -> None:
    """The session ended while the officer typed (a log-out in another tab, a password change,
    its lifetime): Endorse brings the login page, and after logging in the permit's page with
    everything typed back, sent only when Endorse is pressed again (it was lost before)."""
    browser = browser_without_script
    _open_check_page(browser, live_node)
    live_node.end_web_sessions(OFFICER)
    fill_border_details(browser)
    quantity = browser.find_element(By.ID, "qty-0")
    quantity.clear()
    quantity.send_keys("1,5")
    browser.find_element(By.ID, "endorse-button").click()

    wait(browser).until(ec.visibility_of_element_located((By.ID, "login-form")))
    assert "what you typed is kept" in browser.find_element(By.ID, "notice").text
    assert "NLRTM" not in browser.current_url and "Jansen" not in browser.current_url
    assert _endorsements(live_node) == []
    submit_login(browser)

    form = wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-form")))
    assert "it was not sent" in browser.find_element(By.ID, "notice").text
    assert browser.find_element(By.ID, "fact-number").text == f"XA {live_node.permit_number}"
    assert browser.find_element(By.ID, "port").get_attribute("value") == "NLRTM"
    assert browser.find_element(By.ID, "officer").get_attribute("value") == "Officer J. Jansen"
    assert browser.find_element(By.ID, "transport").get_attribute("value") == "AWB 074-12345675"
    assert browser.find_element(By.ID, "qty-0").get_attribute("value") == "1,5"
    assert "Jansen" not in browser.current_url
    assert _endorsements(live_node) == []  # nothing was sent for them

    form.find_element(By.ID, "endorse-button").click()
    wait(browser).until(ec.visibility_of_element_located((By.ID, "endorse-result")))
    (recorded,) = _endorsements(live_node)
    assert (recorded.officer, recorded.port) == ("Officer J. Jansen", "NLRTM")
    assert browser.find_element(By.ID, "endorsed-lines").text.split("\n")[1].split()[1] == "1.5"


@pytest.mark.browser
def test_an_endorse_form_on_another_site_is_refused(
    browser_without_script: WebDriver, live_node: LiveNode, page_of_another_origin: OtherOrigin
) -> None:
    browser = browser_without_script
    log_in(browser, live_node)
    wait(browser).until(ec.url_contains("/web/lookup"))
    fields = {
        "party": "XA",
        "number": live_node.permit_number,
        "idempotency_key": "forged-1",
        "side": "import",
        "port": "NLRTM",
        "date": datetime.now(UTC).date().isoformat(),
        "officer": "Someone Else",
        "transport_document": "X",
        "line_id": "1",
        "unit": "KGM",
        "species": "",
        "quantity": "1",
    }
    hidden = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    action = f"{live_node.url}/web/endorse"
    browser.get(
        page_of_another_origin(
            f'<form method="post" action="{action}">{hidden}'
            '<button id="go">Win a prize</button></form>'
        )
    )
    browser.find_element(By.ID, "go").click()
    problem = wait(browser).until(ec.visibility_of_element_located((By.ID, "problem")))
    assert "EPIX-AUTH-012" in problem.text
    assert browser.find_elements(By.ID, "endorse-form") == []  # nothing it sent is shown back
    assert _endorsements(live_node) == []


@contextmanager
def _logged_in_client(node: LiveNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=node.url, headers={"Accept": "text/html"}) as client:
        login = client.post("/web/login", data={"username": OFFICER, "password": OFFICER_PASSWORD})
        assert login.status_code == 303, login.text
        yield client


def _form_of(page: str, **typed: str) -> dict[str, list[str]]:
    """The endorse form's fields as the browser sends them: the values as offered (hidden
    fields, the date, the quantities) and those in ``typed``."""
    form = page[page.index('<form id="endorse-form"') :]
    form = form[: form.index("</form>")]
    fields: dict[str, list[str]] = {"side": ["import"]}
    for name, value in re.findall(r'<input[^>]*?name="([^"]+)"[^>]*?value="([^"]*)"', form):
        fields.setdefault(name, []).append(html.unescape(value))
    return {**fields, **{name: [value] for name, value in typed.items()}}


def test_the_same_endorse_form_posted_twice_records_once(live_node: LiveNode) -> None:
    """A reload of the answer, or Back and Endorse again, sends the same form with the same
    Idempotency-Key: the second answer is the first endorsement, not a second one."""
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        assert form["idempotency_key"][0]
        first = client.post("/web/endorse", data=form)
        again = client.post("/web/endorse", data=form)
    assert first.status_code == again.status_code == 200, first.text
    (recorded,) = _endorsements(live_node)
    assert f"Endorsed: {recorded.endorsement_id}" in first.text
    assert f"Endorsed: {recorded.endorsement_id}" in again.text
    assert 'id="replayed"' not in first.text and 'id="replayed"' in again.text
    with live_node.database.read() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action.like("endorsement.%"))
        ).all()
    assert sorted(actions) == ["endorsement.record", "endorsement.replay"]


def test_a_form_sent_again_with_other_values_gets_a_key_of_its_own(live_node: LiveNode) -> None:
    """Back, a value changed, Endorse: the key answered another request (EPIX-REQ-013); the
    form shown with that refusal carries a new key, so sending it is judged afresh (here: the
    side is endorsed already, EPIX-STATE-005), never stuck on the old key."""
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        assert client.post("/web/endorse", data=form).status_code == 200
        changed = client.post("/web/endorse", data={**form, "officer": ["K. Other"]})
        resent = _form_of(changed.text)
        again = client.post("/web/endorse", data=resent)
    assert "EPIX-REQ-013" in changed.text
    # Said for the form, whose key the page makes: not the API's "use a new key".
    assert "new key" not in changed.text
    assert "press Endorse to send them as a new request" in changed.text
    assert (
        resent["officer"] == ["K. Other"] and resent["idempotency_key"] != form["idempotency_key"]
    )
    assert again.status_code == 409 and "EPIX-STATE-005" in again.text
    assert len(_endorsements(live_node)) == 1


def test_an_endorse_form_posted_by_another_origin_is_refused_over_http(
    live_node: LiveNode,
) -> None:
    with _logged_in_client(live_node) as client:
        refused = client.post(
            "/web/endorse",
            data={"party": "XA", "number": live_node.permit_number, "idempotency_key": "k"},
            headers={"Origin": "http://evil.example"},
        )
        # Logged out, another site's form is refused too, and nothing it sent is kept or shown.
        logged_out = httpx.post(
            f"{live_node.url}/web/endorse",
            data={"party": "XA", "number": live_node.permit_number, "officer": "Forged"},
            headers={"Origin": "http://evil.example"},
        )
    assert refused.status_code == 403 and "EPIX-AUTH-012" in refused.text
    assert logged_out.status_code == 403 and "EPIX-AUTH-012" in logged_out.text
    assert "Forged" not in logged_out.text and 'name="kept"' not in logged_out.text
    assert _endorsements(live_node) == []


def test_a_kept_endorse_form_comes_back_only_to_whose_session_ended(live_node: LiveNode) -> None:
    """The form of a session that ended is carried through the login in the login form's
    body (never an address) and filled in again for the same officer; another person logging
    in at that browser gets the permit's page without it (a shared border post)."""
    live_node.add_customs_officer("officer-xb-2", "another long passphrase")
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        live_node.end_web_sessions(OFFICER)
        login_page = client.post("/web/endorse", data=form)
    assert login_page.status_code == 200 and 'id="login-form"' in login_page.text
    action = re.search(r'<form id="login-form"[^>]*action="([^"]+)"', login_page.text)
    assert action is not None
    assert html.unescape(action[1]).startswith("/web/login?next=%2Fweb%2Fcheck%3Fparty%3DXA")
    assert "Jansen" not in action[1]
    kept = re.search(r'name="kept" value="([^"]+)"', login_page.text)
    assert kept is not None and "J. Jansen" in html.unescape(kept[1])
    cookies = dict(client.cookies)

    def log_in_keeping(username: str, password: str) -> httpx.Response:
        with httpx.Client(base_url=live_node.url, cookies=cookies) as browser:
            return browser.post(
                html.unescape(action[1]),
                data={"username": username, "password": password, "kept": html.unescape(kept[1])},
            )

    wrong = log_in_keeping(OFFICER, "not the password")
    assert wrong.status_code == 401 and html.unescape(kept[1]) in html.unescape(wrong.text)
    other = log_in_keeping("officer-xb-2", "another long passphrase")
    assert other.status_code == 303 and other.headers["location"].startswith("/web/check?")
    same = log_in_keeping(OFFICER, OFFICER_PASSWORD)
    assert same.status_code == 200 and 'value="J. Jansen"' in same.text
    assert f'name="idempotency_key" value="{form["idempotency_key"][0]}"' in same.text
    assert _endorsements(live_node) == []


def test_only_customs_get_the_endorse_form_and_may_post_it(live_node: LiveNode) -> None:
    """XB's Management Authority sees the permit but no endorse form, and a form posted
    anyway is refused for the role (EPIX-AUTH-004), audited as the API's refusal is."""
    create_officer(
        live_node.database, "ma-xb", "a management passphrase", "XB", Role.MANAGEMENT_AUTHORITY
    )
    with httpx.Client(base_url=live_node.url, headers={"Accept": "text/html"}) as client:
        login = client.post(
            "/web/login", data={"username": "ma-xb", "password": "a management passphrase"}
        )
        assert login.status_code == 303, login.text
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        refused = client.post(
            "/web/endorse", data={"party": "XA", "number": live_node.permit_number}
        )
    assert 'id="verdict"' in page.text and 'id="endorse-form"' not in page.text
    assert refused.status_code == 403 and "EPIX-AUTH-004" in refused.text
    assert 'id="endorse-form"' not in refused.text
    with live_node.database.read() as session:
        denied = session.scalars(
            select(AuditEvent.actor_username).where(AuditEvent.action == "auth.denied")
        ).all()
    assert denied == ["ma-xb"]
    assert _endorsements(live_node) == []


def test_an_endorse_form_key_sent_for_another_permit_records_nothing_in_its_name(
    live_node: LiveNode,
) -> None:
    """The form's key with the same values but another permit (a form kept from another
    page, its hidden number changed) is another request, as it is for the API, whose path
    names the permit: refused (EPIX-REQ-013), never the first permit's endorsement shown as
    if it were this one's."""
    other = f"{live_node.permit_number}-2"
    live_node.submit_permit(other)
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        assert client.post("/web/endorse", data=form).status_code == 200
        elsewhere = client.post("/web/endorse", data={**form, "number": [other]})
    assert elsewhere.status_code == 422, elsewhere.text
    assert "EPIX-REQ-013" in elsewhere.text
    assert 'id="endorsed"' not in elsewhere.text
    assert len(_endorsements(live_node)) == 1


def _endorsed_quantities(page: str) -> list[tuple[str, str]]:
    """(line, quantity) of the endorsement an answer page shows as recorded."""
    table = page[page.index('<table id="endorsed-lines"') : page.index("</table>")]
    return [
        (line, quantity)
        for line, quantity, _unit in re.findall(
            r"<tr><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>", table
        )
    ]


def test_the_form_reads_a_decimal_comma_as_the_scripts_page_does(live_node: LiveNode) -> None:
    """A tablet's decimal keypad gives '12,5' in many Parties' locales: the form without
    script records 12.5, as the page with script does (it was refused, EPIX-QTY-004)."""
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        form["quantity"] = ["", "", "12,5", ""]  # line 3, in KGM
        recorded = client.post("/web/endorse", data=form)
    assert recorded.status_code == 200, recorded.text
    assert _endorsed_quantities(recorded.text) == [("3", "12.5")]
    assert len(_endorsements(live_node)) == 1


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("1.250", "could mean 1.25 or 1250 KGM: write 1250 for 1250, or 1.25 for 1.25."),
        ("1,125", "write 1125 for 1125, or 1.1250 for 1.125."),
        ("1 250", "is not a quantity"),
        ("1.250,5", "(12.5 or 12,5), and no thousands separators."),
    ],
)
def test_the_form_refuses_the_quantities_the_scripts_page_refuses(
    live_node: LiveNode, typed: str, expected: str
) -> None:
    """What could be thousands grouping ('1.250': 1.25 in one locale, 1250 in another) is
    never guessed: refused with what to write, in the script's words, beside the field (the
    API took '1.250' as 1.25)."""
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        form["quantity"] = ["", "", typed, ""]
        refused = client.post("/web/endorse", data=form)
    assert refused.status_code == 422, refused.text
    summary = re.search(r'<a href="#qty-2">EPIX-QTY-004: ([^<]*)</a>', refused.text)
    assert summary is not None and expected in html.unescape(summary.group(1))
    assert f'value="{html.escape(typed)}" aria-invalid="true"' in refused.text
    assert _endorsements(live_node) == []


def test_the_remaining_quantity_offered_goes_as_it_is(live_node: LiveNode) -> None:
    """The remaining quantity the form offers is the node's own: sent unchanged it is never
    taken for thousands grouping, even when it reads like it (the import may take what was
    exported: '1.125' kg), as on the page with script."""
    path = f"/v1/permits/XA/{live_node.permit_number}/endorsements"
    exported = httpx.post(
        f"{live_node.url}{path}",
        json={
            "side": "export",
            "port": "NLRTM",
            "date": datetime.now(UTC).date().isoformat(),
            "officer": "XA officer",
            "transport_document": "AWB 1",
            "lines": [{"line_id": "3", "quantity": "1.125", "unit": "KGM"}],
        },
        headers={"Authorization": f"Bearer {live_node.demo.api_key('XA', 'customs')}"},
    )
    assert exported.status_code == 201, exported.text
    with _logged_in_client(live_node) as client:
        page = client.get("/web/check", params={"party": "XA", "number": live_node.permit_number})
        form = _form_of(page.text, port="NLRTM", officer="J. Jansen", transport_document="AWB 1")
        assert form["quantity"][2] == "1.125"
        form["quantity"] = ["", "", "1.125", ""]
        recorded = client.post("/web/endorse", data=form)
    assert recorded.status_code == 200, recorded.text
    assert _endorsed_quantities(recorded.text) == [("3", "1.125")]
