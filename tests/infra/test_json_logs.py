"""EPIX_LOG_FORMAT=json: every line `epix serve` and `epix worker` write is one JSON object a log
collector can read, with the request's id, and never a credential the request carried: their
warnings before they start, the error they end with (an invalid configuration's too) and the
traceback of an exception nothing caught included, and `serve --demo`'s greeting, which then
names the file holding the demo credentials instead of printing them. In text as in JSON, a
line with a traceback and a traceback Python prints have the settings' credentials taken out."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from epix.api.request_id import RequestIdFilter, current_request_id
from epix.cli.logs import JsonFormatter
from tests.conftest import REPO_ROOT
from tests.db.node_process import epix, free_port, node_env, running_node, written_so_far

KEYS = {"time", "level", "logger", "message"}
PASSWORD = "correct-horse-battery-staple"
API_KEY = "epix_k_not-a-real-key-but-a-credential"
PERMIT_TOKEN = "permit-token-4f1c"
# An EPIX_* variable that is no setting: the command line warns about it before the node starts.
TYPO = {"EPIX_LOG_FORMATT": "text"}
SECRET_KEY = "a-session-key-of-at-least-32-bytes-4c1d"
DATABASE_PASSWORD = "db-s3cret"
UNREACHABLE = f"postgresql+psycopg://epix:{DATABASE_PASSWORD}@127.0.0.1:1/epix"


def _json_lines(output: str) -> list[dict[str, str]]:
    """Each line of ``output`` as the JSON object it must be (a failure names the first line
    that is not one)."""
    lines = []
    for line in output.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}\nin:\n{output}")
    assert lines and all(line.keys() >= KEYS for line in lines), output
    return lines


def _leave_mid_body(url: str) -> None:
    """A client that announces 100 bytes, sends 10 and hangs up: the node logs it (epix.api)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nHost: node\r\nContent-Type: application/xml\r\n"
            b"Content-Length: 100\r\nX-Request-Id: left-mid-body\r\n\r\n<a>012345"
        )


@pytest.mark.slow
def test_every_line_of_a_json_logging_node_is_one_json_object(tmp_path: Path) -> None:
    """A demo node with a misspelt variable, asked a few things (refused ones too), then
    stopped with SIGTERM: everything it wrote, standard output and error, is JSON lines (its
    web processes under --workers N: test_exceptions_nothing_caught_in_web_worker_processes)."""
    extra_env = {"EPIX_LOG_FORMAT": "json", "EPIX_LOG_LEVEL": "info", **TYPO}
    with (
        running_node(tmp_path / "data", "--demo", extra_env=extra_env) as node,
        httpx.Client(base_url=node.url, timeout=30) as client,
    ):
        login = client.post(
            "/v1/auth/login",
            json={"username": "nobody", "password": PASSWORD},
            headers={"X-Request-Id": "login-1"},
        )
        inbox = client.get("/v1/inbox", headers={"Authorization": f"Bearer {API_KEY}"})
        client.get(f"/v1/permits/XA/XA-1?token={PERMIT_TOKEN}")
        _leave_mid_body(node.url)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if "client left" in node.printed():
                break
    assert (login.status_code, inbox.status_code) == (401, 401)
    lines = _json_lines(node.output)
    assert {line["logger"] for line in lines} >= {
        "uvicorn.error",
        "uvicorn.access",
        "epix.api",
        "epix.cli",
    }
    said = [line for line in lines if line["logger"] == "epix.cli"]
    assert said[0]["level"] == "WARNING" and "EPIX_LOG_FORMATT" in said[0]["message"]
    demo_file = tmp_path / "data" / "demo" / "demo.json"
    assert str(demo_file) in said[1]["message"]
    demo_users = json.loads(demo_file.read_text())["users"]
    for user in demo_users:  # the demo's credentials stay in their 0600 file
        assert user["api_key"] not in node.output and user["password"] not in node.output
    by_id = {line["request_id"]: line for line in lines if "request_id" in line}
    assert 'POST /v1/auth/login HTTP/1.1" 401' in by_id["login-1"]["message"]
    assert by_id[inbox.headers["x-request-id"]]["logger"] == "uvicorn.access"
    left = by_id["left-mid-body"]
    assert (left["logger"], left["level"]) == ("epix.api", "INFO")
    assert left["message"] == "client left during its request body: POST /v1/messages"
    for secret in (PASSWORD, API_KEY, PERMIT_TOKEN):
        assert secret not in node.output
    assert "token=[redacted]" in node.output


def test_a_json_line_carries_the_exception_and_the_request_id_on_one_line() -> None:
    """A traceback spans many lines in text; in JSON it is one value of one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("epix.test_json_logs")
    log.addHandler(handler)
    log.propagate = False
    token = current_request_id.set("req-7")
    try:
        try:
            {}["missing"]
        except KeyError:
            log.exception('failed on "%s"\nsecond line', "x")
        current_request_id.reset(token)
        log.warning("outside any request")
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "req-7"
    assert first["message"] == 'failed on "x"\nsecond line'
    assert first["level"] == "ERROR" and first["logger"] == "epix.test_json_logs"
    assert first["exception"].startswith("Traceback (most recent call last):")
    assert first["exception"].endswith("KeyError: 'missing'")
    assert second.keys() == KEYS and second["time"].endswith("Z")


def test_the_worker_and_a_node_that_cannot_start_write_only_json_lines(tmp_path: Path) -> None:
    """What the command line itself says (a misspelt variable, the error a command ends with)
    is a JSON line under EPIX_LOG_FORMAT=json too, the database's password left out."""
    json_env = {"EPIX_LOG_FORMAT": "json", "EPIX_LOG_LEVEL": "info", **TYPO}
    worker = epix(tmp_path / "data", "worker", "--once", extra_env=json_env)
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout == ""
    assert "EPIX_LOG_FORMATT" in _json_lines(worker.stderr)[0]["message"]

    failed = epix(tmp_path / "data", "worker", database_url=UNREACHABLE, extra_env=json_env)
    assert failed.returncode == 1
    error = _json_lines(failed.stderr)[-1]
    assert (error["level"], error["logger"]) == ("ERROR", "epix.cli")
    assert "cannot be used" in error["message"] and DATABASE_PASSWORD not in failed.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = epix(tmp_path / "data", "serve", "--port", port, extra_env=json_env)
        # Text stays text.
        text_env = {**json_env, "EPIX_LOG_FORMAT": "text"}
        as_text = epix(tmp_path / "data", "serve", "--port", port, extra_env=text_env)
    assert busy.returncode == 1
    assert "already in use" in _json_lines(busy.stderr)[-1]["message"]
    assert as_text.stderr.startswith("Warning: EPIX_LOG_FORMATT is not an EPIX setting")
    assert "Error: Cannot listen" in as_text.stderr


@pytest.mark.parametrize(
    "configure",
    [
        "from epix.cli.logs import configure_command_logging as c; c('INFO', 'json')",
        # As each worker process of `epix serve --workers N` applies it, and nothing else.
        "import logging.config; from epix.cli.logs import uvicorn_log_config as c; "
        "logging.config.dictConfig(c('INFO', 'json'))",
    ],
    ids=["worker", "serve"],
)
def test_pythons_warnings_are_json_lines_of_a_json_logging_command(
    tmp_path: Path, configure: str
) -> None:
    script = f"import warnings; {configure}; warnings.warn('old\\nthing', UserWarning)"
    ran = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=node_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (line,) = _json_lines(ran.stderr)
    assert (line["level"], line["logger"]) == ("WARNING", "py.warnings")
    assert "UserWarning: old\nthing" in line["message"]


def test_pythons_warnings_in_a_web_process_logging_text_are_written_without_the_credentials(
    tmp_path: Path,
) -> None:
    """As Python writes them, in a worker process of `epix serve --workers N` (which applies
    only the logging configuration): with the key a warning repeated, which Python wrote."""
    script = (
        "import logging.config, os, warnings; from epix.cli.logs import uvicorn_log_config as c; "
        "logging.config.dictConfig(c('INFO', 'text')); "
        "warnings.warn('old thing, key ' + os.environ['EPIX_SECRET_KEY'], UserWarning)"
    )
    ran = _run_python(tmp_path, script, EPIX_SECRET_KEY=SECRET_KEY)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == "<string>:1: UserWarning: old thing, key [redacted]\n"


def test_an_invalid_configuration_is_refused_in_a_json_line_unless_the_format_is_invalid(
    tmp_path: Path,
) -> None:
    """Another setting that cannot be used does not make the refusal text (exit status 2
    still), and names each variable without its value; only an invalid EPIX_LOG_FORMAT leaves
    the command no format but text."""
    secret = DATABASE_PASSWORD
    invalid = {
        "EPIX_LOG_FORMAT": "JSON",
        "EPIX_NODE_MODE": "cluster",
        "EPIX_LOG_LEVEL": "chatty",
        "EPIX_DATABASE_URL": f"postgresql+psycopg://epix:{secret}@127.0.0.1:five/epix",
    }
    worker = epix(tmp_path / "data", "worker", "--once", extra_env=invalid)
    assert worker.returncode == 2, worker.stderr
    (refusal,) = _json_lines(worker.stderr)
    assert (refusal["level"], refusal["logger"]) == ("ERROR", "epix.cli")
    assert refusal["message"].startswith("Invalid configuration: ")
    for variable in ("EPIX_NODE_MODE", "EPIX_LOG_LEVEL", "EPIX_DATABASE_URL"):
        assert variable in refusal["message"]
    assert secret not in worker.stderr

    not_json = {"EPIX_LOG_FORMAT": "json", "EPIX_PEER_API_KEYS": f'{{"XB": {secret}'}
    serve = epix(tmp_path / "data", "serve", "--port", str(free_port()), extra_env=not_json)
    assert serve.returncode == 2, serve.stderr
    (refusal,) = _json_lines(serve.stderr)
    assert "EPIX_PEER_API_KEYS cannot be parsed" in refusal["message"]
    assert secret not in serve.stderr

    unreadable = {"EPIX_LOG_FORMAT": "yaml", "EPIX_NODE_MODE": "cluster"}
    as_text = epix(tmp_path / "data", "worker", "--once", extra_env=unreadable)
    assert as_text.returncode == 2
    assert as_text.stderr.startswith("Error: Invalid configuration: EPIX_LOG_FORMAT: ")
    assert not (tmp_path / "data").exists()  # nothing was started with the rest


def _run_python(tmp_path: Path, script: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**node_env(tmp_path), **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _printed_until(
    command: list[str], env: dict[str, str], done: Callable[[bytes], bool]
) -> tuple[int, str]:
    """What ``command`` (run in the repository) prints until ``done`` says it printed enough,
    then stopped (SIGTERM): its exit status and all it printed."""
    with tempfile.TemporaryFile() as printed:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=printed, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 120
            while not done(so_far := written_so_far(printed)):
                assert process.poll() is None and time.monotonic() < deadline, so_far
                time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(timeout=30)
        return process.returncode, written_so_far(printed).decode()


# A failure no EPIX code expects, put where it would happen for real: in epix worker's main
# thread, and in epix serve's before its logging is configured.
UNEXPECTED_FAILURES = {
    "worker": ("epix.cli.worker", "default_worker", ["worker", "--once"]),
    "serve": ("epix.cli.serve", "load_reference_data", ["serve", "--port", "PORT"]),
}


@pytest.mark.parametrize("command", list(UNEXPECTED_FAILURES))
def test_an_exception_nothing_caught_ends_the_command_with_one_json_line(
    tmp_path: Path, command: str
) -> None:
    """Python's warning before it is a JSON line too, even before the logging is configured,
    without the credentials a warning may repeat as a traceback may (it was written as it
    was)."""
    module, function, args = UNEXPECTED_FAILURES[command]
    args = [str(free_port()) if arg == "PORT" else arg for arg in args]
    script = (
        f"import os, warnings, {module} as m\n"
        "def fail(*args, **kwargs):\n"
        "    warnings.warn('about to\\nbreak, key ' + os.environ['EPIX_SECRET_KEY'], UserWarning)\n"
        "    raise RuntimeError('broke\\nhere, key ' + os.environ['EPIX_SECRET_KEY'])\n"
        f"m.{function} = fail\n"
        "from epix.cli.main import cli\n"
        f"cli({args!r})\n"
    )
    ran = _run_python(tmp_path / "data", script, EPIX_LOG_FORMAT="json", EPIX_SECRET_KEY=SECRET_KEY)
    assert ran.returncode == 1, ran.stderr
    *_, warned, last = _json_lines(ran.stderr)
    assert (warned["level"], warned["logger"]) == ("WARNING", "py.warnings")
    assert "UserWarning: about to\nbreak, key [redacted]" in warned["message"]
    assert (last["level"], last["logger"]) == ("CRITICAL", "epix.cli.logs")
    assert last["message"] == "uncaught RuntimeError; the command ends"
    assert last["exception"].startswith("Traceback (most recent call last):")
    assert last["exception"].endswith("RuntimeError: broke\nhere, key [redacted]")
    assert SECRET_KEY not in ran.stderr


@pytest.mark.parametrize("command", list(UNEXPECTED_FAILURES))
def test_an_exception_nothing_caught_ends_a_text_logging_command_without_the_credentials(
    tmp_path: Path, command: str
) -> None:
    """In text, as Python prints it (Python's own hook printed the secret key), and so is a
    warning before it (Python printed it with the key)."""
    module, function, args = UNEXPECTED_FAILURES[command]
    args = [str(free_port()) if arg == "PORT" else arg for arg in args]
    script = (
        f"import os, warnings, {module} as m\n"
        "def fail(*args, **kwargs):\n"
        "    warnings.warn('about to break, key ' + os.environ['EPIX_SECRET_KEY'], UserWarning)\n"
        "    raise RuntimeError('broke\\nhere, key ' + os.environ['EPIX_SECRET_KEY'])\n"
        f"m.{function} = fail\n"
        "from epix.cli.main import cli\n"
        f"cli({args!r})\n"
    )
    ran = _run_python(tmp_path / "data", script, EPIX_LOG_FORMAT="text", EPIX_SECRET_KEY=SECRET_KEY)
    assert ran.returncode == 1, ran.stderr
    assert "Traceback (most recent call last):\n" in ran.stderr, ran.stderr
    assert ran.stderr.endswith("RuntimeError: broke\nhere, key [redacted]\n")
    assert "UserWarning: about to break, key [redacted]\n" in ran.stderr
    assert SECRET_KEY not in ran.stderr


def test_epix_worker_logging_text_takes_the_credentials_out_of_a_logged_traceback(
    tmp_path: Path,
) -> None:
    """A failing outbox loop logs its traceback in a text line (epix worker's own format),
    the secret key its exception carries taken out; the line is otherwise as it was."""
    script = (
        "import os, epix.delivery.worker as w\n"
        "def fail(*args, **kwargs):\n"
        "    raise RuntimeError('claim broke, key ' + os.environ['EPIX_SECRET_KEY'])\n"
        "w.Worker.claim = fail\n"
        "from epix.cli.main import cli\n"
        "cli(['worker'])\n"
    )
    env = {**node_env(tmp_path / "data"), "EPIX_LOG_FORMAT": "text", "EPIX_SECRET_KEY": SECRET_KEY}
    status, output = _printed_until(
        [sys.executable, "-c", script], env, lambda so_far: b"RuntimeError: claim broke" in so_far
    )
    assert status == 0, output
    assert SECRET_KEY not in output
    failed = re.search(
        r"^\S+ \S+ ERROR epix.delivery outbox worker iteration failed; retrying\n"
        r"Traceback \(most recent call last\):\n.*?\nRuntimeError: claim broke, key (\S+)$",
        output,
        re.MULTILINE | re.DOTALL,
    )
    assert failed and failed.group(1) == "[redacted]", output
    assert re.search(r"^\S+ \S+ INFO epix.delivery outbox worker \S+ started$", output, re.M)


def test_a_json_logging_command_interrupted_before_it_handles_sigint_says_so_in_json(
    tmp_path: Path,
) -> None:
    """Ctrl-C while epix worker migrates, before its own SIGINT handler: click wrote
    "Aborted!" as text."""
    script = (
        "import epix.db\n"
        "def interrupted(*args, **kwargs):\n"
        "    raise KeyboardInterrupt\n"
        "epix.db.Database.migrate = interrupted\n"
        "from epix.cli.main import cli\n"
        "cli(['worker'])\n"
    )
    ran = _run_python(tmp_path / "data", script, EPIX_LOG_FORMAT="json")
    assert ran.returncode == 1, ran.stderr
    (line,) = _json_lines(ran.stderr)
    assert (line["level"], line["logger"]) == ("ERROR", "epix.cli")
    assert line["message"] == "Aborted: interrupted (SIGINT)."


CRASHING_APP = """
import asyncio
import os
import threading


def fail(where):
    raise RuntimeError(f"{where} broke, {os.environ['EPIX_DATABASE_URL']}")


async def fail_later():
    fail("task")


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/thread":
        thread = threading.Thread(target=fail, args=("thread",), name="crashing-thread")
        thread.start()
        thread.join()
    elif scope["path"] == "/task":
        await asyncio.wait([asyncio.get_running_loop().create_task(fail_later())])
    elif scope["path"] == "/app":
        fail("app")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_exceptions_nothing_caught_in_web_worker_processes_are_log_lines_without_credentials(
    tmp_path: Path, log_format: str
) -> None:
    """With the configuration epix serve gives uvicorn, in worker processes that apply only
    that: an exception that ends a thread, one no one retrieved from an asyncio task and one
    uvicorn logs from the application (a 500) are one JSON line each, traceback included, and
    with the database's password taken out of the exception's message; in text, the lines
    they were, the password taken out as well (text printed it)."""
    (tmp_path / "crashing_app.py").write_text(CRASHING_APP)
    port = free_port()
    script = (
        "import sys, uvicorn\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from epix.cli.serve import uvicorn_options\n"
        f"uvicorn.run('crashing_app:app', **uvicorn_options('127.0.0.1', {port}, 2, 'INFO', "
        f"{log_format!r}))\n"
    )
    url = f"http://127.0.0.1:{port}"
    output = tmp_path / "output"
    with output.open("wb") as printed:
        server = subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env={**node_env(tmp_path / "data", UNREACHABLE), "PYTHONPATH": str(tmp_path)},
            stdout=printed,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, output.read_text()
                try:
                    if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
            paths = ["/thread", "/task", "/app"]
            statuses = [httpx.get(f"{url}{path}", timeout=10).status_code for path in paths]
            expected = ("thread broke", "task broke", "app broke")
            while not all(broke in output.read_text() for broke in expected):
                assert time.monotonic() < deadline + 30, output.read_text()
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert statuses == [200, 200, 500]
    printed = output.read_text()
    at = UNREACHABLE.replace(DATABASE_PASSWORD, "[redacted]")
    assert DATABASE_PASSWORD not in printed
    if log_format == "text":
        for heading, broke in [
            ("Exception in thread crashing-thread:\nTraceback", "thread"),
            (" ERROR asyncio Task exception was never retrieved", "task"),
            ("ERROR:    Exception in ASGI application\nTraceback", "app"),
        ]:
            assert heading in printed and f"RuntimeError: {broke} broke, {at}\n" in printed
        return
    lines = _json_lines(printed)
    assert {"uvicorn.access", "uvicorn.error"} <= {line["logger"] for line in lines}
    failures = {
        line["exception"].splitlines()[-1]: (line["level"], line["logger"], line["message"])
        for line in lines
        if "exception" in line
    }
    task = failures[f"RuntimeError: task broke, {at}"]
    assert failures == {
        f"RuntimeError: thread broke, {at}": (
            "ERROR",
            "epix.cli.logs",
            "uncaught RuntimeError; thread crashing-thread ended",
        ),
        f"RuntimeError: task broke, {at}": task,
        f"RuntimeError: app broke, {at}": (
            "ERROR",
            "uvicorn.error",
            "Exception in ASGI application\n",
        ),
    }
    assert task[:2] == ("ERROR", "asyncio") and "Task exception was never retrieved" in task[2]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make_key_file", "status", "problem"),
    [
        (lambda path: path.mkdir(), 1, "Is a directory: {path}"),
        (
            lambda path: path.write_text("cut-off"),
            2,
            "Invalid configuration: the session key file {path} must hold a key of at least 32 "
            "bytes of text",
        ),
    ],
    ids=["unreadable", "cut-off"],
)
def test_a_session_key_file_that_cannot_be_used_stops_serve_in_json_before_the_web_processes(
    tmp_path: Path, make_key_file: Callable[[Path], object], status: int, problem: str
) -> None:
    """The key file was first read in each web process of --workers 2, which failed one by one
    (exit status 3); a cut-off one was an OSError (exit status 1) elsewhere. ``epix serve``
    reads it before it migrates or starts any: one JSON line, exit status 1 for a file that
    cannot be read, 2 (an invalid configuration, as a short EPIX_SECRET_KEY) for a cut-off key."""
    path = tmp_path / "data" / "session-secret"
    path.parent.mkdir()
    make_key_file(path)
    serve = epix(
        tmp_path / "data",
        "serve",
        "--port",
        str(free_port()),
        "--workers",
        "2",
        extra_env={"EPIX_LOG_FORMAT": "json"},
        timeout=150,
    )
    [line] = _json_lines(serve.stdout + serve.stderr)
    assert (line["level"], line["logger"]) == ("ERROR", "epix.cli") and "exception" not in line
    assert line["message"].startswith(problem.format(path=path)), line
    assert serve.returncode == status


# Loaded by every Python process started with this directory on PYTHONPATH, the web processes
# of `epix serve --workers N` included. No failure a client or operator can cause ends a started
# web process with an exception (uvloop, uvicorn and the application log each one and go on):
# here uvicorn's own main loop fails at its next tick after SIGUSR1, which uvicorn leaves alone
# in a web process, so that the exception reaches the process's top as a real one would.
CRASH_ON_SIGUSR1 = """
import os
import signal

import uvicorn.server

signalled = []
signal.signal(signal.SIGUSR1, lambda signum, frame: signalled.append(signum))
tick = uvicorn.server.Server.on_tick


async def crash_when_signalled(self, counter):
    if signalled:
        raise RuntimeError("process broke, key " + os.environ["EPIX_SECRET_KEY"])
    return await tick(self, counter)


uvicorn.server.Server.on_tick = crash_when_signalled
"""


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_started_web_process_that_dies_of_an_exception_says_so_in_the_log_format(
    tmp_path: Path, log_format: str
) -> None:
    """multiprocessing printed such a process's traceback itself, as text past every hook,
    and with the secret key its message carried; uvicorn then starts another process."""
    extra_env = _hooked(tmp_path, CRASH_ON_SIGUSR1, log_format)
    with running_node(tmp_path / "data", "--workers", "2", extra_env=extra_env) as node:
        deadline = time.monotonic() + 120
        while node.printed().count("Application startup complete.") < 2:  # both started
            assert time.monotonic() < deadline, node.printed()
            time.sleep(0.2)
        crashed = int(re.findall(r"Started server process \[(\d+)\]", node.printed())[0])
        os.kill(crashed, signal.SIGUSR1)
        while f"Child process [{crashed}] died" not in node.printed():
            assert time.monotonic() < deadline, node.printed()
            time.sleep(0.2)
        assert httpx.get(f"{node.url}/readyz", timeout=10).status_code == 200
    ended = _web_processes_ended(node.output, log_format, "process broke")
    if log_format == "json":
        (message,) = ended
        assert re.fullmatch(
            rf"uncaught RuntimeError; process SpawnProcess-\d+ \[{crashed}\] ends", message
        )


def _hooked(tmp_path: Path, hooks: str, log_format: str) -> dict[str, str]:
    """The environment of a node logging in ``log_format`` whose every process first runs
    ``hooks`` (as its sitecustomize)."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(hooks)
    return {
        "EPIX_LOG_FORMAT": log_format,
        "EPIX_SECRET_KEY": SECRET_KEY,
        "PYTHONPATH": str(tmp_path / "hooks"),
    }


def _web_processes_ended(output: str, log_format: str, broke: str) -> list[str]:
    """Web processes said they ended by ``RuntimeError(f"{broke}, key {the secret key}")``,
    the key taken out: in text as multiprocessing prints it; in JSON, in lines of their own
    (the only lines with an exception), whose messages are returned."""
    assert SECRET_KEY not in output
    if log_format == "text":
        assert re.search(
            r"^Process SpawnProcess-\d+:\nTraceback \(most recent call last\):\n.*?\n"
            rf"RuntimeError: {broke}, key \[redacted\]$",
            output,
            re.MULTILINE | re.DOTALL,
        ), output
        return []
    ended = [line for line in _json_lines(output) if "exception" in line]
    for line in ended:
        assert (line["level"], line["logger"]) == ("CRITICAL", "epix.cli.logs")
        assert line["exception"].endswith(f"RuntimeError: {broke}, key [redacted]")
    return [line["message"] for line in ended]


# uvicorn configures each web process's logging first of all: a failure there (here forced in
# each web process multiprocessing starts, not in epix serve's own) came before every hook.
FAIL_BEFORE_LOGGING = """
import os
import sys

if "--multiprocessing-fork" in sys.argv:
    import uvicorn.config

    def broken(self):
        raise RuntimeError("logging broke, key " + os.environ["EPIX_SECRET_KEY"])

    uvicorn.config.Config.configure_logging = broken
"""


@pytest.mark.slow
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_web_process_that_fails_before_its_logging_is_configured_says_so_in_the_log_format(
    tmp_path: Path, log_format: str
) -> None:
    """multiprocessing printed its traceback as text, with the secret key its message
    carried, under EPIX_LOG_FORMAT=json too."""
    env = {**node_env(tmp_path / "data"), **_hooked(tmp_path, FAIL_BEFORE_LOGGING, log_format)}
    command = ["serve", "--port", str(free_port()), "--workers", "2"]
    _, output = _printed_until(
        [sys.executable, "-m", "epix.cli", *command],
        env,
        lambda so_far: so_far.count(b"RuntimeError: logging broke") >= 2,  # both processes
    )
    ended = _web_processes_ended(output, log_format, "logging broke")
    if log_format == "json":
        assert len(ended) >= 2, output
        for message in ended:
            assert re.fullmatch(
                r"uncaught RuntimeError; process SpawnProcess-\d+ \[\d+\] ends", message
            )


# An exception Python cannot raise to anyone (here in a __del__; at exit, in a weakref
# callback or a generator closed by the garbage collector alike): sys.unraisablehook's.
UNRAISABLE = """
import os
from epix.cli.logs import configure_command_logging

configure_command_logging("INFO", os.environ["EPIX_LOG_FORMAT"])


class Leaking:
    def __del__(self):
        raise RuntimeError("cleanup broke, key " + os.environ["EPIX_SECRET_KEY"])


Leaking()
print("still running")
"""


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_an_exception_python_cannot_raise_is_logged_in_the_format_without_credentials(
    tmp_path: Path, log_format: str
) -> None:
    """Python printed it as text ("Exception ignored in: ..."), secret key and all."""
    ran = _run_python(
        tmp_path / "data", UNRAISABLE, EPIX_LOG_FORMAT=log_format, EPIX_SECRET_KEY=SECRET_KEY
    )
    assert (ran.returncode, ran.stdout) == (0, "still running\n"), ran.stderr
    assert SECRET_KEY not in ran.stderr
    if log_format == "text":
        assert re.fullmatch(
            r"Exception ignored in: <function Leaking.__del__ at 0x\w+>\n"
            r"Traceback \(most recent call last\):\n.*\n"
            r"RuntimeError: cleanup broke, key \[redacted\]\n",
            ran.stderr,
            re.DOTALL,
        ), ran.stderr
        return
    (line,) = _json_lines(ran.stderr)
    assert (line["level"], line["logger"]) == ("WARNING", "epix.cli.logs")
    assert re.fullmatch(
        r"Exception ignored in: <function Leaking.__del__ at 0x\w+>", line["message"]
    )
    assert line["exception"].endswith("RuntimeError: cleanup broke, key [redacted]")
