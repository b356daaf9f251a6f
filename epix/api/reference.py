"""The API reference (/docs: Swagger UI, /redoc: ReDoc) from assets the node serves itself.

It opens without internet, and no script from a CDN runs on the node's origin, where web
sessions live. Both viewers start from a script file of the node (reference_assets/), never an
inline script, so their pages run under the node's strict Content-Security-Policy
(security_headers.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from epix.api.security_headers import SWAGGER_UI_POLICY, redoc_policy

ASSETS_URL = "/reference-assets"
_NO_SCRIPT = (
    "<noscript>The API reference needs JavaScript; the OpenAPI document is at "
    '<a href="/openapi.json">/openapi.json</a>.</noscript>'
)


def _page(title: str, head: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>EPIX API reference · {title}</title>
<link rel="icon" href="{ASSETS_URL}/favicon.png">
{head}
</head>
<body>
{_NO_SCRIPT}
{body}
</body>
</html>
"""


SWAGGER_UI_PAGE = _page(
    "Swagger UI",
    f'<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">\n'
    f'<script src="{ASSETS_URL}/swagger-ui-bundle.js" defer></script>\n'
    f'<script src="{ASSETS_URL}/swagger-ui-start.js" defer></script>',
    '<div id="swagger-ui"></div>',
)


def redoc_page(nonce: str) -> str:
    """ReDoc's page; its start-up script carries the answer's nonce, which ReDoc gives the
    <style> elements it adds (security_headers.redoc_policy)."""
    return _page(
        "ReDoc",
        f'<link rel="stylesheet" href="{ASSETS_URL}/redoc.css">\n'
        f'<script src="{ASSETS_URL}/redoc.standalone.js" defer></script>\n'
        f'<script src="{ASSETS_URL}/redoc-start.js" nonce="{nonce}" defer></script>',
        '<div id="redoc"></div>',
    )


def install_api_reference(app: FastAPI) -> None:
    """Serve /docs and /redoc and their assets: the viewers bundled with fastapi-offline, and
    the node's own start-up scripts and style."""
    app.mount(
        ASSETS_URL,
        StaticFiles(
            directory=Path(__file__).resolve().parent / "reference_assets",
            packages=[("fastapi_offline", "static")],
        ),
        name="reference-assets",
    )

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(SWAGGER_UI_PAGE, headers={"Content-Security-Policy": SWAGGER_UI_POLICY})

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        nonce = secrets.token_urlsafe(18)  # URL-safe base64: no quote or ';' to escape
        return HTMLResponse(
            redoc_page(nonce),
            # Not stored (SecurityHeaders): a cache would hand the same nonce out again.
            headers={"Content-Security-Policy": redoc_policy(nonce)},
        )
