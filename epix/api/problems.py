"""RFC 9457 problem+json for every refusal: stable codes, a human message, a location.

A browser opening an address outside the API (it asks for HTML) gets the refusal as a page
instead (``epix.web.pages.error_page``), with the same status, code and headers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from epix.api.security_headers import security_headers
from epix.db.trouble import database_trouble, driver_message
from epix.errors import ERROR_TABLE, EpixError, Finding
from epix.web.templating import error_page, wants_page

log = logging.getLogger("epix.api")
PROBLEM_JSON = "application/problem+json"
_HTTP_CODES = {
    400: "EPIX-REQ-001",
    404: "EPIX-REQ-005",
    405: "EPIX-REQ-006",
    413: "EPIX-REQ-003",
    415: "EPIX-REQ-002",
}
# FastAPI answers 400 with this detail when a body cannot be decoded at all (e.g. not UTF-8).
_UNREADABLE_BODY = "The request body could not be read; send UTF-8 encoded JSON."


def deciding_finding(findings: Sequence[Finding]) -> Finding:
    """The finding a refusal is named by (its problem's ``code``): the first error."""
    return next((f for f in findings if f.severity == "error"), findings[0])


def problem_response(
    findings: list[Finding],
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    first = deciding_finding(findings)
    body: dict[str, Any] = {
        "type": f"urn:epix:error:{first.code}",
        "title": ERROR_TABLE[first.code].meaning,
        "status": status,
        "detail": first.message,
        "code": first.code,
        "errors": [f.as_dict() for f in findings],
    }
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _refusal(
    request: Request,
    findings: list[Finding],
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The refusal as problem+json, or as a page for a person's browser."""
    if wants_page(request):
        first = deciding_finding(findings)
        return error_page(request, status, first.code, first.message, headers)
    return problem_response(findings, status, headers=headers)


def _validation_location(loc: tuple[Any, ...] | list[Any]) -> str:
    return "/".join(str(part) for part in loc)


def validation_findings(errors: Sequence[Any]) -> list[Finding]:
    """Pydantic's validation errors as findings: EPIX-REQ-001 for a body that is not JSON,
    EPIX-REQ-004 for any other, each at its location (``body/lines/0/quantity``)."""
    findings = []
    for error in errors:
        location = _validation_location(error["loc"]) or "request"
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "it cannot be decoded")
            message = f"The request body is not valid JSON: {reason}."
            findings.append(Finding("EPIX-REQ-001", message, location))
        else:
            findings.append(Finding("EPIX-REQ-004", str(error.get("msg", "invalid")), location))
    return findings or [Finding("EPIX-REQ-004", "The request is not valid.", "request")]


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(EpixError)
    async def _epix_error(request: Request, exc: EpixError) -> Response:
        wait = exc.retry_after_seconds
        headers = {"Retry-After": str(wait)} if wait is not None else None
        return _refusal(request, exc.findings, exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        findings = validation_findings(exc.errors())
        status = 400 if findings[0].code == "EPIX-REQ-001" else 422
        return _refusal(request, findings, status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "EPIX-REQ-004")
        detail = exc.detail if isinstance(exc.detail, str) else ERROR_TABLE[code].meaning
        location = request.url.path
        if exc.status_code == 400:
            detail, location = _UNREADABLE_BODY, "body"
        finding = Finding(code, detail, location)
        return _refusal(request, [finding], exc.status_code, headers=exc.headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
        # The client hung up (or the server's read timeout cut it off) before its body was
        # complete: nothing was processed and no one is left to answer, so no traceback.
        log.info("client left during its request body: %s %s", request.method, request.url.path)
        return Response(status_code=400)

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        # The database refused a value of the request (a NUL character in a JSON string, a
        # number out of a column's range): the request's fault, and its transaction rolled back.
        # Only the driver's own message is logged: SQLAlchemy's names the statement's values.
        cause = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
        log.warning(
            "refused a value the database cannot store on %s %s: %s",
            request.method,
            request.url.path,
            cause,
        )
        if "NUL" in cause:  # psycopg: "PostgreSQL text fields cannot contain NUL (0x00) bytes"
            message = "A value in the request holds a NUL character, which the node does not store."
        else:
            message = f"A value in the request cannot be stored: {cause}"
        return _refusal(request, [Finding("EPIX-REQ-009", message, request.url.path)], 400)

    @app.exception_handler(SQLAlchemyError)
    async def _database_failed(request: Request, exc: SQLAlchemyError) -> Response:
        # The database is down, saturated or cannot store: the client should retry, and the
        # operator reads one line (no traceback, no statement values, no password) per request.
        trouble = database_trouble(exc)
        if trouble is None:
            raise exc  # a bug, not an outage: the 500 handler answers and logs its traceback
        url: str = request.app.state.database.url
        log.warning(
            "%s on %s %s: %s",
            trouble.code,
            request.method,
            request.url.path,
            driver_message(exc, url),
        )
        finding = Finding(trouble.code, ERROR_TABLE[trouble.code].meaning, request.url.path)
        retry = {"Retry-After": str(trouble.retry_after_seconds)}
        return _refusal(request, [finding], ERROR_TABLE[trouble.code].http_status, headers=retry)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        finding = Finding("EPIX-REQ-007", ERROR_TABLE["EPIX-REQ-007"].meaning, request.url.path)
        # Sent from outside the middleware stack, past SecurityHeaders: add its headers here.
        https = request.app.state.settings.node_base_url.startswith("https://")
        return _refusal(request, [finding], 500, headers=security_headers(https=https))
