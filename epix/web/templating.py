"""The page templates, and refusals shown as pages to a person's browser."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from epix.errors import ERROR_TABLE

templates = Jinja2Templates(directory=Path(__file__).resolve().parent / "templates")


def utc_time(iso: str | None) -> str:
    """An instant of the API ("2026-12-07T08:30:00+00:00") as a page shows it without script,
    which cannot know the reader's time zone: "2026-12-07 08:30 UTC"."""
    if not iso:
        return "—"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def party_text(party: Mapping[str, Any] | None) -> str:
    """A permit's exporter or importer: its name and country (as epix.js partyText)."""
    if not party:
        return "—"
    address = party.get("address") or {}
    country = f" ({address['country']})" if address.get("country") else ""
    return f"{party.get('name') or ''}{country}" or "—"


templates.env.filters["utc_time"] = utc_time
templates.env.filters["party_text"] = party_text


# What a person reads when the node refuses a page (title, then what to do), by HTTP status.
_ERROR_PAGES = {
    404: ("Page not found", "There is no page at this address. Check the address you typed."),
    405: ("Page not found", "This address does not take that kind of request."),
    500: ("Something went wrong", "The node could not answer. Its operator has the details."),
    503: ("The node cannot answer just now", "Its database is not reachable. Try again soon."),
}


def error_page(
    request: Request, status: int, code: str, message: str, headers: Mapping[str, str] | None
) -> HTMLResponse:
    """A refusal as a page, for a person whose browser asked for one (never JSON or a traceback)."""
    title, explanation = _ERROR_PAGES.get(status, ("The request was refused", message))
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "title": title,
            "explanation": explanation,
            "code": code,
            "meaning": ERROR_TABLE[code].meaning,
        },
        status_code=status,
        headers=headers,
    )


def wants_page(request: Request) -> bool:
    """A browser opening an address (it asks for HTML), not the API nor a script's call."""
    path = request.url.path
    return "text/html" in request.headers.get("accept", "") and not path.startswith("/v1/")
