"""What a request must meet before it is routed: a body within the cap (guarantee 7: 413 before
the body is read, never an OOM), a body in no content coding and no transfer coding but chunked,
and no NUL character in its path or query.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from epix.errors import ERROR_TABLE
from epix.web.templating import error_page, wants_page


class BodyTooLarge(Exception):
    pass


def problem_body(code: str, message: str, location: str) -> tuple[int, bytes]:
    """The status and problem+json body of a refusal, as ``problems.problem_response`` has it."""
    entry = ERROR_TABLE[code]
    body = {
        "type": f"urn:epix:error:{code}",
        "title": entry.meaning,
        "status": entry.http_status,
        "detail": message,
        "code": code,
        "errors": [
            {
                "code": code,
                "severity": "error",
                "message": message,
                "location": location,
                "line": None,
            }
        ],
    }
    return entry.http_status, json.dumps(body).encode()


async def _send_problem(send: Send, status: int, body: bytes, *, close: bool = False) -> None:
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RefuseNulCharacters:
    """A NUL character in the path or query is refused up front (EPIX-REQ-009).

    No identifier, code or name of EPIX holds one, PostgreSQL cannot store one in a text column,
    and the audit trail records the path of every request it audits.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            where = "path" if "\x00" in scope["path"] else None
            if where is None and (b"%00" in query or b"\x00" in query):
                where = "query"
            if where is not None:
                message = (
                    f"The request's {where} holds a NUL character (%00); no EPIX value has one."
                )
                request = Request(scope)
                if wants_page(request):  # a browser (the check page's form): a page, not JSON
                    page = error_page(request, 400, "EPIX-REQ-009", message, None)
                    await page(scope, receive, send)
                    return
                status, body = problem_body("EPIX-REQ-009", message, where)
                await _send_problem(send, status, body)
                return
        await self.app(scope, receive, send)


def _codings(headers: list[tuple[bytes, bytes]], header: bytes, understood: tuple[str, ...]) -> str:
    """The codings named in every ``header`` line but the understood ones, quoted, or ""."""
    return ", ".join(
        repr(coding)
        for name, value in headers
        if name == header
        for coding in (part.strip().lower() for part in value.decode("latin-1").split(","))
        if coding not in understood
    )


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when the request announces a body: chunked, or a Content-Length other than 0."""
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0")
        for name, value in headers
    )


class RefuseCodings:
    """A body in a content coding (``Content-Encoding``: gzip, br, ...) is refused up front
    (415, EPIX-REQ-002), and one in a transfer coding other than chunked (EPIX-REQ-015).

    No route decodes a content coding: a gzip-compressed permit used to reach the parser as
    its compressed bytes and come back as "not well-formed XML" with a rejected receipt, which
    sends the sender looking for a fault in the document (RFC 9110 8.4.1 names 415 for this).
    uvicorn undoes only ``chunked`` and passed a ``gzip, chunked`` body on still compressed,
    where a proxy in front would have decompressed it: the two would read different bytes.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
            content = _codings(headers, b"content-encoding", ("", "identity"))
            transfer = _codings(headers, b"transfer-encoding", ("", "chunked"))
            refusal = None
            if content and _has_body(headers):
                refusal = problem_body(
                    "EPIX-REQ-002",
                    f"The request body is in the content coding {content}; the node reads "
                    "bodies only as sent (no Content-Encoding): send it uncompressed.",
                    "Content-Encoding",
                )
            elif transfer:
                refusal = problem_body(
                    "EPIX-REQ-015",
                    f"The request body is in the transfer coding {transfer}; the node "
                    "implements only chunked.",
                    "Transfer-Encoding",
                )
            if refusal is not None:
                await _send_problem(send, *refusal, close=True)
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Refuse by Content-Length up front, and count streamed bytes for chunked bodies."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send) -> None:
        status, body = problem_body(
            "EPIX-REQ-003", f"The request body exceeds {self.max_bytes} bytes.", "body"
        )
        await _send_problem(send, status, body, close=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._refuse(send)
