"""Browser security headers on every answer of the node: pages, API, static files and errors.

The web pages run with the session cookie, so a page must not be framed by another site
(clickjacking the Endorse button), nothing the node serves may be sniffed into HTML or script
(a permit's XML, an SVG, problem+json), and no script may run but the node's own files: should a
value ever reach the page as HTML, the Content-Security-Policy still keeps it from running.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The node's own pages: script, style and images from the node only, nothing inline.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
# The API reference (/docs, /redoc): Swagger UI and ReDoc start from an inline script and style,
# and draw with data: images and blob: workers. They show only the node's own OpenAPI document.
REFERENCE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_REFERENCE_PATHS = ("/docs", "/redoc")


def security_headers(path: str, *, https: bool) -> dict[str, str]:
    """The headers every answer for ``path`` carries (HSTS only when the node is on https)."""
    reference = path in _REFERENCE_PATHS or path.startswith("/docs/")
    headers = {
        "Content-Security-Policy": REFERENCE_POLICY if reference else PAGE_POLICY,
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
    """Adds ``security_headers`` to every HTTP answer passing through (outermost middleware).

    The 500 answer of an unexpected error is sent from outside the middleware stack, so the
    problem handlers add the same headers to it themselves.
    """

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        added = security_headers(scope["path"], https=self.https)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in added.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
