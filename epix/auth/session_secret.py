"""The key that signs web session cookies: from settings, or generated once per data directory."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from epix.settings import Settings

SECRET_FILE_NAME = "session-secret"  # noqa: S105 (a file name, not a secret)


def session_secret(settings: Settings) -> str:
    """``settings.secret_key`` or a random key kept in the data directory (mode 0600).

    Generated once so that cookies survive restarts and every worker process agrees.
    """
    if settings.secret_key:
        return settings.secret_key
    path: Path = settings.data_dir / SECRET_FILE_NAME
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secrets.token_urlsafe(48))
    return path.read_text(encoding="ascii").strip()
