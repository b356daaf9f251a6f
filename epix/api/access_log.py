"""Keep secrets out of the web server's access log.

uvicorn logs every request line with its query string, and a permit's security token travels
as ``?token=`` (the issuer's per-permit secret that lets a third Party look the permit up). The
filter below replaces its value before the line is written; the rest of the line stays as is.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote_plus

from epix.audit.context import REDACTED

ACCESS_LOGGER = "uvicorn.access"
SECRET_PARAMETERS = frozenset({"token"})


def redact_query(path: str) -> str:
    """``path`` with the value of every secret query parameter replaced by ``[redacted]``."""
    base, mark, query = path.partition("?")
    if not mark:
        return path
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        if equals and unquote_plus(name) in SECRET_PARAMETERS:
            part = f"{name}={REDACTED}"
        parts.append(part)
    return f"{base}?{'&'.join(parts)}"


class RedactSecretQuery(logging.Filter):
    """Rewrites the path argument of uvicorn's access log record (client, method, path, ...)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact_query(args[2]), *args[3:])
        return True


def redact_access_log() -> None:
    """Install the filter on uvicorn's access logger (once per process)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, RedactSecretQuery) for existing in logger.filters):
        logger.addFilter(RedactSecretQuery())
