"""``epix users``: every refusal is a coded message naming the field (never a traceback or a
blamed database), and the Secretariat hears of a disabled or removed user exactly once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from epix.auth.principal import SECRETARIAT_PARTY
from epix.cli.main import cli
from epix.db import Database
from epix.exchange.models import InboxEntry
from epix.settings import get_settings

RunCli = Callable[..., Result]
CREATE_BOB = ("users", "create", "bob", "--party", "XA", "--authority", "XA MA", "--role=customs")


@pytest.fixture
def run_cli(database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """``epix`` in this process against ``database`` (SQLite or PostgreSQL)."""
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABASE_URL", database.engine.url.render_as_string(False))

    def run(*args: str, stdin: str | None = None) -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli, list(args), input=stdin)
        finally:
            get_settings.cache_clear()

    return run


def _notices(database: Database) -> list[str]:
    with database.read() as session:
        return list(
            session.scalars(
                select(InboxEntry.kind)
                .where(InboxEntry.recipient_party == SECRETARIAT_PARTY)
                .order_by(InboxEntry.id)
            )
        )


def test_disabling_or_removing_twice_notifies_once_and_says_so(
    run_cli: RunCli, database: Database
) -> None:
    assert run_cli(*CREATE_BOB).exit_code == 0
    first = run_cli("users", "disable", "bob", "--reason", "left")
    assert (first.exit_code, first.output) == (0, "disabled bob; the Secretariat was notified\n")
    again = run_cli("users", "disable", "bob")
    assert (again.exit_code, again.output) == (
        0,
        "bob was disabled already; nothing changed, nobody notified\n",
    )
    assert run_cli("users", "remove", "bob").output == (
        "removed bob; the Secretariat was notified\n"
    )
    assert "nobody notified" in run_cli("users", "remove", "bob").output
    assert "nobody notified" in run_cli("users", "disable", "bob").output
    assert _notices(database) == ["user_disabled", "user_removed"]


@pytest.mark.parametrize(
    ("args", "location"),
    [
        (("--authority", "A" * 201), "(authority)"),
        (("--authority", "XA MA", "--full-name", "N" * 201), "(full_name)"),
    ],
)
def test_an_overlong_field_is_refused_by_name(
    run_cli: RunCli, args: tuple[str, ...], location: str
) -> None:
    """On PostgreSQL these used to fail the transaction and be reported as an unusable
    database; on SQLite they were stored whole."""
    result = run_cli("users", "create", "bob", "--party", "XA", "--role", "customs", *args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("EPIX-REQ-004: ") and location in result.output
    assert "cannot be used" not in result.output
    assert run_cli("users", "list").output == ""


def test_an_overlong_key_label_or_a_key_id_out_of_range_is_refused_clearly(
    run_cli: RunCli,
) -> None:
    assert run_cli(*CREATE_BOB).exit_code == 0
    labelled = run_cli("users", "issue-key", "bob", "--label", "L" * 201)
    assert labelled.exit_code == 1
    assert labelled.output.startswith("EPIX-REQ-004: ") and "(label)" in labelled.output
    assert run_cli("users", "keys", "bob").output == ""
    for key_id in ("99999999999", "0"):
        revoked = run_cli("users", "revoke-key", key_id)
        assert revoked.exit_code == 2, revoked.output
        assert "KEY_ID" in revoked.output and "cannot be used" not in revoked.output
    missing = run_cli("users", "revoke-key", "2147483647")
    assert (missing.exit_code, missing.output) == (
        1,
        "EPIX-AUTH-008: There is no API key 2147483647. (key_id)\n",
    )
