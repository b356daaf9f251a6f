"""``epix serve``: run the node (uvicorn) on the configured database, migrating it first."""

from __future__ import annotations

import contextlib
import errno
import logging.config
import multiprocessing
import os
import signal
import socket
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click
import uvicorn
from uvicorn._subprocess import spawn, subprocess_started
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess
from uvicorn.supervisors.multiprocess import Multiprocess

from epix.api.http_protocol import BoundedHttpToolsProtocol
from epix.api.metrics import MULTIPROCESS_DIRECTORY_VARIABLE, reset_multiprocess_directory
from epix.audit.service import AuditPolicy, configure_audit
from epix.auth.session_secret import session_secret
from epix.cli.logs import log_python_output, log_uncaught_in_process, uvicorn_log_config
from epix.compliance import load_reference_data
from epix.db import Database
from epix.delivery.worker import start_worker_thread
from epix.errors import EpixError
from epix.exchange.demo import DemoSetup, bootstrap_demo, demo_file
from epix.exchange.node_identity import node_identity
from epix.registry.follower import start_following
from epix.settings import Settings, get_settings

if TYPE_CHECKING:
    from fastapi import FastAPI


def ensure_node_identity(settings: Settings) -> None:
    """Load (or create, on first start) the node key now: made lazily by the first submission,
    a data directory this user cannot write let the node start and then fail every request."""
    try:
        node_identity(settings.data_dir, settings.node_party)
    except OSError as exc:
        where = exc.filename or settings.data_dir
        raise click.ClickException(
            f"The data directory {settings.data_dir} cannot be used: {exc.strerror or exc}: "
            f"{where}. It must be writable by the user running the node (EPIX_DATA_DIR)."
        ) from None


def epix_command() -> str:
    """How to run this ``epix`` from another terminal: ``make run`` starts it from ``.venv/bin``,
    which a new shell does not have on its PATH, so a bare ``epix`` would not be found there."""
    program = Path(sys.argv[0])
    if program.name != "epix":  # python -m epix.cli, or a test runner
        return "epix"
    program = program.resolve()
    try:
        return str(program.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(program)


def print_demo(setup: DemoSetup, url: str) -> None:
    """The URL and the demo API keys (kept in the data directory, so every start shows them)."""
    click.echo(f"\nEPIX demo node: {url}  (API docs: {url}/docs)")
    click.echo("Demo API keys (TEST ONLY; send as 'Authorization: Bearer <key>'):")
    for user in setup.users:
        click.echo(f"  {user.party:6} {user.role:22} {user.username:28} {user.api_key}")
    click.echo(f"Web pages: {url}/web/  (log in with a demo user name and password, TEST ONLY):")
    for user in setup.users:
        click.echo(f"  {user.username:28} {user.password}")
    click.echo(f"Demo signing keys: {setup.keys_dir}")
    click.echo(f"Try it: {epix_command()} demo --url {url}\n")


def log_demo(settings: Settings, url: str) -> None:
    """``print_demo`` for a node logging JSON: its standard error goes to a log collector, which
    must not keep the demo's keys and passwords, so the line says where they are."""
    logging.getLogger("epix.cli").info(
        "EPIX demo node: %s (API docs: %s/docs); the demo users' API keys and passwords "
        "(TEST ONLY) are in %s; try it: %s demo --url %s",
        url,
        url,
        demo_file(settings),
        epix_command(),
        url,
    )


# Listening on every address says nothing of the URL people reach the node at.
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104  (compared, not bound)


def ensure_can_listen(host: str, port: int) -> None:
    """Refuse, with a message, an address uvicorn could not bind (a port in use, a host that is
    not this machine's) before anything is migrated, printed or started; uvicorn would log it
    after announcing startup and exit 3."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn decides
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = (
                "already in use. Stop what runs there or choose another --port "
                "(with make: make run PORT=8001)"
            )
        else:
            reason = f"{exc.strerror or exc}. Check --host"
        raise click.ClickException(f"Cannot listen on {host}:{port}: {reason}.") from None


def uvicorn_options(
    host: str, port: int, workers: int = 1, log_level: str = "INFO", log_format: str = "text"
) -> dict[str, Any]:
    """How uvicorn serves the node, here and in the tests that talk to it over real sockets."""
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "log_level": "info",
        "log_config": uvicorn_log_config(log_level, log_format),
        # uvicorn kills a worker process that has not answered its supervisor's ping within
        # this many seconds (default 5), with the requests it serves: on a loaded host a
        # process starved of CPU for a few seconds is slow, not hung.
        "timeout_worker_healthcheck": 30,
        # Head cap, read timeouts and minimum body rate (guarantee 7).
        "http": BoundedHttpToolsProtocol,
    }


def web_app() -> FastAPI:
    """``create_app`` as uvicorn's factory. In a worker process of ``--workers N`` nothing
    explained its failure (e.g. a file ``epix serve`` read before, changed since): multiprocessing
    printed the traceback as text, under EPIX_LOG_FORMAT=json too, and uvicorn started the
    process again, failing the same way, every healthcheck interval. There it is one log line
    (the message of a known failure, else the traceback) and exit status 3, uvicorn's startup
    failure, on which uvicorn stops the node. In ``epix serve``'s own process (one worker)
    the command line explains it, as any other failure (epix.cli.main)."""
    from epix.api.app import create_app  # the application only where it is served

    try:
        return create_app()
    except Exception as exc:
        if multiprocessing.parent_process() is None:
            raise
        from epix.cli.main import explained  # epix.cli.main imports this module

        problem = explained(exc)
        log = logging.getLogger("epix.cli")
        if problem is None:
            log.critical("The web worker process cannot start", exc_info=True)
        else:
            log.critical("The web worker process cannot start: %s", problem.format_message())
        sys.exit(STARTUP_FAILURE)


class _WebProcess(multiprocess.Process):
    """uvicorn's web process of ``--workers N``, started through ``_web_process_started``."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        # No stdin, which uvicorn reopens in its web processes for debuggers: the node reads none.
        self.process = spawn.Process(
            target=_web_process_started,
            args=(get_settings().log_format, config, self, sockets),
        )

    def start(self) -> None:
        """Start the process, then close this process's copy of its end of the healthcheck
        pipe (the child has its own). With it open, a process that ended with a ping
        unanswered (one that cannot start ends seconds after it began answering) was noticed
        only when the ping timed out, 30 s later; closed, the ping meets the end of the pipe."""
        super().start()
        self.child_conn.close()


def _web_process_started(
    log_format: str,
    config: uvicorn.Config,
    web_process: multiprocess.Process,
    sockets: list[socket.socket],
) -> None:
    """A web process, from its start: its end by an exception nothing caught is said in the
    node's log format (``log_uncaught_in_process``), before uvicorn starts another.
    multiprocessing printed it as text past every hook, credentials and all, and so it did
    when the process failed before its logging was configured (the first thing uvicorn does
    in it), which the format, set here first, no longer waits for. Before the server has
    started (its logging, the application's code and the application itself), such an
    exception ends the process with uvicorn's startup failure status, 3, as ``web_app`` does
    for the application: with status 1 uvicorn started the process again, failing the same
    way, for as long as the node ran."""
    log_python_output(log_format)
    try:
        subprocess_started(config, web_process.target, sockets, stdin_fileno=None)
    except Exception as exc:  # KeyboardInterrupt and SystemExit end it as uvicorn lets them
        log_uncaught_in_process(exc)
        # 1 as multiprocessing ends a process it printed a traceback for: uvicorn starts another
        sys.exit(1 if web_process.server.started else STARTUP_FAILURE)


def _run_web_processes(options: dict[str, Any]) -> None:
    """``uvicorn.run`` with ``--workers N``, except for how it ends: when a web process cannot
    start, uvicorn stops the node but returns as from a clean stop, so a service manager saw
    exit status 0 and did not report (or restart) the node. Then the command ends with
    uvicorn's startup failure status, 3, as a single process does."""
    config = uvicorn.Config("epix.cli.serve:web_app", factory=True, **options)
    # uvicorn makes each web process (at start and each restart) through this module name.
    multiprocess.Process = _WebProcess  # type: ignore[misc]
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run: its processes are stopped
        supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise click.exceptions.Exit(STARTUP_FAILURE)


def _end_command(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM ends ``epix serve`` through its clean-up. uvicorn, serving in this process, shuts
    down on SIGTERM and then sends it again to the process with the handler it found: the
    default one ended the process there, skipping the clean-up, so the outbox worker thread
    never let its deliveries in flight end (their rows waited for the lease to expire) and the
    registry follower was not stopped."""
    raise SystemExit(0)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to listen on.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Web worker processes (on SQLite they queue for one write lock file). With more than "
    "one, /metrics adds up their counters through files in DATA_DIR/metrics, emptied at start, "
    "and one that cannot start stops the node (exit status 3).",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Create demo Parties XA and XB, keys and users on first start, and print the demo API "
    "keys and passwords (with EPIX_LOG_FORMAT=json, log where they are kept instead).",
)
def serve(host: str, port: int, workers: int, demo: bool) -> None:
    """Start the node: apply migrations, then serve the API with uvicorn.

    With EPIX_REGISTRY_SOURCE_URL set, the node also follows that published registry
    (verified against EPIX_REGISTRY_ANCHOR_PATH) until it stops.
    """
    ensure_can_listen(host, port)
    load_reference_data()
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"  # IPv6 in []
    if "EPIX_NODE_BASE_URL" not in os.environ and host not in _ANY_ADDRESS:
        # The node's own URL (QR codes, its own endpoint among the peers') is where it listens,
        # unless the operator says otherwise; the web processes inherit it.
        os.environ["EPIX_NODE_BASE_URL"] = url
        get_settings.cache_clear()
    settings = get_settings()
    # Before the outbox worker and the follower start in this process; uvicorn applies the same
    # configuration again in each process it starts.
    logging.config.dictConfig(uvicorn_log_config(settings.log_level, settings.log_format))
    # Read (on a first start made) before anything is migrated or served, in this process: a
    # key file refused as too short is an invalid configuration as a short EPIX_SECRET_KEY is
    # (exit status 2) whatever --workers, not a failure of each web process (exit status 3),
    # and the web processes of a first start find the key made.
    session_secret(settings)
    database = Database(settings.effective_database_url)
    database.migrate()
    ensure_node_identity(settings)
    # This process audits too (the demo's registry entries, the in-process outbox worker, the
    # follower), with --workers N apart from the web processes: checkpoints falling due here
    # are signed with the node key like theirs (`epix audit verify` asks for each).
    configure_audit(AuditPolicy.for_node(settings))
    if demo:
        setup = bootstrap_demo(database, settings)
        if settings.log_format == "json":
            log_demo(settings, url)
        else:
            print_demo(setup, url)
    if workers > 1:
        # The web processes add up their counters through files, so that a scrape answered
        # by any of them gives the node's totals (epix/api/metrics.py).
        try:
            shared = reset_multiprocess_directory(settings.data_dir)
        except OSError as exc:
            raise click.ClickException(
                f"Cannot empty {exc.filename or settings.data_dir} for the worker processes' "
                f"metrics: {exc.strerror or exc}."
            ) from None
        os.environ[MULTIPROCESS_DIRECTORY_VARIABLE] = str(shared)
    signal.signal(signal.SIGTERM, _end_command)
    stop_following = threading.Event()
    try:
        follower = start_following(database, settings, stop_following)
    except EpixError as exc:
        raise click.ClickException(str(exc)) from None
    handle = start_worker_thread(database, settings) if settings.run_worker_in_process else None
    options = uvicorn_options(host, port, workers, settings.log_level, settings.log_format)
    try:
        if workers == 1:
            uvicorn.run("epix.cli.serve:web_app", factory=True, **options)
        else:
            _run_web_processes(options)
    finally:
        stop_following.set()
        if handle is not None:
            handle.stop()
        if follower is not None:
            follower.join(30)
        database.dispose()
