"""``epix backup``: a running SQLite node under write load is copied, restored into a new data
directory, started, and its audit chain and permits are there."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from epix.exchange.demo import load_demo
from epix.permits.samples import demo_permit
from epix.permits.writer import write_permit
from epix.settings import Settings
from epix.signatures.sign import sign_document
from tests.conftest import REPO_ROOT, need_command
from tests.db.node_process import epix, node_env, running_node


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_backup_of_a_running_node_under_write_load_restores(tmp_path: Path) -> None:
    data_dir, backup_dir = tmp_path / "data", tmp_path / "backup"
    accepted: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    with running_node(data_dir, "--demo") as node:
        url = node.url
        demo = load_demo(Settings(data_dir=data_dir))
        assert demo is not None
        key_pem, cert_pem = demo.signing_identity("XA")
        sender = demo.api_key("XA", "management_authority")

        def submit_until_stopped() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                while not stop.is_set():
                    number = f"XA-{uuid.uuid4().hex[:10]}"
                    body = sign_document(
                        write_permit(demo_permit(number=number)), key_pem, cert_pem
                    )
                    answer = client.post(
                        "/v1/messages",
                        content=body,
                        headers={
                            "Authorization": f"Bearer {sender}",
                            "Content-Type": "application/xml",
                            "X-EPIX-Message-Id": f"msg-{number}",
                            "X-EPIX-From": "XA",
                            "X-EPIX-To": "XB",
                            "X-EPIX-Document-Type": "permit",
                        },
                    )
                    if answer.status_code == 201:
                        accepted.append(number)
                    else:
                        errors.append(answer.text)

        writers = [threading.Thread(target=submit_until_stopped) for _ in range(2)]
        for writer in writers:
            writer.start()
        try:
            while len(accepted) < 10 and not errors:
                time.sleep(0.05)
            before_backup = list(accepted)
            made = epix(data_dir, "backup", str(backup_dir))
            during_backup = len(accepted) - len(before_backup)
            while len(accepted) < len(before_backup) + during_backup + 5 and not errors:
                time.sleep(0.05)
        finally:
            stop.set()
            for writer in writers:
                writer.join(60)
    assert not errors, errors[:1]
    assert made.returncode == 0, made.stdout + made.stderr
    assert during_backup > 0, "the node was written to while the backup ran"

    assert mode(backup_dir) == 0o700
    for secret in ("epix.sqlite3", "session-secret", "keys/node.key.pem", "demo/demo.json"):
        assert mode(backup_dir / secret) == 0o600, secret
    assert mode(backup_dir / "keys") == 0o700
    assert not any(backup_dir.glob("epix.sqlite3-*")), "only the database, no WAL beside it"
    for kept in ("session-secret", "keys/node.key.pem", "keys/node.cert.pem"):
        assert (backup_dir / kept).read_bytes() == (data_dir / kept).read_bytes()

    restored = tmp_path / "restored"
    backup_dir.rename(restored)
    verified = epix(restored, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain intact" in verified.stdout
    importer = demo.api_key("XB", "management_authority")
    with running_node(restored) as node, httpx.Client(base_url=node.url, timeout=10) as client:
        for number in before_backup:
            lookup = client.get(
                f"/v1/permits/XA/{number}", headers={"Authorization": f"Bearer {importer}"}
            )
            assert lookup.status_code == 200, lookup.text
        later = client.get(
            f"/v1/permits/XA/{accepted[-1]}", headers={"Authorization": f"Bearer {importer}"}
        )
        assert later.status_code == 404  # accepted after the copy was taken


def test_backup_refuses_a_data_directory_without_a_database(tmp_path: Path) -> None:
    refused = epix(tmp_path / "typo", "backup", str(tmp_path / "backup"))
    assert refused.returncode == 1
    assert "There is no EPIX database" in refused.stderr
    assert not (tmp_path / "backup").exists()
    assert not (tmp_path / "typo").exists()


def test_backup_refuses_a_destination_that_holds_files(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    made = epix(data_dir, "users", "list")  # creates and migrates the database
    assert made.returncode == 0, made.stderr
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("operator's file")
    refused = epix(data_dir, "backup", str(occupied))
    assert refused.returncode == 1
    assert "is not an empty directory" in refused.stderr
    assert (occupied / "keep.txt").read_text() == "operator's file"


def test_backup_onto_a_full_disk_says_so_and_leaves_no_partial_copy(tmp_path: Path) -> None:
    """A file size limit of 64 KiB stands in for a full destination disk (writes fail, EFBIG)."""
    data_dir = tmp_path / "data"
    made = epix(data_dir, "users", "list")
    assert made.returncode == 0, made.stderr
    assert (data_dir / "epix.sqlite3").stat().st_size > 64 * 1024
    destination = tmp_path / "backup"

    prlimit = need_command("prlimit")
    refused = subprocess.run(
        [prlimit, "--fsize=65536", sys.executable, "-m", "epix.cli", "backup", str(destination)],
        cwd=REPO_ROOT,
        env=node_env(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert f"The backup could not be written to {destination / 'epix.sqlite3'}" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert list(destination.iterdir()) == []
