"""`epix --help` documents every command, and every command's own help works."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from epix.cli.main import cli
from epix.settings import Settings, get_settings

CONTRACT_COMMANDS = {
    "audit",
    "bench",
    "demo",
    "errors",
    "keys",
    "outbox",
    "registry",
    "serve",
    "sign",
    "users",
    "validate",
    "verify",
    "worker",
}


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    if isinstance(command, click.Group):
        for name, child in command.commands.items():
            found += walk(child, (*path, name))
    return found


def test_every_contract_command_is_registered() -> None:
    assert set(cli.commands) >= CONTRACT_COMMANDS


def test_every_command_has_help_text() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0
    for name in cli.commands:
        assert name in top.output
    for path in walk(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output


def test_every_command_and_option_says_what_it_is_for() -> None:
    """An option added without help shows only its name in ``--help``: say what it does."""
    undocumented = []
    for path in walk(cli):
        command = cli
        for name in path:
            assert isinstance(command, click.Group)
            command = command.commands[name]
        if not (command.help or "").strip():
            undocumented.append(" ".join(path))
        undocumented += [
            f"{' '.join(path)} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option)
            and not (param.help or "").strip()
            and param.name != "help"
        ]
    assert undocumented == []


def test_unknown_command_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli, ["no-such-command"]).exit_code == 2


BROKEN_SETTINGS = {
    "unknown database driver": {"EPIX_DATABASE_URL": "nosuchdb://node/epix"},
    "unparseable database URL": {"EPIX_DATABASE_URL": "not a URL s3cret"},
    "unreachable PostgreSQL": {
        "EPIX_DATABASE_URL": "postgresql+psycopg://epix:s3cret@127.0.0.1:1/epix"
    },
    "not an integer": {"EPIX_RETENTION_YEARS": "five"},
    "under the five-year retention": {"EPIX_RETENTION_YEARS": "-1"},
    "a lease of no time": {"EPIX_OUTBOX_LEASE_SECONDS": "0"},
    "a deadline of no time": {"EPIX_OUTBOUND_DEADLINE_SECONDS": "0"},
    "a deadline as long as the lease": {"EPIX_OUTBOUND_DEADLINE_SECONDS": "30"},
    "a body rate of nothing": {"EPIX_BODY_MIN_BYTES_PER_SECOND": "0"},
    "not a log level": {"EPIX_LOG_LEVEL": "chatty"},
    "not a mode": {"EPIX_NODE_MODE": "cluster"},
    "not JSON": {"EPIX_PEER_API_KEYS": '{"XB": s3cret'},
    "a database port that is no number": {
        "EPIX_DATABASE_URL": "postgresql+psycopg://epix:s3cret@127.0.0.1:five/epix"
    },
    "data directory cannot be made": {"EPIX_DATA_DIR": "/proc/epix-data"},
}
DATABASE_COMMANDS = [
    ["audit", "verify"],
    ["audit", "export"],
    ["users", "list"],
    ["registry", "list"],
    ["outbox", "list"],
    ["worker", "--once"],
    ["verify", "PERMIT", "--party", "XA"],
]


@pytest.mark.parametrize("broken", list(BROKEN_SETTINGS), ids=list(BROKEN_SETTINGS))
@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=[" ".join(c) for c in DATABASE_COMMANDS])
def test_a_broken_configuration_is_a_message_never_a_traceback(
    broken: str,
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    for name, value in BROKEN_SETTINGS[broken].items():
        monkeypatch.setenv(name, value)
    permit = tmp_path / "permit.xml"
    permit.write_bytes(b"<Permit/>")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, [str(permit) if a == "PERMIT" else a for a in command])
    finally:
        get_settings.cache_clear()
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (1, 2), result.output
    assert "Traceback" not in result.output
    assert "s3cret" not in result.output
    assert result.output.strip()


INVALID_SETTINGS = [
    ("EPIX_RETENTION_YEARS", "five"),
    ("EPIX_OUTBOX_LEASE_SECONDS", "-3"),
    ("EPIX_MAX_BODY_BYTES", ""),
    ("EPIX_NODE_PARTY", "XYZ"),
    ("EPIX_NODE_BASE_URL", ""),
    ("EPIX_DATA_DIR", ""),
    ("EPIX_PEER_API_KEYS", '{"XB": 5}'),
    ("EPIX_METRICS_TOKEN", "short"),
    ("EPIX_SECRET_KEY", "x"),
    ("EPIX_DATABASE_URL", "not a URL"),
    ("EPIX_NODE_BASE_URL", "https://node.example:http/"),
    ("EPIX_REGISTRY_SOURCE_URL", "registry.example/v1/registry"),
    ("EPIX_REGISTRY_SOURCE_URL", "https://follower:s3cret@registry.example/v1/registry"),
]


@pytest.mark.parametrize(("variable", "value"), INVALID_SETTINGS)
def test_an_invalid_setting_is_a_usage_error_naming_the_variable(
    variable: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Exit status 2, as for a bad option, with one line that names the variable; an empty data
    directory, Party code or base URL is not taken as the working directory or ''; a password
    in a URL that would be logged is refused, and not repeated."""
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv(variable, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["users", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: Invalid configuration: {variable}: ")
    assert "s3cret" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "data").exists()  # nothing was made with the rest of the settings


def test_a_secret_key_under_32_bytes_is_refused_without_being_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key signs every web session cookie and seals the webhook secrets: "x" would let
    anyone with one cookie find it offline and forge an administrator's session. Bytes are
    counted, not characters; empty means unset (the node generates a key of its own)."""
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    outcomes = {}
    for key in ("ñ" * 15 + "a", "ñ" * 16):  # 31 and 32 bytes, 16 characters each
        monkeypatch.setenv("EPIX_SECRET_KEY", key)
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli, ["users", "list"])
        finally:
            get_settings.cache_clear()
        assert key not in result.output
        outcomes[len(key.encode())] = (result.exit_code, result.output.strip())
    assert outcomes[31] == (
        2,
        "Error: Invalid configuration: EPIX_SECRET_KEY: Value error, must be at least 32 bytes "
        "(python3 -c 'import secrets; print(secrets.token_urlsafe(48))' makes one), or unset to "
        "have the node generate one into the data directory",
    )
    assert outcomes[32][0] == 0, outcomes[32][1]
    monkeypatch.setenv("EPIX_SECRET_KEY", "")
    assert Settings().secret_key is None


def test_an_empty_optional_path_is_unset_and_a_party_code_may_be_lower_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EPIX_REGISTRY_ANCHOR_PATH", "")
    monkeypatch.setenv("EPIX_NODE_PARTY", "xb")
    settings = Settings()
    assert settings.registry_anchor_path is None
    assert settings.node_party == "XB"


def test_an_epix_variable_that_is_no_setting_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt EPIX_DATABASE_URL would otherwise leave the node on an empty SQLite database
    with nothing said."""
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_DATABSE_URL", "postgresql+psycopg://epix:s3cret@db/epix")
    monkeypatch.setenv("EPIX_NO_SUCH_THING", "1")
    monkeypatch.setenv("EPIX_TEST_POSTGRES_URL", "read by the test suite only")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["users", "list"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "Warning: EPIX_DATABSE_URL is not an EPIX setting (did you mean EPIX_DATABASE_URL?); "
        "it is ignored.",
        "Warning: EPIX_NO_SUCH_THING is not an EPIX setting; it is ignored.",
    ]
    assert "s3cret" not in result.output


def test_help_texts_only_name_commands_that_exist() -> None:
    runner = CliRunner()
    for path in walk(cli):
        output = runner.invoke(cli, [*path, "--help"]).output
        for named in re.findall(r"\bepix\s+([a-z][a-z-]*)", output):
            assert named in cli.commands, (path, named)


def _never_serve(*args: object, **kwargs: object) -> None:
    raise AssertionError("uvicorn was started")


def test_serve_on_a_port_in_use_is_a_message_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("epix.cli.serve.uvicorn.run", _never_serve)
    get_settings.cache_clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            result = CliRunner().invoke(cli, ["serve", "--demo", "--port", str(port)])
        finally:
            get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert f"127.0.0.1:{port}" in result.output
    assert "already in use" in result.output
    assert "make run PORT=" in result.output  # how to choose another port with make run
    assert "Traceback" not in result.output
    assert "Demo API keys" not in result.output  # nothing claims a node is running


@pytest.mark.parametrize(
    ("given", "host", "expected"),
    [
        (None, "127.0.0.1", "http://127.0.0.1:{port}"),
        ("https://epix.example.org", "127.0.0.1", "https://epix.example.org"),
        (None, "0.0.0.0", "http://127.0.0.1:8000"),  # every address: the documented default
        (None, "::1", "http://[::1]:{port}"),  # an IPv6 address is bracketed in a URL
    ],
)
def test_serve_gives_the_node_the_url_it_listens_at_unless_told_another(
    given: str | None,
    host: str,
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QR codes and the node's own endpoint follow --port when EPIX_NODE_BASE_URL is unset."""
    seen: dict[str, str] = {}

    def serve(*args: object, **kwargs: object) -> None:
        seen["url"] = get_settings().node_base_url
        seen["environment"] = os.environ.get("EPIX_NODE_BASE_URL", "")

    monkeypatch.setenv("EPIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EPIX_RUN_WORKER_IN_PROCESS", "false")
    if given is None:
        monkeypatch.delenv("EPIX_NODE_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("EPIX_NODE_BASE_URL", given)
    monkeypatch.setattr("epix.cli.serve.uvicorn.run", serve)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--host", host, "--port", str(port)])
    finally:
        get_settings.cache_clear()
        if given is None:
            os.environ.pop("EPIX_NODE_BASE_URL", None)  # serve set it for its web processes
    assert result.exit_code == 0, result.output
    assert seen["url"] == expected.format(port=port)
    if given is None and host == "127.0.0.1":
        assert seen["environment"] == seen["url"]


def test_serve_refuses_a_port_that_cannot_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("epix.cli.serve.uvicorn.run", _never_serve)
    result = CliRunner().invoke(cli, ["serve", "--port", "70000"])
    assert result.exit_code == 2, result.output


def test_serve_with_workers_refuses_a_metrics_directory_it_cannot_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stale counter files would add an earlier run's counts to this one's: a message, and
    nothing started."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "metrics").write_text("not a directory")
    monkeypatch.setenv("EPIX_DATA_DIR", str(data_dir))
    monkeypatch.setattr("epix.cli.serve.uvicorn.run", _never_serve)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--workers", "2", "--port", "18999"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "Cannot empty" in result.output and "metrics" in result.output
    assert "Traceback" not in result.output
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
