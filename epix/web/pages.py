"""Routes serving the web pages (the check and the endorse forms and the key registry are also
answered here, for a browser that runs no script), their static files and the permit QR code."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from epix.api.deps import DatabaseDep, RequestContextDep, SettingsDep
from epix.api.idempotency import keyed_request
from epix.api.problems import validation_findings
from epix.api.routers.auth import logout, password_login
from epix.api.routers.endorsements import EndorsementIn, endorse_once
from epix.api.routers.permits import look_up_permit
from epix.api.routers.registry import party_json
from epix.api.security import (
    SESSION_USER,
    check_same_origin,
    get_current_principal,
    record_denied,
    web_session,
)
from epix.audit.context import RequestContext
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_role
from epix.db import Database
from epix.endorsements.document import MAX_LINES
from epix.endorsements.idempotency import KEY_MAX_LENGTH, check_key
from epix.errors import EpixError, Finding
from epix.permits.model import printed_number
from epix.registry import repository as registry_repository
from epix.registry.service import EXPIRING_WITHIN_DAYS, expiring_certificates
from epix.settings import Settings
from epix.web.templating import error_page, templates

_HERE = Path(__file__).resolve().parent
router = APIRouter(prefix="/web", include_in_schema=False)
PartyCode = Annotated[str, Query(pattern=r"^[A-Za-z]{2}$")]
PermitNumber = Annotated[str, Query(min_length=1, max_length=35)]


def _page(
    request: Request,
    name: str,
    title: str,
    *,
    refusal: EpixError | None = None,
    **context: object,
) -> HTMLResponse:
    """A page; with ``refusal``, its findings are shown in the page's error summary."""
    if refusal is None:
        return templates.TemplateResponse(request, name, {"title": title, **context})
    headers = {}
    if refusal.retry_after_seconds is not None:
        headers["Retry-After"] = str(refusal.retry_after_seconds)
    return templates.TemplateResponse(
        request,
        name,
        {"title": f"Error: {title}", "heading": title, "findings": refusal.findings, **context},
        status_code=refusal.http_status,
        headers=headers,
    )


def return_path(next_page: str | None) -> str:
    """Where to go after logging in: a page of ours, never another site (no open redirect).

    The same rule as ``returnPath`` in epix.js: a path under /web/ other than the login page,
    judged once its dot segments are resolved as the browser resolves them ("/web/../v1/..."
    is not under /web/).
    """
    target = urlsplit(next_page or "")
    path = _resolved(target.path)
    if (
        not next_page
        or target.scheme
        or target.netloc
        or not path.startswith("/web/")
        or path == "/web/login"
        or any(char == "\\" or ord(char) < 0x20 for char in next_page)
    ):
        return "/web/lookup"
    return path + (f"?{target.query}" if target.query else "")


def _resolved(path: str) -> str:
    """``path`` with its "." and ".." segments (a dot also written %2e) resolved, as the URL
    standard does."""
    segments: list[str] = []
    parts = path.split("/")[1:]
    for index, segment in enumerate(parts):
        dots = segment.lower().replace("%2e", ".")
        last = index == len(parts) - 1
        if dots == "..":
            if segments:
                segments.pop()
            if last:
                segments.append("")
        elif dots == ".":
            if last:
                segments.append("")
        else:
            segments.append(segment)
    return "/" + "/".join(segments)


@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/web/lookup", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "Log in")


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    username: Annotated[str, Form(max_length=150)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    kept: Annotated[str, Form()] = "",
    next_page: Annotated[str | None, Query(alias="next")] = None,
) -> Response:
    """The login form as the browser sends it when the page's script has not run (switched
    off, not loaded yet, blocked): the password goes in the body, never the address, and is
    checked as POST /v1/auth/login checks it (another site's form is refused there too); then
    on to the page the person came from. ``kept``: an endorse form whose session had ended
    (``KeptEndorsement``); logged in as the person who typed it, the answer is the permit's
    check page with the form filled in again, not sent."""
    try:
        if not username.strip() or not password:
            raise EpixError.of(
                "EPIX-REQ-004", "Enter the user name and the password.", "credentials"
            )
        principal = password_login(request, database, context, username, password)
    except EpixError as refusal:
        return _login_page(request, kept=kept, refusal=refusal, username=username)
    endorsement = KeptEndorsement.read(kept)
    if endorsement is not None and endorsement.user in (None, principal.user_id):
        return _check_answer(
            request,
            database,
            settings,
            context,
            endorsement.party,
            endorsement.number,
            token=None,
            login_next=return_path(next_page),
            kept=endorsement,
        )
    return RedirectResponse(return_path(next_page), status_code=303)


class KeptEndorsement(BaseModel):
    """An endorse form sent after its session had ended, carried through the login in the
    login form's hidden ``kept`` field (in the body: never an address or a log; no credential
    in it), so that what the officer typed is not lost. ``user``: whose session had ended, if
    the cookie still said so; the form comes back only to them (a shared border browser).
    Nothing in it is trusted: it only fills a form the officer reads and sends again."""

    model_config = ConfigDict(extra="forbid")

    party: str = Field(max_length=35)
    number: str = Field(max_length=35)
    key: str = Field(max_length=KEY_MAX_LENGTH)
    side: str = Field(max_length=16)
    port: str = Field(max_length=32)
    date: str = Field(max_length=32)
    officer: str = Field(max_length=200)
    transport_document: str = Field(max_length=200)
    quantities: dict[str, str] = Field(max_length=MAX_LINES)  # by line id
    user: int | None

    @classmethod
    def read(cls, kept: str) -> KeptEndorsement | None:
        """The kept form, or None for none or one this node did not write (ignored: the login
        itself goes on as without)."""
        if not kept:
            return None
        try:
            return cls.model_validate_json(kept)
        except ValidationError:
            return None

    def filled_in(self, form: EndorseForm) -> EndorseForm:
        """``form`` (the permit's endorse form as first offered) with the values kept."""
        return replace(
            form,
            key=self.key or form.key,
            side=self.side if self.side in form.sides else form.side,
            port=self.port,
            date=self.date,
            officer=self.officer,
            transport_document=self.transport_document,
            lines=tuple(
                replace(line, quantity=self.quantities.get(line.line_id, line.quantity))
                for line in form.lines
            ),
        )


def _login_page(
    request: Request, *, kept: str = "", refusal: EpixError | None = None, **context: object
) -> HTMLResponse:
    """The login page; with ``kept`` (an endorse form whose session had ended, as JSON), the
    form carries it through the login, and the page says so."""
    if KeptEndorsement.read(kept) is not None:
        context["kept"] = kept
        context["notice"] = (
            "Your session has ended. Log in again to go back to the permit; what you typed "
            "is kept, and is not sent until you press Endorse."
        )
    return _page(request, "login.html", "Log in", refusal=refusal, **context)


@router.post("/logout", response_class=HTMLResponse)
def logout_form(request: Request, database: DatabaseDep, context: RequestContextDep) -> Response:
    """The Log out button where the page's script does not run (a border post's browser is
    shared): the session ends as POST /v1/auth/logout ends it (every session of the person,
    audited; another site's form refused, EPIX-AUTH-012), then the login page."""
    try:
        logout(request, database, context)
    except EpixError as refusal:
        finding = refusal.findings[0]
        return error_page(request, refusal.http_status, finding.code, finding.message, None)
    return RedirectResponse("/web/login", status_code=303)


@router.get("/lookup", response_class=HTMLResponse)
def lookup_page(
    request: Request,
    party: Annotated[str, Query(max_length=35)] = "",
    number: Annotated[str, Query(max_length=35)] = "",
    retype_token: bool = False,
) -> HTMLResponse:
    """The check page (the script fills it). ``retype_token``: back from the login a token
    check was sent to; the token was not kept, so the page asks for it again."""
    notice = (
        "Type the security token again: it is not kept while you log in." if retype_token else ""
    )
    return _page(
        request, "lookup.html", "Check a permit", party=party, number=number, notice=notice
    )


@router.get("/check", response_class=HTMLResponse)
def check_page(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    party: Annotated[str, Query(max_length=35)] = "",
    number: Annotated[str, Query(max_length=35)] = "",
) -> Response:
    """A permit checked without the page's script, by its address (a link, the way back from
    the login page). Not logged in: to the login page, and back here."""
    here = f"{request.url.path}?{request.url.query}"
    return _check_answer(
        request, database, settings, context, party, number, token=None, login_next=here
    )


@router.post("/check", response_class=HTMLResponse)
def check_form(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    party: Annotated[str, Form(max_length=35)] = "",
    number: Annotated[str, Form(max_length=35)] = "",
    token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """The check form as the browser sends it when the page's script does not run. It is a
    POST so that a permit's security token travels in the body, never in the address (history,
    bookmarks, access log, Referer). Without a token: on to GET /web/check?party=&number=, an
    address that can be reloaded and gone back to. Not logged in with a token: to the login
    page, and back to the check page, which asks for the token again (it is kept nowhere)."""
    token = token.strip()
    address = urlencode({"party": party, "number": number})
    if not token:
        return RedirectResponse(f"/web/check?{address}", status_code=303)
    back = f"/web/lookup?{address}&retype_token=true"
    return _check_answer(
        request, database, settings, context, party, number, token=token, login_next=back
    )


def _who_text(principal: Principal) -> str:
    """Who is logged in, as the page's header says it (as epix.js showWho): on a shared border
    browser without script the officer sees in whose name an endorsement is recorded."""
    roles = ", ".join(sorted(role.value for role in principal.roles))
    return f"{principal.username} · {principal.party} · {roles}"


def _logged_in(
    request: Request,
    database: Database,
    *,
    refused: Callable[..., Response],
    login_next: str,
    to_log_in: Callable[[], Response] | None = None,
) -> Principal | Response:
    """The person logged in, or the answer for a request that has none: not logged in, to the
    login page (``to_log_in``'s, if given), which then goes on to ``login_next``; another
    site's link or form (EPIX-AUTH-012) or a throttled one, its refusal on the ``refused``
    page."""
    try:
        return get_current_principal(request, database)
    except EpixError as refusal:
        if refusal.http_status != 401:
            return refused(refusal=refusal)
        if to_log_in is not None:
            return to_log_in()
        return RedirectResponse("/web/login?" + urlencode({"next": login_next}), status_code=303)


def _check_answer(
    request: Request,
    database: Database,
    settings: Settings,
    context: RequestContext,
    party: str,
    number: str,
    *,
    token: str | None,
    login_next: str,
    kept: KeptEndorsement | None = None,
) -> Response:
    """The permit looked up by the same service call as GET /v1/permits/{party}/{number}
    (the same Party scoping, security token and audit; the printed form of the number tried
    as the script tries it) and shown on the page. Not logged in: to the login page, which
    then goes on to ``login_next``. The token is never put back into the page. ``kept``: the
    endorse form as typed before the session ended, filled in again."""
    page = partial(_page, request, "check.html", "Check a permit", party=party, number=number)
    principal = _logged_in(request, database, refused=page, login_next=login_next)
    if isinstance(principal, Response):
        return principal
    page = partial(page, who=_who_text(principal))
    try:
        view = _checked_permit(
            database, context, principal, party.strip().upper(), number.strip(), token
        )
    except EpixError as refusal:
        return page(refusal=refusal)
    lines = (view.get("permit") or {}).get("lines") or []
    species = {line.get("line_id"): line for line in lines}
    endorse = _endorse_form_of(principal, view, species, settings)
    if endorse is None or kept is None:
        return page(view=view, species=species, endorse=endorse)
    return page(
        view=view,
        species=species,
        endorse=kept.filled_in(endorse),
        notice="Your session had ended. What you typed is back: check it and press Endorse "
        "again; it was not sent.",
    )


def _checked_permit(
    database: Database,
    context: RequestContext,
    principal: Principal,
    party: str,
    number: str,
    token: str | None,
) -> dict[str, Any]:
    """The lookup answer for the permit typed, as epix.js lookUp gets it: the number as typed,
    then, when no such permit is on file, as permit numbers are printed (capitals, no
    spaces)."""
    missing = [
        Finding("EPIX-REQ-004", f"Enter the {label}.", field)
        for field, label, value in (
            ("party", "issuing Party", party),
            ("number", "permit number", number),
        )
        if not value
    ]
    if missing:
        raise EpixError(missing)

    def look_up(as_typed: str) -> dict[str, Any]:
        return look_up_permit(
            database,
            context,
            principal,
            party=party,
            number=as_typed,
            token=token,
            base_path=f"/v1/permits/{party}/{as_typed}",
        )

    try:
        return look_up(number)
    except EpixError as refusal:
        printed = printed_number(number)
        if refusal.findings[0].code != "EPIX-STATE-007" or printed == number:
            raise
    return look_up(printed)


@dataclass(frozen=True, slots=True)
class EndorseLine:
    """One line of the endorse form: the permit's line, its unit and species (shown), the
    quantity as typed and the remaining quantity the form offered (as the script's
    ``data-remaining``). ``field``: its input's id."""

    field: str
    line_id: str
    unit: str
    species: str
    quantity: str
    remaining: str


@dataclass(frozen=True, slots=True)
class EndorseForm:
    """What the endorse form of a page without script shows: the permit on screen, the sides
    the officer's Party may record, the values (typed, or as first offered) and the
    ``Idempotency-Key`` the form is sent with, made once when the form is first shown."""

    party: str
    number: str
    key: str
    sides: tuple[str, ...]
    side: str
    port: str
    date: str
    officer: str
    transport_document: str
    lines: tuple[EndorseLine, ...]
    date_hint: str


# The endorse form's field for a refusal's location (as the script's FIELD_OF_LOCATION).
_ENDORSE_FIELDS = {
    "side": "side",
    "port": "port",
    "date": "date",
    "officer": "officer",
    "transport_document": "transport",
}


def _border_day(settings: Settings, party: str, now: datetime | None = None) -> tuple[str, str]:
    """The endorse form's date as first offered, and its hint, for an officer of ``party`` on
    a page without script (the browser's zone is unknown there). Filled in only where the node
    knows the Party's time zone (EPIX_WEB_TIME_ZONES): UTC's date is the wrong day at a border
    far from UTC near midnight, and a wrong date on an endorsement is not seen by a tired
    officer. Else left to type, the hint saying the day and time in UTC."""
    now = now or datetime.now(UTC)
    zone = settings.web_time_zones.get(party)
    if zone is None:
        return "", (
            "The date of the inspection at your border: type it "
            f"(in UTC it is {now:%Y-%m-%d %H:%M} now; at your border it may be another day)"
        )
    today = now.astimezone(ZoneInfo(zone)).date().isoformat()
    return today, f"The date of the inspection (today in {zone}, {today}, is filled in)"


def _endorse_form_of(
    principal: Principal, view: dict[str, Any], species: dict[Any, Any], settings: Settings
) -> EndorseForm | None:
    """The endorse form for the permit checked, or None when the officer may not endorse it:
    customs of its exporting or importing Party only (the service refuses anyone else too),
    as the lookup answer names them (the script's page decides from the same answer)."""
    if Role.CUSTOMS not in principal.roles:
        return None
    sides = tuple(
        side
        for side, party in (("export", view["exporter_party"]), ("import", view["importer_party"]))
        if party == principal.party
    )
    if not sides:
        return None
    lines = tuple(
        EndorseLine(
            field=f"qty-{index}",
            line_id=line["line_id"],
            unit=line["unit"],
            species=(species.get(line["line_id"]) or {}).get("scientific_name") or "",
            quantity="" if line["remaining"] == "0" else line["remaining"],
            remaining=line["remaining"],
        )
        for index, line in enumerate(view["lines"])
    )
    date, date_hint = _border_day(settings, principal.party)
    return EndorseForm(
        party=view["issuing_party"],
        number=view["number"],
        key=str(uuid.uuid4()),
        sides=sides,
        side=sides[0],
        port="",
        date=date,
        officer="",
        transport_document="",
        lines=lines,
        date_hint=date_hint,
    )


_FORM_SENT_BEFORE = (
    "This form had already been sent with other values; what that recorded is on the "
    "permit's check page. Check the values below and press Endorse to send them as a new "
    "request."
)
FormText = Annotated[str, Form(max_length=200)]
FormList = Annotated[list[str] | None, Form(max_length=MAX_LINES)]


@router.get("/endorse", response_class=RedirectResponse)
def endorse_address() -> RedirectResponse:
    """The endorse answer's address opened again from the address bar or a bookmark: the form
    is sent from a permit's check page, so on to the check page (it was a 405 refusal)."""
    return RedirectResponse("/web/lookup", status_code=303)


@router.post("/endorse", response_class=HTMLResponse)
def endorse_form(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
    party: Annotated[str, Form(max_length=35)] = "",
    number: Annotated[str, Form(max_length=35)] = "",
    idempotency_key: Annotated[str, Form(max_length=KEY_MAX_LENGTH)] = "",
    side: Annotated[str, Form(max_length=16)] = "",
    port: Annotated[str, Form(max_length=32)] = "",
    date: Annotated[str, Form(max_length=32)] = "",
    officer: FormText = "",
    transport_document: FormText = "",
    line_id: FormList = None,
    unit: FormList = None,
    species: FormList = None,
    quantity: FormList = None,
    remaining: FormList = None,
) -> Response:
    """The endorse form of the check page as a browser without script sends it: the
    endorsement is made by the API's own ``endorse_once`` (the same rules, audit and
    ``Idempotency-Key`` record: the key is a hidden field, so the form sent again, by a reload
    or Back and Endorse, records once and shows what was recorded). Protected as the API is:
    the session cookie, another site's request refused (EPIX-AUTH-012), customs only. A
    refusal shows the form again with what was typed, each problem linked to its field."""
    back = "/web/check?" + urlencode({"party": party, "number": number})
    title = f"Endorse permit {party} {number}"
    page = partial(_page, request, "endorse.html", title)
    session_user = (web_session(request) or {}).get(SESSION_USER)

    def to_log_in() -> Response:
        """The session had ended: the login page, carrying what was typed through the login
        (``KeptEndorsement``); another site's form is refused instead, nothing of it kept."""
        try:
            check_same_origin(request)
        except EpixError as refusal:
            return page(refusal=refusal)
        kept = KeptEndorsement(
            party=party,
            number=number,
            key=idempotency_key,
            side=side,
            port=port,
            date=date,
            officer=officer,
            transport_document=transport_document,
            quantities=dict(zip(line_id or [], quantity or [], strict=False)),
            user=session_user if isinstance(session_user, int) else None,
        )
        login = "/web/login?" + urlencode({"next": back})
        return _login_page(request, kept=kept.model_dump_json(), action=login)

    principal = _logged_in(request, database, refused=page, login_next=back, to_log_in=to_log_in)
    if isinstance(principal, Response):
        return principal
    page = partial(page, who=_who_text(principal))
    try:
        ensure_role(principal, Role.CUSTOMS)
    except EpixError as refusal:
        record_denied(request, database, principal, refusal)
        return page(refusal=refusal)
    typed = (line_id or [], unit or [], species or [], quantity or [], remaining or [])
    form = EndorseForm(
        party=party,
        number=number,
        key=idempotency_key,
        sides=(side,) if side in ("export", "import") else ("export", "import"),
        side=side,
        port=port,
        date=date,
        officer=officer,
        transport_document=transport_document,
        lines=tuple(
            EndorseLine(f"qty-{index}", *values)
            for index, values in enumerate(zip(*typed, strict=False))
        ),
        date_hint=_border_day(settings, principal.party)[1],
    )
    sent = [line for line in form.lines if line.quantity.strip()]
    try:
        if len({len(values) for values in typed}) != 1:  # not a form this node made
            raise EpixError.of(
                "EPIX-REQ-004", "The form's lines are incomplete; check the permit again.", "lines"
            )
        body = _endorsement_request(form, sent)
        answer = endorse_once(
            database,
            settings,
            context,
            principal,
            party=party,
            number=number,
            body=body,
            # Fingerprinted as the API's request for this permit: the form's key sent for
            # another permit is another request (EPIX-REQ-013), not the first one's answer.
            key=keyed_request(
                check_key(idempotency_key),
                request,
                body,
                path=f"/v1/permits/{party}/{number}/endorsements",
            ),
        )
    except EpixError as refusal:
        if refusal.findings[0].code == "EPIX-REQ-013":
            # This form's key answered another request (Back, values changed, Endorse): the
            # form sent again is a new request, judged afresh, under a key of its own. The
            # API's words ("use a new key") are for a client that makes the key; here the
            # page made it, and has made a new one.
            form = replace(form, key=str(uuid.uuid4()))
            refusal = EpixError.of("EPIX-REQ-013", _FORM_SENT_BEFORE)
        field_of: dict[str | None, str] = {}  # a finding's location: its field's id
        field_errors: dict[str, str] = {}  # a field's id: the first finding on it
        for finding in refusal.findings:
            field = _endorse_field(finding.location, form, sent)
            if field is not None:
                field_of[finding.location] = field
                field_errors.setdefault(field, f"{finding.code}: {finding.message}")
        return page(refusal=refusal, endorse=form, field_of=field_of, field_errors=field_errors)
    return page(endorsement=answer.body, replayed=answer.replayed, back=back)


# A quantity as a decimal keypad gives it: a point or a comma before decimals (epix.js
# readQuantity); one that may be thousands grouping instead ("1,500", "1.500").
_QUANTITY = re.compile(r"[0-9]+(?:[.,][0-9]+)?")
_GROUPED = re.compile(r"[1-9][0-9]{0,2}[.,][0-9]{3}")


def _read_quantity(line: EndorseLine, location: str) -> str:
    """The quantity typed, read as the script's page reads it (epix.js ``readQuantity``): a
    decimal comma is a point; a value that could be thousands grouping, or is no number, is
    refused (EPIX-QTY-004) with what to write, never guessed. The remaining quantity the form
    offered, unchanged, is the node's own and goes as it is."""
    typed = line.quantity.strip()
    if typed == line.remaining:
        return typed
    if _GROUPED.fullmatch(typed):
        whole = typed.replace(",", "").replace(".", "")
        decimal = typed.replace(",", ".").rstrip("0").rstrip(".")
        unambiguous = decimal + "0" if _GROUPED.fullmatch(decimal) else decimal
        raise EpixError.of(
            "EPIX-QTY-004",
            f"“{typed}” could mean {decimal} or {whole} {line.unit}: write {whole} for {whole}, "
            f"or {unambiguous} for {decimal}.",
            location,
        )
    if _QUANTITY.fullmatch(typed):
        return typed.replace(",", ".")
    raise EpixError.of(
        "EPIX-QTY-004",
        f"“{typed}” is not a quantity: write digits, with a point or a comma before decimals "
        "(12.5 or 12,5), and no thousands separators.",
        location,
    )


def _endorsement_request(form: EndorseForm, sent: list[EndorseLine]) -> EndorsementIn:
    """The API's request body for the form, or the refusal: a field left empty (as the script
    says it: "Enter the ..."), no quantity given, a quantity the script's page would not read
    either, or what the API's validation refuses. The quantities read go to the service, which
    judges them (EPIX-QTY-004 names what to write)."""
    missing = [
        Finding("EPIX-REQ-004", f"Enter the {label}.", location)
        for location, label, value in (
            ("port", "port (UN/LOCODE)", form.port),
            ("date", "date", form.date),
            ("officer", "officer", form.officer),
            ("transport_document", "bill of lading / air waybill", form.transport_document),
        )
        if not value.strip()
    ]
    if not sent:
        missing.append(Finding("EPIX-REQ-004", "Enter the quantity of at least one line.", "lines"))
    quantities: list[str] = []
    for index, line in enumerate(sent):
        try:
            quantities.append(_read_quantity(line, f"lines/{index}/quantity"))
        except EpixError as unreadable:
            missing += unreadable.findings
    if missing:
        raise EpixError(missing)
    try:
        return EndorsementIn.model_validate(
            {
                "side": form.side,
                "port": form.port,
                "date": form.date,
                "officer": form.officer,
                "transport_document": form.transport_document,
                "lines": [
                    {"line_id": line.line_id, "quantity": quantity, "unit": line.unit}
                    for line, quantity in zip(sent, quantities, strict=True)
                ],
            }
        )
    except ValidationError as invalid:
        raise EpixError(validation_findings(invalid.errors())) from None


def _endorse_field(location: str | None, form: EndorseForm, sent: list[EndorseLine]) -> str | None:
    """The id of the form field a refusal's location names: ``lines/<i>...`` is the i-th
    quantity sent (``lines`` alone, the first line), the others by name."""
    parts = (location or "").split("/")
    if parts[0] != "lines":
        return _ENDORSE_FIELDS.get(parts[0])
    if len(parts) == 1:
        return form.lines[0].field if form.lines else None
    index = int(parts[1]) if parts[1].isdigit() else len(sent)
    return sent[index].field if index < len(sent) else None


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request, database: DatabaseDep) -> HTMLResponse:
    """The key registry as GET /v1/registry/parties and /v1/registry/certificates/expiring
    answer it, read by the same registry calls, on the page itself: a browser that runs no
    script (a customs workstation) shows it too. No login, as for the API: public keys."""
    with database.read() as session:
        parties = [party_json(party) for party in registry_repository.list_parties(session)]
        expiring = [
            certificate.as_dict()
            for certificate in expiring_certificates(session, within_days=EXPIRING_WITHIN_DAYS)
        ]
    return _page(
        request,
        "registry.html",
        "Key registry",
        parties=parties,
        expiring=expiring,
        within_days=EXPIRING_WITHIN_DAYS,
    )


@router.get("/qr.svg")
def permit_qr(party: PartyCode, number: PermitNumber, settings: SettingsDep) -> Response:
    """A QR code that opens this node's check page for the permit (for paper copies)."""
    target = f"{settings.node_base_url.rstrip('/')}/web/lookup?" + urlencode(
        {"party": party.upper(), "number": number}
    )
    image = qrcode.make(target, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return Response(buffer.getvalue(), media_type="image/svg+xml")


def mount_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/web/static", StaticFiles(directory=_HERE / "static"), name="web-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/web/lookup", status_code=303)
