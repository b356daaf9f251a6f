"""uvicorn's HTTP/1.1 protocol (httptools) with the bounds a node on the internet needs.

uvicorn bounds neither the request head nor the time a client takes to send it or its body:
one connection could stream hundreds of megabytes of header bytes (all buffered, ~1.8 bytes
of memory each), a connection that never sends a byte stayed open for ever, and a body could
trickle one byte a minute for ever. ``BodySizeLimit`` only sees the body, after the head. So:

- a request head (request line and headers) over ``MAX_HEAD_BYTES`` gets 431 (EPIX-REQ-010);
- a head not complete ``HEAD_TIMEOUT_SECONDS`` after the connection opened or the request
  began gets 408 (EPIX-REQ-011);
- so does a body (then the application sees a client that left) with no byte for
  ``BODY_IDLE_SECONDS``, or slower on average than ``EPIX_BODY_MIN_BYTES_PER_SECOND`` once
  ``EPIX_BODY_GRACE_SECONDS`` have passed (each byte buys 1/rate seconds, as Apache's
  mod_reqtimeout ``MinRate``), or not complete ``EPIX_BODY_MAX_SECONDS`` after the head.

One timer per request: a body's read only counts its bytes and notes the time; the timer, when
it fires, computes the deadline those allow and either answers or sets itself to that deadline.
Time the node keeps the client from sending (uvicorn not reading, a ``100 Continue`` not yet
sent) does not count: the client's clock starts afresh after it.

Nor does uvicorn bound the other direction: a client that stops reading its answer keeps the
response (and the application's task, waiting to write more) for ever. When the connection's
write buffer stays full for ``WRITE_STALL_SECONDS``, the connection is aborted.
"""

from __future__ import annotations

import asyncio

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from epix.api.limits import problem_body
from epix.settings import get_settings

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_SECONDS = 30.0
BODY_IDLE_SECONDS = 60.0
WRITE_STALL_SECONDS = 60.0


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a cap on head bytes and timeouts on reading head and body."""

    max_head_bytes = MAX_HEAD_BYTES
    head_timeout = HEAD_TIMEOUT_SECONDS
    body_idle_timeout = BODY_IDLE_SECONDS
    write_stall_timeout = WRITE_STALL_SECONDS
    body_grace: float  # these three from the settings, when a connection is made
    body_min_rate: float
    body_max_seconds: float

    _reading_head = True
    _reading_body = False
    _body_timed = False  # the timer is set for the body, no longer the head's
    _body_held = False  # at the timer's last check, the node held the body up
    _head_bytes = 0
    _body_bytes = 0
    _body_began = 0.0  # loop times
    _body_last_read = 0.0
    _read_timer: asyncio.TimerHandle | None = None
    _write_timer: asyncio.TimerHandle | None = None
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        settings = get_settings()
        self.body_grace = settings.body_grace_seconds
        self.body_min_rate = settings.body_min_bytes_per_second
        self.body_max_seconds = settings.body_max_seconds
        self._arm(self.loop.time() + self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._writing_resumed()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client is not taking the answer as fast as it is written: it has
        ``write_stall_timeout`` seconds to take some before the connection is aborted."""
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_stall_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._writing_resumed()
        super().resume_writing()

    def _writing_resumed(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        """Abort, not close: a close would wait for the buffer to drain, which is the wait.
        The application sees a client that left."""
        self._write_timer = None
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._refused:  # answered and closing: the rest is not parsed
            return
        reading_head = self._reading_head
        super().data_received(data)
        if self._reading_body and not self._body_timed:
            # The head completed in this read and the body did not: from now on the body's
            # deadline. (A request whole in one read never gets here: one timer, the head's.)
            self._body_timed = True
            self._arm(self._body_deadline())
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
            self._arm(self.loop.time() + self.head_timeout)

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
        self._reading_body, self._body_timed, self._body_held = True, False, False
        self._body_bytes = 0
        self._body_began = self._body_last_read = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._body_last_read = self.loop.time()
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._disarm()
        super().on_message_complete()

    def _body_deadline(self) -> float:
        """When the body, as far as it arrived, is too slow: idle, under the rate, or too long."""
        return min(
            self._body_last_read + self.body_idle_timeout,
            self._body_began + self.body_grace + self._body_bytes / self.body_min_rate,
            self._body_began + self.body_max_seconds,
        )

    def _arm(self, when: float) -> None:
        self._disarm()
        self._read_timer = self.loop.call_at(when, self._read_timed_out)

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
            now = self.loop.time()
            held, self._body_held = self._body_held, self._node_holds_body()
            if held or self._body_held:
                # The node, not the client, held the body up, at this check or the one before
                # (so the hold ended after it): the client gets its clock afresh from now.
                self._body_began = self._body_last_read = now
                self._body_bytes = 0
            deadline = self._body_deadline()
            if now < deadline:
                self._arm(deadline)
                return
            self._body_timed_out(now)

    def _node_holds_body(self) -> bool:
        """Whether the node keeps the client from sending: uvicorn stopped reading (the
        application has not taken what came, a pipelined request waits for the one before it)
        or has not sent the ``100 Continue`` the client waits for (the application has not asked
        for the body yet)."""
        cycle = self.cycle
        return self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue)

    def _body_timed_out(self, now: float) -> None:
        self._reading_body = False
        cycle = self.cycle
        if cycle is not None:
            # The application sees a disconnect instead of waiting for more body.
            cycle.disconnected = True
            cycle.message_event.set()
        if cycle is None or cycle.response_started:
            self.transport.close()
        elif now >= self._body_last_read + self.body_idle_timeout:
            self._refuse("EPIX-REQ-011", "The request body stopped arriving.")
        elif now >= self._body_began + self.body_max_seconds:
            self._refuse(
                "EPIX-REQ-011",
                f"The request body was not complete within {self.body_max_seconds:g} seconds.",
            )
        else:
            self._refuse(
                "EPIX-REQ-011",
                f"The request body arrived slower than {self.body_min_rate:g} bytes a second.",
            )

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes the HTTP parser refused (it was plain text, uncoded)."""
        if not self._refused:  # else the parser was stopped by ``_refuse``: answered already
            self._refuse(
                "EPIX-REQ-015",
                "The request is not valid HTTP/1.1: its request line, a header, Content-Length "
                "(one, a decimal number, never beside Transfer-Encoding) or chunked framing.",
            )

    def _refuse(self, code: str, message: str) -> None:
        """A problem+json answer, then the connection is closed."""
        self._refused = True
        self._disarm()
        status, body = problem_body(code, message, "request")
        reason = {
            400: b"Bad Request",
            408: b"Request Timeout",
            431: b"Request Header Fields Too Large",
        }[status]
        head = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        self.transport.write(
            head
            + b"content-type: application/problem+json\r\n"
            + b"content-length: %d\r\n" % len(body)
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()
