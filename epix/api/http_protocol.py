"""uvicorn's HTTP/1.1 protocol (httptools) with the bounds a node on the internet needs.

uvicorn bounds neither the request head nor the time a client takes to send it or its body:
one connection could stream hundreds of megabytes of header bytes (all buffered, ~1.8 bytes
of memory each), a connection that never sends a byte stayed open for ever, and a body could
trickle one byte a second for ever. ``BodySizeLimit`` only sees the body, after the head. So:

- a request head (request line and headers) over ``MAX_HEAD_BYTES`` gets 431 (EPIX-REQ-010);
- a head not complete ``HEAD_TIMEOUT_SECONDS`` after the connection opened or the request
  began, or a body with no byte for ``BODY_IDLE_SECONDS``, gets 408 (EPIX-REQ-011) before
  anything reaches the application (a body's request then sees a disconnect).
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from epix.api.limits import problem_body

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 30.0
BODY_IDLE_SECONDS = 60.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a cap on head bytes and timeouts on reading head and body."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT_SECONDS
    body_idle_timeout = BODY_IDLE_SECONDS

    _reading_head = True
    _reading_body = False
    _head_bytes = 0
    _read_timer: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered and closing: the rest is not parsed
            return
        reading_head = self._reading_head
        if self._reading_body:
            self._arm(self.body_idle_timeout)
        super().data_received(data)
        # Bytes of a head still incomplete after this chunk. A head that began inside the
        # chunk (after a previous request's body) is counted from the next chunk on: at most
        # one read (256 KiB) more than the cap is ever buffered.
        if self._reading_head and reading_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self._refuse(
                    "EPIX-REQ-010",
                    f"The request line and headers exceed {self.max_head_bytes} bytes.",
                )

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head, self._head_bytes = True, 0
        if self._read_timer is None:
            self._arm(self.head_timeout)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        # A head that arrived whole in one read was not counted chunk by chunk.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse(
                "EPIX-REQ-010",
                f"The request line and headers exceed {self.max_head_bytes} bytes.",
            )
            raise httptools.HttpParserError("request head too large")  # stop the parser
        self._reading_body = True
        self._arm(self.body_idle_timeout)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(seconds, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._reading_head:
            self._refuse("EPIX-REQ-011", "The request headers did not arrive in time.")
        elif self._reading_body:
            self._reading_body = False
            cycle = self.cycle
            if cycle is not None:
                # The application sees a disconnect instead of waiting for more body.
                cycle.disconnected = True
                cycle.message_event.set()
            if cycle is not None and not cycle.response_started:
                self._refuse("EPIX-REQ-011", "The request body stopped arriving.")
            else:
                self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # uvicorn's answer to the parser stopped by ``_refuse``
            super().send_400_response(msg)

    def _refuse(self, code: str, message: str) -> None:
        """A problem+json answer, then the connection is closed."""
        self._refused = True
        self._disarm()
        status, body = problem_body(code, message, "request")
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        self.transport.write(
            head
            + b"content-type: application/problem+json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()
