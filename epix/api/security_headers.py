"""Browser security headers on every answer of the node: pages, API, static files and errors.

The web pages run with the session cookie, so a page must not be framed by another site
(clickjacking the Endorse button), nothing the node serves may be sniffed into HTML or script
(a permit's XML, an SVG, problem+json), and no script may run but the node's own files: should a
value ever reach the page as HTML, the Content-Security-Policy still keeps it from running.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The node's pages: script, style and images from the node only, nothing inline.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# Swagger UI (/docs): the same, but its stylesheet draws its icons as data: images (an image
# cannot run script).
SWAGGER_UI_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# ReDoc's bundle, as it loads and so before it can take the page's nonce, adds the style of its
# scroll bars (perfect-scrollbar) as an empty <style> element it then fills: the sha256 of both
# texts, for the ReDoc of fastapi-offline 1.7.7 (tests/web/test_api_reference.py sees a
# violation should an upgrade change them).
_REDOC_LOAD_STYLE_HASHES = (
    "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=' "
    "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc='"
)


def redoc_policy(style_nonce: str) -> str:
    """The policy of one /redoc answer. Still no inline script; ReDoc styles itself with the
    <style> elements it adds (allowed by this answer's nonce, which it gives them), draws its
    icons as data: images (an image cannot run script) and searches in a worker it starts from
    a blob: of its own script."""
    return (
        "default-src 'self'; script-src 'self'; "
        f"style-src 'self' 'nonce-{style_nonce}' {_REDOC_LOAD_STYLE_HASHES}; "
        "img-src 'self' data:; worker-src blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def security_headers(*, https: bool) -> dict[str, str]:
    """The headers every answer carries (HSTS only when the node is on https); an answer that
    brings its own Content-Security-Policy (/redoc) or Cache-Control (the public registry
    document) keeps it, and the node's static files are cacheable (``SecurityHeaders``)."""
    headers = {
        # Pages, /v1 answers and refusals hold a Party's data: a border post's browser is
        # shared, and going back in its history after logging out must ask the node again (and
        # be sent to log in), not show a permit from its cache or whole from its back/forward
        # cache. /redoc besides: a cache would hand its nonce out again.
        "Cache-Control": "no-store",
        "Content-Security-Policy": PAGE_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP level 2
        # Not "no-referrer": a same-origin POST would then carry "Origin: null", which the
        # cross-site check of cookie-authenticated writes (security.py) refuses.
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers


class SecurityHeaders:
    """Adds ``security_headers`` to every HTTP answer passing through (outermost middleware),
    but no ``Cache-Control`` to the files under ``static_prefixes`` (the pages' script and
    style, the API reference's bundles: the same for everyone, and kept by the browser).

    The 500 answer of an unexpected error is sent from outside the middleware stack, so the
    problem handlers add the same headers to it themselves.
    """

    def __init__(self, app: ASGIApp, *, https: bool, static_prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.https = https
        self.static_prefixes = static_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = security_headers(https=self.https)
        if scope["path"].startswith(self.static_prefixes):
            del added["Cache-Control"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
