"""The session key a node generates for itself (``epix.auth.session_secret``)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from epix.auth.session_secret import SECRET_FILE_NAME, session_secret
from epix.settings import SECRET_KEY_MIN_BYTES, Settings


@pytest.mark.parametrize("content", ["", "\n", "short-key"])
def test_a_key_file_holding_no_full_key_is_refused_not_used(tmp_path: Path, content: str) -> None:
    """An empty or cut-off key file (a process that read it before it was written, a full disk,
    a hand edit) must not sign cookies: an empty key forges every session."""
    (tmp_path / SECRET_FILE_NAME).write_text(content, encoding="ascii")
    with pytest.raises(OSError, match="holds no key of 32 characters") as refused:
        session_secret(Settings(data_dir=tmp_path))
    assert refused.value.filename == str(tmp_path / SECRET_FILE_NAME)


def test_processes_making_the_key_at_once_all_get_the_one_kept(tmp_path: Path) -> None:
    """The web processes of --workers N make the key on a first start, at the same moment:
    each gets the key the file keeps, never an empty or a second one."""
    for attempt in range(20):
        data_dir = tmp_path / str(attempt)
        settings = Settings(data_dir=data_dir)
        with ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(session_secret, [settings] * 8))
        kept = (data_dir / SECRET_FILE_NAME).read_text(encoding="ascii").strip()
        assert keys == {kept} and len(kept) >= SECRET_KEY_MIN_BYTES
        assert [path.name for path in data_dir.iterdir()] == [SECRET_FILE_NAME]
        assert (data_dir / SECRET_FILE_NAME).stat().st_mode & 0o777 == 0o600


def test_a_key_from_the_settings_is_used_as_it_is(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="k" * SECRET_KEY_MIN_BYTES)
    assert session_secret(settings) == "k" * SECRET_KEY_MIN_BYTES
    assert not (tmp_path / SECRET_FILE_NAME).exists()
