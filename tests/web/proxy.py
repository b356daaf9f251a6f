"""A reverse proxy on loopback between Chromium and a node: it passes every request on and, while
told to, drops the connection after the node has answered an endorsement."""

from __future__ import annotations

import socketserver
import threading

import httpx

# Not passed on: they describe one connection (or would make the node compress the answer).
# Host is, as reverse proxies do: the node checks a cookie-authenticated write's Origin by it.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "accept-encoding",
    "upgrade",
}


class AnswerDroppingProxy(socketserver.ThreadingTCPServer):
    """One request per connection (``Connection: close``), so Chromium never retries a request
    by itself on a reused connection: the page sees the failure."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, node_url: str, *, pass_host: bool = True) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        # False: the node gets its own address as Host, as from nginx's bare ``proxy_pass``.
        self.pass_host = pass_host
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.node = httpx.Client(base_url=node_url, timeout=30)
        self.dropping = threading.Event()
        self.lock = threading.Lock()
        # Each endorsement the node got: its Idempotency-Key, status, and whether it was dropped.
        self.endorsements: list[tuple[str | None, int, bool, str | None]] = []

    @property
    def not_passed(self) -> set[str]:
        return HOP_BY_HOP if self.pass_host else HOP_BY_HOP | {"host"}

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.node.close()


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: AnswerDroppingProxy

    def handle(self) -> None:
        request_line = self.rfile.readline(65537).decode("latin-1")
        if not request_line.strip():
            return
        method, target, _ = request_line.split(" ", 2)
        headers: list[tuple[str, str]] = []
        while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        named = {name.lower(): value for name, value in headers}
        body = self.rfile.read(int(named.get("content-length", "0")))
        answer = self.server.node.request(
            method,
            target,
            headers=[(n, v) for n, v in headers if n.lower() not in self.server.not_passed],
            content=body,
        )
        endorsing = method == "POST" and target.endswith("/endorsements")
        drop = endorsing and self.server.dropping.is_set()
        if endorsing:
            with self.server.lock:
                self.server.endorsements.append(
                    (
                        named.get("idempotency-key"),
                        answer.status_code,
                        drop,
                        answer.headers.get("idempotent-replayed"),
                    )
                )
        if drop:
            return  # the connection closes with no answer
        head = [f"HTTP/1.1 {answer.status_code} {answer.reason_phrase}"]
        head += [
            f"{name}: {value}"
            for name, value in answer.headers.multi_items()
            if name.lower() not in HOP_BY_HOP | {"content-encoding"}
        ]
        head += [f"Content-Length: {len(answer.content)}", "Connection: close"]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer.content)
