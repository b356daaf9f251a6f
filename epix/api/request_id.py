"""One id per request, in the answer, the node's log lines and the audit event it causes.

An operator reading a log line (a 503, a client that left, a delivery queued) must find the
audit event of the same request, and a client reporting a problem can quote the id its answer
carried. A client's own ``X-Request-Id`` is kept when it is a plain token (a proxy's or a
client's correlation id); anything else (too long, spaces, control characters, ``%``) is
replaced, so no client text reaches a log format or the audit trail through it.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"
_TOKEN = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
current_request_id: ContextVar[str | None] = ContextVar("epix_request_id", default=None)


class RequestId:
    """Pure ASGI: chooses the id, puts it in the request's headers (where the audit trail's
    header allow-list records it) and in the answer's, and holds it for log lines."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope["headers"] if name == HEADER]
        chosen = (
            given[0]
            if len(given) == 1 and _TOKEN.fullmatch(given[0])
            else uuid.uuid4().hex.encode()
        )
        headers = [(name, value) for name, value in scope["headers"] if name != HEADER]
        scope = {**scope, "headers": [*headers, (HEADER, chosen)]}

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (HEADER, chosen)]
            await send(message)

        token = current_request_id.set(chosen.decode())
        try:
            await self.app(scope, receive, with_id)
        finally:
            current_request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Gives every record ``request_id`` (the id while a request is being answered, else None)
    and ``request_suffix``: `` request_id=<id>`` or nothing (for the log formats of
    ``epix.cli.logs``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        record.request_id = request_id
        record.request_suffix = f" request_id={request_id}" if request_id else ""
        return True
