"""Raw HTTP oddities against a real uvicorn on 127.0.0.1: what a client library would never
send (chunked bodies over the cap, bytes that are not UTF-8 in headers and bodies, bogus
authorization schemes, huge headers, traversal and unicode in permit numbers) gets a 4xx,
never a 500; whatever the application itself answers is a coded problem+json."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from sqlalchemy import select as select_rows
from starlette.types import ASGIApp, Receive, Scope, Send

from epix.api.http_protocol import MAX_HEAD_BYTES, BoundedHttpToolsProtocol
from epix.cli.serve import uvicorn_options
from epix.exchange.models import InboxEntry, Message
from epix.exchange.notifications import notify
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.settings import get_settings
from tests.robustness.conftest import PERMIT_NUMBER, Node, assert_problem
from tests.robustness.documents import sign_as_xa


@dataclass
class Live:
    port: int
    node: Node

    def send(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send raw bytes on a fresh connection; read one response (the server closes)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            # A server refusing early (413) may close while the body is still being sent.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(raw)
            return _response(_read_until_closed(sock))

    def request(
        self, method: str, path: bytes, headers: list[bytes], body: bytes = b""
    ) -> tuple[int, dict[str, str], bytes]:
        lines = [method.encode() + b" " + path + b" HTTP/1.1", b"Host: 127.0.0.1"]
        lines += [*headers, b"Connection: close"]
        if body and not any(h.lower().startswith(b"transfer-encoding") for h in headers):
            lines.append(b"Content-Length: " + str(len(body)).encode())
        return self.send(b"\r\n".join(lines) + b"\r\n\r\n" + body)

    def bearer(self, party: str, role: str) -> bytes:
        return b"Authorization: Bearer " + self.node.key(party, role).encode()


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    assert data, "the server closed the connection without an answer"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return status, headers, body


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _serving(app: ASGIApp, http: type[asyncio.Protocol] | None = None) -> Iterator[int]:
    """uvicorn as ``epix serve`` runs it, in a thread: the port it listens on."""
    options = uvicorn_options("127.0.0.1", _free_port())
    if http is not None:
        options["http"] = http
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    try:
        yield options["port"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live(node: Node) -> Iterator[Live]:
    """The node behind uvicorn with the HTTP protocol ``epix serve`` runs."""
    with _serving(node.app) as port:
        yield Live(port, node)


class _Impatient(BoundedHttpToolsProtocol):
    head_timeout = 0.3
    body_idle_timeout = 0.3


@pytest.fixture
def impatient(node: Node) -> Iterator[Live]:
    """The same, with read timeouts short enough for a test to run into."""
    with _serving(node.app, _Impatient) as port:
        yield Live(port, node)


def _check(answer: tuple[int, dict[str, str], bytes]) -> int:
    status, headers, body = answer
    assert status < 500, (status, body[:300])
    if status >= 400 and headers.get("content-type", "").startswith("application/"):
        assert_problem(status, headers["content-type"], body)
    return status


def _submission(live: Live, extra: list[bytes]) -> list[bytes]:
    return [
        live.bearer("XA", "management_authority"),
        b"X-EPIX-Message-Id: msg-raw-1",
        b"X-EPIX-From: XA",
        b"X-EPIX-To: XB",
        *extra,
    ]


def test_a_chunked_body_over_the_cap_is_refused_with_413(live: Live) -> None:
    chunk = b"<" * 16384
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    headers = _submission(live, [b"Content-Type: application/xml", b"Transfer-Encoding: chunked"])
    status, content_headers, problem = live.request("POST", b"/v1/messages", headers, body)
    assert status == 413
    assert_problem(status, content_headers["content-type"], problem)


def test_a_declared_length_over_the_cap_is_refused_before_the_body(live: Live) -> None:
    headers = _submission(live, [b"Content-Type: application/xml", b"Content-Length: 999999999"])
    assert _check(live.request("POST", b"/v1/messages", headers)) == 413


@pytest.mark.parametrize(
    "content_type",
    [None, b"text/plain", b"application/json", b"application/xml; charset=\xff", b"\xff\xfe"],
)
def test_wrong_or_missing_content_types_are_coded_refusals(
    live: Live, content_type: bytes | None
) -> None:
    extra = [b"Content-Type: " + content_type] if content_type is not None else []
    status = _check(live.request("POST", b"/v1/messages", _submission(live, extra), b"<a/>"))
    assert 400 <= status < 500


@pytest.mark.parametrize(
    "header",
    [
        b"X-EPIX-From: \xc4\xd6",
        b"X-EPIX-Message-Id: \xff\xfe\xfd",
        b"X-EPIX-Document-Type: p\xe9rmit",
        b"X-EPIX-Security-Token: \x80\x81\x82\x83\x84\x85\x86\x87\x88",
    ],
)
def test_header_values_that_are_not_utf8_are_refused_not_crashed_on(
    live: Live, header: bytes
) -> None:
    headers = [
        live.bearer("XA", "management_authority"),
        b"Content-Type: application/xml",
        b"X-EPIX-Message-Id: msg-raw-2",
        b"X-EPIX-From: XA",
        b"X-EPIX-To: XB",
    ]
    name = header.split(b":")[0]
    headers = [h for h in headers if not h.startswith(name + b":")] + [header]
    assert 400 <= _check(live.request("POST", b"/v1/messages", headers, b"<a/>")) < 500


@pytest.mark.parametrize(
    "authorization",
    [
        b"Authorization: Digest username=x",
        b"Authorization: Bearer",
        b"Authorization: Bearer \xff\xfe",
        b"Authorization: Basic \x00",
        b"Authorization: " + b"Bearer " + b"k" * 6000,
        b"X-API-Key: \xe9\xe9",
        b"Cookie: epix_session=\xff\xff; other=1",
        b"Cookie: epix_session=" + b"A" * 4000,
    ],
)
def test_bogus_credentials_are_401_problems(live: Live, authorization: bytes) -> None:
    status = _check(live.request("GET", b"/v1/auth/whoami", [authorization]))
    assert status in (400, 401)


@pytest.mark.parametrize(
    "header",
    [b"X-Padding: " + b"a" * 200_000, b"X-EPIX-Message-Id: " + b"m" * 100_000],
)
def test_huge_headers_are_answered_without_a_server_error(live: Live, header: bytes) -> None:
    """uvicorn (httptools) has no header cap of its own; the application must cope."""
    assert _check(live.request("GET", b"/v1/inbox", [live.bearer("XB", "customs"), header])) < 500
    submission = _submission(live, [b"Content-Type: application/xml"])
    name = header.split(b":")[0]
    submission = [h for h in submission if not h.startswith(name + b":")] + [header]
    assert 400 <= _check(live.request("POST", b"/v1/messages", submission, b"<a/>")) < 500


@pytest.mark.parametrize(
    "path",
    [
        b"/v1/permits/XA/../../../etc/passwd",
        b"/v1/permits/XA/..%2F..%2Fetc%2Fpasswd",
        b"/v1/permits/XA/%2e%2e/%2e%2e/schemas/README.md",
        b"/v1/permits/XA/" + PERMIT_NUMBER.encode() + b"%00",
        b"/v1/permits/XA/%ff%fe%fd",
        b"/v1/permits/XA/\xff\xfe",
        b"/v1/permits/XA/XA-%E2%80%AE0001",
        b"/v1/permits/XA/%EF%BC%B8%EF%BC%A1-0001",
        b"/v1/permits/%C3%84A/X",
        b"/v1/permits/XA/" + b"9" * 8000,
        b"/v1/permits/XA/" + PERMIT_NUMBER.encode() + b"/xml?token=%ff",
        b"/v1/permits/XA/" + PERMIT_NUMBER.encode() + b"/ledger/../../../healthz",
        b"/web/static/../../../../etc/passwd",
        b"/web/static/%2e%2e/%2e%2e/settings.py",
        b"/web/qr.svg?party=%ff&number=%00",
        b"/web/lookup?party=XA&number=%ff",
    ],
)
def test_traversal_and_unicode_in_paths_get_a_4xx_or_a_harmless_answer(
    live: Live, path: bytes
) -> None:
    status, headers, body = live.request("GET", path, [live.bearer("XB", "customs")])
    _check((status, headers, body))
    assert b"root:" not in body and b"EPIX_" not in body


def test_a_json_body_that_is_not_utf8_is_a_400(live: Live) -> None:
    status = _check(
        live.request(
            "POST",
            b"/v1/auth/login",
            [b"Content-Type: application/json"],
            b'{"username": "\xff", "password": "\xfe"}',
        )
    )
    assert status == 400


def test_a_form_body_that_is_not_utf8_is_not_a_500(live: Live) -> None:
    status = _check(
        live.request(
            "POST",
            b"/v1/auth/login",
            [b"Content-Type: application/x-www-form-urlencoded"],
            b"username=%ff%fe&password=\xff",
        )
    )
    assert 400 <= status < 500


def test_the_permit_on_file_is_still_readable_after_the_oddities(live: Live) -> None:
    """Bad input loses nothing: the node still answers for what it holds."""
    status, _, body = live.request(
        "GET", b"/v1/permits/XA/" + PERMIT_NUMBER.encode(), [live.bearer("XB", "customs")]
    )
    assert status == 200, body[:300]


def test_a_request_head_over_the_cap_is_refused_with_431_before_it_is_buffered(
    live: Live,
) -> None:
    """uvicorn alone buffered any amount of header bytes: one connection sending a 200 MB
    header line grew the node from 136 MB to 499 MB RSS."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    sent = 0
    data = b""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
            for _ in range(64):  # up to 64 MiB, refused long before
                sock.sendall(b"a" * (1 << 20))
                sent += 1
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
    assert sent < 64
    head_part, _, body = data.partition(b"\r\n\r\n")
    assert head_part.startswith(b"HTTP/1.1 431 ")
    assert_problem(431, "application/problem+json", body)
    assert b"EPIX-REQ-010" in body
    # Many small headers count the same as one long one; a head within the cap is served.
    status, _, _ = live.request(
        "GET",
        b"/healthz",
        [b"X-Pad-%d: %s" % (i, b"p" * 100) for i in range(MAX_HEAD_BYTES // 120)],
    )
    assert status == 200
    status, _, body = live.request(
        "GET",
        b"/healthz",
        [b"X-Pad-%d: %s" % (i, b"p" * 100) for i in range(MAX_HEAD_BYTES // 100)],
    )
    assert status == 431 and b"EPIX-REQ-010" in body


def test_a_connection_that_sends_nothing_or_half_a_head_is_answered_408_and_closed(
    impatient: Live,
) -> None:
    """uvicorn alone kept a connection that never sent a byte, or sent a head one byte a
    second, open for ever (1,000 idle connections were all still open after 45 s)."""
    for raw in (b"", b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "):
        status, headers, body = impatient.send(raw)
        assert status == 408
        assert_problem(status, headers["content-type"], body)
        assert b"EPIX-REQ-011" in body


def test_a_body_that_stops_arriving_is_answered_408(
    impatient: Live,
) -> None:
    headers = _submission(impatient, [b"Content-Type: application/xml", b"Content-Length: 1000"])
    lines = [b"POST /v1/messages HTTP/1.1", b"Host: 127.0.0.1", *headers]
    status, content_headers, body = impatient.send(b"\r\n".join(lines) + b"\r\n\r\n<Partial")
    assert status == 408
    assert_problem(status, content_headers["content-type"], body)
    assert b"EPIX-REQ-011" in body
    # A request on a healthy connection is still served normally.
    assert impatient.request("GET", b"/healthz", [])[0] == 200


# Small enough for a test to run into: the body's grace, its minimum rate and its longest time.
GRACE_SECONDS, MIN_RATE, MAX_SECONDS = 1.0, 2000, 4.0


@pytest.fixture
def body_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``EPIX_BODY_*`` settings a test runs into (the protocol reads them per connection)."""
    monkeypatch.setenv("EPIX_BODY_GRACE_SECONDS", str(GRACE_SECONDS))
    monkeypatch.setenv("EPIX_BODY_MIN_BYTES_PER_SECOND", str(MIN_RATE))
    monkeypatch.setenv("EPIX_BODY_MAX_SECONDS", str(MAX_SECONDS))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def strict(node: Node, body_settings: None) -> Iterator[Live]:
    """The node as ``epix serve`` runs it, with those settings."""
    with _serving(node.app) as port:
        yield Live(port, node)


def _trickle(
    live: Live, head: bytes, body: bytes, rate: int, give_up: float
) -> tuple[bytes, float]:
    """Send the head, then the body at ``rate`` bytes a second (every tenth of a second, what
    the rate allows by then: a loaded machine that stalls this loop does not lower the rate)
    until the server answers or ``give_up`` seconds pass; what the server sent until it closed
    the connection (nothing if it did not answer), and after how many seconds."""
    with socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(head)
        began = time.monotonic()
        sent = 0
        while time.monotonic() - began < give_up:
            if select.select([sock], [], [], 0.1)[0]:
                break
            due = min(len(body), int(rate * (time.monotonic() - began)))
            if sent < due:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(body[sent:due])  # the server may just have closed
                sent = due
        after = time.monotonic() - began
        if not select.select([sock], [], [], 0.5)[0]:
            return b"", after  # no answer
        return _read_until_closed(sock), after


def _post_head(live: Live, message_id: str, length: int) -> bytes:
    lines = [
        b"POST /v1/messages HTTP/1.1",
        b"Host: 127.0.0.1",
        *_submission(live, [b"Content-Type: application/xml", b"X-EPIX-Document-Type: permit"]),
        b"Content-Length: %d" % length,
        b"Connection: close",
    ]
    return b"\r\n".join(lines).replace(b"msg-raw-1", message_id.encode()) + b"\r\n\r\n"


def _permit_status(live: Live, number: str) -> int:
    path = b"/v1/permits/XA/" + number.encode()
    return live.request("GET", path, [live.bearer("XB", "customs")])[0]


def test_a_body_trickling_under_the_minimum_rate_is_answered_408_and_closed(
    strict: Live, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn alone, and the idle timeout, let a body arrive a byte every 59 s for ever:
    enough such clients hold every connection of the node. At half the minimum rate the
    grace runs out after GRACE_SECONDS and the bytes sent buy GRACE_SECONDS more."""
    body = sign_as_xa(write_permit(demo_permit(number="XA-SLOW-0001")))
    server_log = logging.getLogger("uvicorn")  # does not propagate: where a traceback would go
    server_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="epix"):
            head = _post_head(strict, "msg-slow-1", len(body))
            data, after = _trickle(strict, head, body, MIN_RATE // 2, give_up=6)
            deadline = time.monotonic() + 5
            while "client left" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        server_log.removeHandler(caplog.handler)
    assert data, f"no answer after {after:.1f} s"
    status, headers, problem = _response(data)  # and the server closed the connection
    assert status == 408, (after, data[:300])
    assert_problem(status, headers["content-type"], problem)
    assert b"EPIX-REQ-011" in problem
    assert f"slower than {MIN_RATE} bytes a second".encode() in problem
    assert GRACE_SECONDS <= after < 5, after
    # The application saw a client that left: logged at info, no traceback.
    assert "client left during its request body: POST /v1/messages" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    # Nothing of the cut body was stored; the node still serves.
    assert _permit_status(strict, "XA-SLOW-0001") == 404
    assert strict.request("GET", b"/healthz", [])[0] == 200


def test_a_body_over_the_minimum_rate_is_served_past_the_grace(strict: Live) -> None:
    """Twice the minimum rate: the deadline moves on with every byte, well past the grace."""
    body = sign_as_xa(write_permit(demo_permit(number="XA-SLOW-0002")))
    data, after = _trickle(
        strict, _post_head(strict, "msg-slow-2", len(body)), body, 2 * MIN_RATE, give_up=8
    )
    assert data, f"no answer after {after:.1f} s"
    status, _, answer = _response(data)
    assert status == 201, answer[:300]
    assert after > 2 * GRACE_SECONDS  # the body took longer than the grace
    assert _permit_status(strict, "XA-SLOW-0002") == 200


def test_a_body_not_complete_within_its_longest_time_is_answered_408(strict: Live) -> None:
    """However fast it arrives, a body takes at most EPIX_BODY_MAX_SECONDS. Sent at four times
    the minimum rate, it keeps well ahead of the rate's deadline, and needs 5 s in all."""
    body = b"<a>" + b"x" * (4 * MIN_RATE * 5)  # 5 s at four times the minimum rate
    data, after = _trickle(
        strict, _post_head(strict, "msg-slow-3", len(body)), body, 4 * MIN_RATE, give_up=8
    )
    assert data, f"no answer after {after:.1f} s"
    status, headers, problem = _response(data)
    assert status == 408, (after, data[:300])
    assert_problem(status, headers["content-type"], problem)
    assert f"not complete within {MAX_SECONDS:g} seconds".encode() in problem
    # The node and this client start their clocks at slightly different moments: an answer
    # 8 ms before MAX_SECONDS by the client's clock was seen under load.
    assert MAX_SECONDS - 0.25 <= after < MAX_SECONDS + 2, after


HOLD_SECONDS = 1.5 * GRACE_SECONDS  # longer than the body's grace


async def _late_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """An application that holds bodies up: ``/slow`` answers after HOLD_SECONDS, ``/late``
    asks for its body only then, ``/echo`` at once; each answers with the length it read."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] in ("/slow", "/late"):
        await asyncio.sleep(HOLD_SECONDS)
    length, more = 0, scope["path"] != "/slow"
    while more:
        message = await receive()
        length, more = length + len(message.get("body", b"")), message.get("more_body", False)
    answer = b"%d" % length
    headers = [(b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture
def late_reader(body_settings: None) -> Iterator[int]:
    with _serving(_late_reader) as port:
        yield port


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """The next ``count`` responses on the connection: status and body."""
    data, answers = b"", []
    while len(answers) < count:
        head, found, rest = data.partition(b"\r\n\r\n")
        if found:
            status, headers, _ = _response(head + found)
            length = int(headers["content-length"])
            if length <= len(rest):
                answers.append((status, rest[:length]))
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, (answers, data)
        data += chunk
    return answers


def test_a_body_the_node_holds_up_does_not_count_against_its_client(late_reader: int) -> None:
    """The client is not to blame for time the node keeps it from sending: a pipelined request
    waiting for the one before it (uvicorn stops reading), or a client waiting for the
    ``100 Continue`` the application has not asked for. Both held longer than the grace;
    then the client has the grace afresh."""
    with socket.create_connection(("127.0.0.1", late_reader), timeout=10) as sock:
        post = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + post)
        time.sleep(0.1)
        sock.sendall(b"x" * 100)  # waits in the kernel while the node reads nothing
        assert _read_responses(sock, 2) == [(200, b"0"), (200, b"100")]
    with socket.create_connection(("127.0.0.1", late_reader), timeout=10) as sock:
        sock.sendall(
            b"POST /late HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        time.sleep(0.8 * GRACE_SECONDS)  # within the grace the node owes it from now on
        sock.sendall(b"x" * 100)
        assert _read_responses(sock, 1) == [(200, b"100")]


LARGE_ANSWER_BYTES = 32 * 1024 * 1024


class _StallIntolerant(BoundedHttpToolsProtocol):
    write_stall_timeout = 0.5


async def _large_answer(scope: Scope, receive: Receive, send: Send) -> None:
    """An application with a large answer, written as fast as the connection takes it."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-length", b"%d" % LARGE_ANSWER_BYTES)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    piece = b"x" * 65536
    for _ in range(LARGE_ANSWER_BYTES // len(piece)):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def test_a_client_that_stops_reading_its_answer_is_cut_off() -> None:
    """uvicorn kept the connection, the answer and the application's task for as long as the
    client did not read; the node aborts it once its write buffer stays full."""
    with _serving(_large_answer, _StallIntolerant) as port, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel takes little
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /large HTTP/1.1\r\nHost: node\r\n\r\n")
        time.sleep(2.0)  # reading nothing, four times the stall allowed
        sock.settimeout(10)
        received = 0
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
    assert received < LARGE_ANSWER_BYTES


def test_an_inbox_entry_answers_head_and_carries_its_digest(live: Live) -> None:
    """HEAD on an entry was 405 (RFC 9110 requires GET and HEAD alike); it gives GET's status
    and headers without the bytes. GET returns them unchanged (CRLF, UTF-8 beyond ASCII, a
    BOM) with their SHA-256 as the ETag."""
    stored = "\ufeffline one\r\nZürich – 東京\r\n"
    with live.node.database.unit_of_work() as session:
        notify(session, party="XB", kind="test", subject="head-and-digest", body=stored)
        entry = session.scalars(
            select_rows(InboxEntry.id).where(InboxEntry.subject == "head-and-digest")
        ).one()
    path = f"/v1/inbox/{entry}".encode()
    customs = [live.bearer("XB", "customs")]
    got_status, got_headers, got_body = live.request("GET", path, customs)
    head_status, head_headers, head_body = live.request("HEAD", path, customs)
    assert got_status == head_status == 200
    assert got_body == stored.encode()
    assert got_headers["etag"] == f'"{hashlib.sha256(got_body).hexdigest()}"'
    assert head_body == b""
    for name in ("content-type", "content-length", "etag", "x-epix-inbox-kind"):
        assert head_headers[name] == got_headers[name], name


@pytest.mark.parametrize(
    ("repeated", "where"),
    [
        (b"X-EPIX-To: XA", "X-EPIX-To"),
        (b"x-epix-message-id: msg-raw-other", "X-EPIX-Message-Id"),
        (b"X-EPIX-From: XA", "X-EPIX-From"),
        (b"Content-Type: application/vnd.epix.envelope+xml", "Content-Type"),
    ],
)
def test_a_routing_header_sent_twice_is_refused(live: Live, repeated: bytes, where: str) -> None:
    """The node used the last of two ``X-EPIX-To`` lines (and the first of two Content-Types),
    while a proxy or the sender's log may read the other: the permit went where its sender's
    records did not say. Now nothing is routed on an ambiguous envelope."""
    headers = _submission(live, [b"Content-Type: application/xml", repeated])
    permit = sign_as_xa(write_permit(demo_permit(number="XA-TWICE-0001")))
    status, content_headers, body = live.request("POST", b"/v1/messages", headers, permit)
    assert_problem(status, content_headers["content-type"], body)
    assert status == 422
    problem = json.loads(body)
    assert [(e["code"], e["location"]) for e in problem["errors"]] == [("EPIX-REQ-004", where)]
    with live.node.database.read() as session:
        assert session.scalars(select_rows(Message.id).where(Message.body == permit)).all() == []


@pytest.mark.parametrize("coding", [b"gzip", b"deflate", b"br", b"identity, gzip", b"x-\xff"])
def test_a_body_in_a_content_coding_is_refused_with_415_before_the_pipeline(
    live: Live, coding: bytes
) -> None:
    """A gzip-compressed signed permit reached the parser as compressed bytes: 400 "not
    well-formed XML" (EPIX-XML-001) with a rejected receipt and an audit event, pointing the
    sender at a fault its document does not have. Now 415 names the Content-Encoding."""
    permit = sign_as_xa(write_permit(demo_permit(number="XA-GZIP-0001")))
    headers = _submission(live, [b"Content-Type: application/xml", b"Content-Encoding: " + coding])
    status, content_headers, body = live.request(
        "POST", b"/v1/messages", headers, gzip.compress(permit)
    )
    assert status == 415
    assert_problem(status, content_headers["content-type"], body)
    problem = json.loads(body)
    assert [(e["code"], e["location"]) for e in problem["errors"]] == [
        ("EPIX-REQ-002", "Content-Encoding")
    ]
    assert "receipt" not in problem
    # The JSON routes alike; and a request without a body is not refused for the header.
    login = live.request(
        "POST",
        b"/v1/auth/login",
        [b"Content-Type: application/json", b"Content-Encoding: " + coding],
        gzip.compress(b'{"username": "x", "password": "y"}'),
    )
    assert login[0] == 415
    inbox = [live.bearer("XB", "customs"), b"Content-Encoding: " + coding]
    assert live.request("GET", b"/v1/inbox", inbox)[0] == 200


def test_a_body_said_to_be_in_the_identity_coding_is_read(live: Live) -> None:
    permit = sign_as_xa(write_permit(demo_permit(number="XA-IDENTITY-0001")))
    headers = _submission(live, [b"Content-Type: application/xml", b"Content-Encoding: identity"])
    status, _, body = live.request("POST", b"/v1/messages", headers, permit)
    assert status == 201, body[:300]


def _framed(live: Live, framing: list[bytes], body: bytes) -> tuple[int, dict[str, str], bytes]:
    """A submission with exactly the framing headers given (no Content-Length added)."""
    head = [b"POST /v1/messages HTTP/1.1", b"Host: 127.0.0.1"]
    head += _submission(live, [b"Content-Type: application/xml", *framing])
    return live.send(b"\r\n".join(head) + b"\r\n\r\n" + body)


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@pytest.mark.parametrize(
    ("framing", "body"),
    [
        ([b"Content-Length: 5", b"Transfer-Encoding: chunked"], _chunked(b"<a/>")),
        ([b"Content-Length: 4", b"Content-Length: 3"], b"<a/>"),
        ([b"Content-Length: -4"], b"<a/>"),
        ([b"Content-Length: +4"], b"<a/>"),
        ([b"Transfer-Encoding: chunked"], b"zz\r\n<a/>\r\n0\r\n\r\n"),
        ([b"Transfer-Encoding: chunked"], b"ffffffffffffffffffff\r\n<a/>"),
    ],
    ids=["length-and-chunked", "two-lengths", "negative", "plus-sign", "bad-chunk", "huge-chunk"],
)
def test_framing_that_is_not_http_is_a_coded_400(
    live: Live, framing: list[bytes], body: bytes
) -> None:
    """uvicorn answered these (request smuggling's raw material) with a plain-text "Invalid
    HTTP request received.": no code, no location."""
    status, headers, problem = _framed(live, framing, body)
    assert status == 400
    assert_problem(status, headers["content-type"], problem)
    assert [e["code"] for e in json.loads(problem)["errors"]] == ["EPIX-REQ-015"]


def test_a_transfer_coding_other_than_chunked_is_refused(live: Live) -> None:
    """uvicorn undoes only chunked: a ``gzip, chunked`` body reached the node still compressed
    (and a body that only claimed gzip was accepted, 201) where a proxy in front would have
    decompressed it, so the two read different bytes."""
    permit = sign_as_xa(write_permit(demo_permit(number="XA-TRANSFER-0001")))
    for coding, body in ((b"gzip, chunked", gzip.compress(permit)), (b"gzip, chunked", permit)):
        status, headers, problem = _framed(live, [b"Transfer-Encoding: " + coding], _chunked(body))
        assert status == 400, problem[:300]
        assert_problem(status, headers["content-type"], problem)
        errors = json.loads(problem)["errors"]
        assert [(e["code"], e["location"]) for e in errors] == [
            ("EPIX-REQ-015", "Transfer-Encoding")
        ]
    status, _, receipt = _framed(live, [b"Transfer-Encoding: chunked"], _chunked(permit))
    assert status == 201, receipt[:300]
