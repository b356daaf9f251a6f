"""Outbound HTTP with an overall deadline per request.

httpx's timeouts bound each connect, read and write, not the request: a peer node, webhook
receiver or registry source that sends its status line, headers or body one byte every few
seconds resets the read timeout at every byte and holds the caller (an outbox delivery, the
registry follower) for as long as it likes. ``DeadlineTransport`` gives every request one
deadline for connect, send and the whole answer: its network streams give each socket
operation only the time left, and raise a timeout once none is.

Every outbound request the node makes (deliveries to peers and webhooks, fetching the
registry) goes through ``outbound_client``. Proxy variables from the environment are not read:
requests to peers and the registry source go through ``EPIX_OUTBOUND_PROXY`` when it is set,
webhooks always connect directly (a webhook must connect only to the address it judged public,
see ``epix.delivery.webhooks``).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

# A write is handed to the socket in pieces of this size, each given only the time left,
# so a receiver reading slowly cannot stretch one write past the deadline by much.
_WRITE_PIECE_BYTES = 16 * 1024


class DeadlineExceeded(httpx.TimeoutException):
    """The request's overall deadline passed before its answer was complete."""


@dataclass(slots=True)
class _Deadline:
    at: float  # time.monotonic() by which the request must be done
    spent: bool = False  # an operation stopped because the deadline, not its timeout, ran out


_current: ContextVar[_Deadline | None] = ContextVar("epix_outbound_deadline", default=None)


def _time_left(
    timeout: float | None, timed_out: type[httpcore.TimeoutException]
) -> tuple[float | None, bool]:
    """The timeout for the next socket operation, and whether the deadline is what sets it."""
    deadline = _current.get()
    if deadline is None:
        return timeout, False
    left = deadline.at - time.monotonic()
    if left <= 0:
        deadline.spent = True
        raise timed_out("The request's overall deadline was spent.")
    if timeout is None or left < timeout:
        return left, True
    return timeout, False


@contextmanager
def _spent_on_timeout(clamped: bool) -> Iterator[None]:
    """Mark the deadline spent when an operation it clamped timed out."""
    try:
        yield
    except httpcore.TimeoutException:
        deadline = _current.get()
        if clamped and deadline is not None:
            deadline.spent = True
        raise


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation gets at most the request's remaining time."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        left, clamped = _time_left(timeout, httpcore.ReadTimeout)
        with _spent_on_timeout(clamped):
            return self._inner.read(max_bytes, left)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        for start in range(0, len(buffer), _WRITE_PIECE_BYTES):
            left, clamped = _time_left(timeout, httpcore.WriteTimeout)
            with _spent_on_timeout(clamped):
                self._inner.write(buffer[start : start + _WRITE_PIECE_BYTES], left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left, clamped = _time_left(timeout, httpcore.ConnectTimeout)
        with _spent_on_timeout(clamped):
            return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.SyncBackend):
    """httpcore's network backend with the request's deadline on every connection."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left, clamped = _time_left(timeout, httpcore.ConnectTimeout)
        with _spent_on_timeout(clamped):
            stream = super().connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream)


class _DeadlineBody(httpx.SyncByteStream):
    """The answer's body, read under the deadline of the request that asked for it."""

    def __init__(self, inner: httpx.SyncByteStream, guard: _Guard) -> None:
        self._inner = inner
        self._guard = guard

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._inner)
        while True:
            with self._guard():
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk

    def close(self) -> None:
        self._inner.close()


@dataclass(frozen=True, slots=True)
class _Guard:
    """Runs a step of one request under its deadline; a timeout past it is DeadlineExceeded."""

    deadline: _Deadline
    seconds: float
    request: httpx.Request

    @contextmanager
    def __call__(self) -> Iterator[None]:
        token = _current.set(self.deadline)
        try:
            yield
        except httpx.TimeoutException as exc:
            if not self.deadline.spent:
                raise
            raise DeadlineExceeded(
                f"No complete answer within the {self.seconds:g} s deadline.",
                request=self.request,
            ) from exc
        finally:
            _current.reset(token)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport with an overall deadline on each request: connect, send, full answer.

    ``backend`` makes the connections; it must be a ``DeadlineBackend`` (a subclass may judge
    the address it connects to, as webhooks do).
    """

    def __init__(
        self,
        deadline_seconds: float,
        backend: DeadlineBackend | None = None,
        proxy: str | None = None,
    ) -> None:
        super().__init__(trust_env=False)
        self.deadline_seconds = deadline_seconds
        limits: dict[str, Any] = {  # httpx's defaults
            "ssl_context": httpx.create_ssl_context(),
            "max_connections": 100,
            "max_keepalive_connections": 20,
            "keepalive_expiry": 5.0,
            "network_backend": backend or DeadlineBackend(),
        }
        if proxy is None:
            self._pool = httpcore.ConnectionPool(**limits)
            return
        # As httpx builds its proxy pool (credentials in the URL become Proxy-Authorization),
        # but on the deadline's backend, so the proxy and the tunnel through it are bounded too.
        via = httpx.Proxy(proxy)
        self._pool = httpcore.HTTPProxy(
            proxy_url=httpcore.URL(
                scheme=via.url.raw_scheme,
                host=via.url.raw_host,
                port=via.url.port,
                target=via.url.raw_path,
            ),
            proxy_auth=via.raw_auth,
            proxy_headers=via.headers.raw,
            **limits,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        guard = _Guard(
            _Deadline(time.monotonic() + self.deadline_seconds), self.deadline_seconds, request
        )
        with guard():
            response = super().handle_request(request)
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _DeadlineBody(response.stream, guard)
        return response


def unsendable(url: str) -> str | None:
    """Why no request can be sent to ``url`` (a control character, a host that is no valid
    IDNA name: the client refuses it before connecting), or None. A URL checked only with
    ``urlsplit``, which drops tabs and newlines and reads any host, may still be one."""
    try:
        httpx.Request("POST", url)
    except (httpx.InvalidURL, UnicodeError) as exc:
        return str(exc) or type(exc).__name__
    return None


def outbound_client(
    *,
    deadline_seconds: float,
    timeout: float,
    backend: DeadlineBackend | None = None,
    proxy: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An httpx client for the node's outbound requests: each one ends within
    ``deadline_seconds`` in all (``timeout`` still bounds each connect, read and write);
    redirects are not followed; ``proxy`` (EPIX_OUTBOUND_PROXY) is used only where given."""
    return httpx.Client(
        transport=DeadlineTransport(deadline_seconds, backend, proxy),
        timeout=timeout,
        follow_redirects=False,
        headers=headers,
    )
