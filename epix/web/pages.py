"""Routes serving the web pages, their static files and the permit QR code."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

import qrcode
import qrcode.image.svg
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from epix.api.deps import SettingsDep
from epix.web.templating import templates

_HERE = Path(__file__).resolve().parent
router = APIRouter(prefix="/web", include_in_schema=False)
PartyCode = Annotated[str, Query(pattern=r"^[A-Za-z]{2}$")]
PermitNumber = Annotated[str, Query(min_length=1, max_length=35)]


def _page(request: Request, name: str, title: str) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"title": title})


@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/web/lookup", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "Log in")


@router.get("/lookup", response_class=HTMLResponse)
def lookup_page(request: Request) -> HTMLResponse:
    return _page(request, "lookup.html", "Check a permit")


@router.get("/registry", response_class=HTMLResponse)
def registry_page(request: Request) -> HTMLResponse:
    return _page(request, "registry.html", "Key registry")


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
