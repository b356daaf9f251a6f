"""The key that signs web session cookies: from settings, or generated once per data directory."""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from epix.settings import SECRET_KEY_MIN_BYTES, ConfigurationError, Settings

SECRET_FILE_NAME = "session-secret"  # noqa: S105 (a file name, not a secret)


def session_secret(settings: Settings) -> str:
    """``settings.secret_key`` or a random key kept in the data directory (mode 0600).

    Generated once so that cookies survive restarts and every worker process agrees. A key file
    holding a shorter key (emptied, cut off) or no text is refused as an invalid configuration,
    as a short ``EPIX_SECRET_KEY`` is, rather than used: cookies signed with a guessable key
    could be forged by anyone.
    """
    if settings.secret_key:
        return settings.secret_key
    path: Path = settings.data_dir / SECRET_FILE_NAME
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        _publish(path, secrets.token_urlsafe(48))
    try:
        secret = path.read_bytes().decode("utf-8").strip()
    except UnicodeDecodeError:
        secret = ""
    if len(secret.encode("utf-8")) < SECRET_KEY_MIN_BYTES:
        raise ConfigurationError(
            f"the session key file {path} must hold a key of at least {SECRET_KEY_MIN_BYTES} "
            "bytes of text (was it emptied or cut off?); delete it to have a new one generated "
            "(everyone is logged out, and webhook secrets stored under the old key can no "
            "longer be read), or set EPIX_SECRET_KEY"
        )
    return secret


def derived_key(settings: Settings, purpose: bytes) -> bytes:
    """A 256-bit key for one ``purpose`` derived (HKDF) from the session secret: the node's one
    secret serves several uses without a second key store, and the ``info`` keeps them apart."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
    return hkdf.derive(session_secret(settings).encode("utf-8"))


def _publish(path: Path, secret: str) -> None:
    """Write ``secret`` to a file of its own, then rename that to ``path``, under an exclusive
    ``flock`` on the data directory: the web processes of ``--workers N`` start at once and
    each makes the key on a first start, so a process must never read the key file before it
    is written (it read an empty key), and the first to take the lock makes the key that all
    then read. A rename, unlike a hard link, works on every volume a data directory may be on
    (network shares and FAT-formatted disks have no hard links)."""
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        if path.exists():
            return
        written = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secret)
                handle.flush()
                os.fsync(handle.fileno())
            written.replace(path)
        finally:
            written.unlink(missing_ok=True)
    finally:
        os.close(directory)  # releases the lock
