"""``epix registry`` and ``epix verify`` from the command line: exit codes and JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from epix.audit.models import AuditEvent
from epix.cli.main import cli
from epix.db import Database
from epix.registry import repository
from epix.settings import get_settings
from epix.signatures import sign_document
from tests.pki import Identity
from tests.registry.conftest import PERMIT_XML, ec_identity


@pytest.fixture
def runner(
    sqlite_database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CliRunner]:
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", sqlite_database.url)
    monkeypatch.delenv("EPIX_REGISTRY_ANCHOR_PATH", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(runner: CliRunner, *args: str, code: int = 0) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def files(tmp_path: Path, secretariat_identity: Identity) -> dict[str, str]:
    ma = ec_identity("XA MA (TEST)")
    signed = sign_document(PERMIT_XML, ma.key_pem, ma.cert_pem)
    return {
        "ma_cert": write(tmp_path / "ma.cert.pem", ma.cert_pem),
        "permit": write(tmp_path / "permit.xml", signed),
        "fingerprint": ma.fingerprint,
        "key": write(tmp_path / "secretariat.key.pem", secretariat_identity.key_pem),
        "cert": write(tmp_path / "secretariat.cert.pem", secretariat_identity.cert_pem),
        "registry": str(tmp_path / "registry.xml"),
    }


def export_registry(runner: CliRunner, files: dict[str, str], out: str | None = None) -> None:
    """The Secretariat's signed registry document, to ``files["registry"]`` unless told."""
    run(
        runner,
        "registry",
        "export",
        "--key",
        files["key"],
        "--cert",
        files["cert"],
        "--out",
        out or files["registry"],
    )


def build_registry(runner: CliRunner, files: dict[str, str]) -> None:
    run(runner, "registry", "add-party", "XA", "Exampleland")
    run(runner, "registry", "add-party", "XB", "Otherland", "--endpoint", "https://xb.example")
    added = run(
        runner,
        "registry",
        "add-authority",
        "--party",
        "XA",
        "--kind",
        "management-authority",
        "XA CITES MA",
    )
    authority = re.search(r"added authority (\d+)", added)
    assert authority is not None
    run(runner, "registry", "add-certificate", "--authority", authority.group(1), files["ma_cert"])


def test_registry_commands_build_list_and_export_the_registry(
    runner: CliRunner, files: dict[str, str], sqlite_database: Database
) -> None:
    build_registry(runner, files)
    listed = json.loads(run(runner, "registry", "list", "--json"))
    assert listed["version"] == 4
    assert [p["code"] for p in listed["parties"]] == ["XA", "XB"]
    assert (
        listed["parties"][0]["authorities"][0]["certificates"][0]["fingerprint"]
        == (files["fingerprint"])
    )
    assert "XA CITES MA" in run(runner, "registry", "list")
    assert json.loads(run(runner, "registry", "expiring", "--json")) == []
    assert files["fingerprint"] in run(runner, "registry", "expiring", "--within-days", "400")
    run(runner, "registry", "set-endpoint", "XA", "https://xa.example")
    run(runner, "registry", "set-endpoint", "XB", "--clear")
    export_registry(runner, files)
    assert b'version="6"' in Path(files["registry"]).read_bytes()
    refused = run(runner, "registry", "add-party", "XA", "Again", code=1)
    assert "EPIX-REG-010" in refused
    with sqlite_database.unit_of_work() as session:
        audited = session.scalars(
            select(AuditEvent.outcome).where(AuditEvent.action == "registry.party.add")
        ).all()
    assert audited == ["ok", "ok", "EPIX-REG-010"]  # the refusal's event was committed


def test_verify_exit_codes_and_json_with_a_registry_file(
    runner: CliRunner, files: dict[str, str], tmp_path: Path
) -> None:
    build_registry(runner, files)
    export_registry(runner, files)
    offline = ["--registry", files["registry"], "--anchor", files["cert"], "--json"]

    valid = json.loads(run(runner, "verify", files["permit"], "--party", "XA", *offline))
    assert valid["valid"] is True and valid["errors"] == []
    assert valid["signer"]["party"] == "XA"
    assert valid["signer"]["fingerprint"] == files["fingerprint"]
    assert valid["registry"]["version"] == 4

    wrong_party = json.loads(
        run(runner, "verify", files["permit"], "--party", "XB", *offline, code=1)
    )
    assert wrong_party["valid"] is False and wrong_party["signer"] is None
    assert [e["code"] for e in wrong_party["errors"]] == ["EPIX-SIG-015"]
    wrong_role = json.loads(
        run(
            runner,
            "verify",
            files["permit"],
            "--party",
            "XA",
            "--role",
            "customs",
            *offline,
            code=1,
        )
    )
    assert [e["code"] for e in wrong_role["errors"]] == ["EPIX-SIG-012"]

    impostor = write(tmp_path / "impostor.pem", ec_identity("impostor", party="CH").cert_pem)
    forged = json.loads(
        run(
            runner,
            "verify",
            files["permit"],
            "--party",
            "XA",
            "--registry",
            files["registry"],
            "--anchor",
            impostor,
            "--json",
            code=1,
        )
    )
    assert forged["errors"][0]["code"] == "EPIX-REG-007"
    assert "EPIX-SIG-015" in run(
        runner,
        "verify",
        files["permit"],
        "--party",
        "XB",
        "--registry",
        files["registry"],
        "--anchor",
        files["cert"],
        code=1,
    )
    no_anchor = run(
        runner, "verify", files["permit"], "--party", "XA", "--registry", files["registry"], code=2
    )
    assert "--anchor" in no_anchor


def test_verify_against_the_node_database_honours_revocation_time(
    runner: CliRunner, files: dict[str, str]
) -> None:
    assert "EPIX-SIG-012" in run(runner, "verify", files["permit"], "--party", "XA", code=1)
    build_registry(runner, files)
    assert "valid: signed by XA CITES MA" in run(runner, "verify", files["permit"], "--party", "XA")
    run(
        runner,
        "registry",
        "revoke",
        files["fingerprint"],
        "--reason",
        "key compromise",
        "--at",
        "2026-01-01T00:00:00Z",
    )
    revoked = json.loads(run(runner, "verify", files["permit"], "--party", "XA", "--json", code=1))
    assert [e["code"] for e in revoked["errors"]] == ["EPIX-SIG-013"]


def test_import_follows_an_exported_registry_and_refuses_an_older_one(
    runner: CliRunner, files: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_registry(runner, files)
    old = str(tmp_path / "old.xml")
    export_registry(runner, files, out=old)
    run(runner, "registry", "set-endpoint", "XA", "https://xa.example")
    export_registry(runner, files)

    follower = Database(f"sqlite:///{tmp_path / 'follower.sqlite3'}")
    monkeypatch.setenv("EPIX_DATABASE_URL", follower.url)
    monkeypatch.setenv("EPIX_REGISTRY_ANCHOR_PATH", files["cert"])
    get_settings.cache_clear()
    assert "version 5 imported" in run(runner, "registry", "import", files["registry"])
    assert "version 5 already held" in run(runner, "registry", "import", files["registry"])
    assert "EPIX-REG-008" in run(runner, "registry", "import", old, code=1)
    with follower.unit_of_work() as session:
        assert repository.current_version(session) == 5
    follower.dispose()
    assert "valid" in run(runner, "verify", files["permit"], "--party", "XA")


def test_verify_at_a_past_time_uses_the_registry_as_it_stood_then(
    runner: CliRunner, files: dict[str, str]
) -> None:
    """``--at`` is the signing time of an archived document: a certificate registered only
    later was not in the registry then, in the node database as in a registry document."""
    build_registry(runner, files)
    export_registry(runner, files)
    # The certificate itself is valid from a day ago; it was registered just now.
    before_registration = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    offline = ["--registry", files["registry"], "--anchor", files["cert"]]
    for source in ([], offline):
        verdict = json.loads(
            run(
                runner,
                "verify",
                files["permit"],
                "--party",
                "XA",
                "--at",
                before_registration,
                "--json",
                *source,
                code=1,
            )
        )
        assert [e["code"] for e in verdict["errors"]] == ["EPIX-SIG-012"], source
        assert "valid: signed by" in run(
            runner, "verify", files["permit"], "--party", "XA", *source
        )


def test_bad_keys_and_times_are_messages_never_tracebacks(
    runner: CliRunner, files: dict[str, str], tmp_path: Path
) -> None:
    build_registry(runner, files)
    junk = write(tmp_path / "junk.pem", b"not a key\n")
    other = ec_identity("not the Secretariat")
    other_key = write(tmp_path / "other.key.pem", other.key_pem)
    for key in (junk, other_key):
        result = runner.invoke(
            cli, ["registry", "export", "--key", key, "--cert", files["cert"], "--out", "r.xml"]
        )
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        assert "Error:" in result.output
    for command in (
        ["verify", files["permit"], "--party", "XA"],
        ["registry", "revoke", files["fingerprint"], "--reason", "test"],
    ):
        result = runner.invoke(cli, [*command, "--at", "9999-12-31T23:59:59-14:00"])
        assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
        assert "--at" in result.output


def test_an_authority_id_beyond_the_database_integer_is_a_usage_error(
    runner: CliRunner, files: dict[str, str]
) -> None:
    """``--authority 99999999999999999999`` reached the database: an OverflowError traceback
    (the API refuses the same id in its path with EPIX-REQ-004)."""
    result = runner.invoke(
        cli,
        ["registry", "add-certificate", "--authority", "99999999999999999999", files["ma_cert"]],
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    assert "--authority" in result.output
