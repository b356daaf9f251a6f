"""RFC 9457 problem+json for every refusal: stable codes, a human message, a location."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from epix.errors import ERROR_TABLE, EpixError, Finding

log = logging.getLogger("epix.api")
PROBLEM_JSON = "application/problem+json"
_HTTP_CODES = {404: "EPIX-REQ-005", 405: "EPIX-REQ-006", 413: "EPIX-REQ-003", 415: "EPIX-REQ-002"}


def problem_response(
    findings: list[Finding],
    status: int,
    *,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    first = next((f for f in findings if f.severity == "error"), findings[0])
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


def _validation_location(loc: tuple[Any, ...] | list[Any]) -> str:
    return "/".join(str(part) for part in loc)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(EpixError)
    async def _epix_error(_request: Request, exc: EpixError) -> JSONResponse:
        return problem_response(exc.findings, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        findings = []
        for error in exc.errors():
            code = "EPIX-REQ-001" if error.get("type") == "json_invalid" else "EPIX-REQ-004"
            findings.append(
                Finding(code, str(error.get("msg", "invalid")), _validation_location(error["loc"]))
            )
        if not findings:
            findings = [Finding("EPIX-REQ-004", "The request is not valid.")]
        status = 400 if findings[0].code == "EPIX-REQ-001" else 422
        return problem_response(findings, status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "EPIX-REQ-004")
        detail = exc.detail if isinstance(exc.detail, str) else ERROR_TABLE[code].meaning
        return problem_response([Finding(code, detail)], exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        finding = Finding("EPIX-REQ-007", ERROR_TABLE["EPIX-REQ-007"].meaning)
        return problem_response([finding], 500)
