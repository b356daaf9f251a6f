"""Where the node's own log lines go: standard error, as text or one JSON object a line.

uvicorn configures only its own loggers, so without this every ``epix.*`` line below a warning
(a worker starting, a registry update, a client that left mid-body) was dropped under
``epix serve``, and warnings came out bare, without time or origin.

``EPIX_LOG_FORMAT=json`` is for log collectors (Loki, Elasticsearch, journald's JSON readers):
every line, uvicorn's access and error lines and other libraries' warnings included, is one
JSON object with fixed keys, so a message with a newline or quotes cannot break a line apart.
That holds for everything ``epix serve`` and ``epix worker`` write (``NODE_LOG_COMMANDS``):
the warnings about EPIX_* variables before they start, the error they may end with, Python's
warnings and tracebacks (``log_python_output``) and ``serve --demo``'s greeting (which then
names the file holding the demo credentials instead of printing them into the log).

In either format a line with a traceback, a traceback Python prints and a Python warning have
the settings' credentials taken out (``without_credentials``); text lines are otherwise written
as they were.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import multiprocessing
import re
import sys
import threading
import warnings
from datetime import UTC, datetime
from traceback import format_exception
from types import TracebackType
from typing import Any, TextIO

from pydantic import ValidationError
from pydantic_settings import SettingsError
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import DefaultFormatter

from epix.audit.context import REDACTED
from epix.settings import get_settings

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Under epix serve each line written while a request is answered ends with its id, as does
# uvicorn's access line (epix.api.request_id).
_REQUEST_ID_FILTER = {"()": "epix.api.request_id.RequestIdFilter"}
_JSON_FORMATTER = {"()": "epix.cli.logs.JsonFormatter"}
# The commands whose output is the node's log, all of it in EPIX_LOG_FORMAT.
NODE_LOG_COMMANDS = frozenset({"serve", "worker"})
ExcInfo = tuple[type[BaseException], BaseException | None, TracebackType | None]


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC), ``level``, ``logger``, ``message``, and
    ``request_id`` and ``exception`` when there are any (``stack`` for a record logged with
    ``stack_info``, which EPIX itself never asks for). Only these keys: a record's other
    attributes (``extra=`` arguments, uvicorn's scope) are never written, so nothing reaches
    the log that the message itself does not say (the access line's ``?token=`` is redacted
    in the message, epix.api.access_log); a line with a traceback has the settings'
    credentials taken out (``Settings.credentials``)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        line: dict[str, str] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        if _may_repeat_credentials(record, line["message"]):
            line = {key: without_credentials(value) for key, value in line.items()}
        return json.dumps(line)


class TextFormatter(logging.Formatter):
    """A text line (``LOG_FORMAT``, ``epix`` lines and other libraries'), with the settings'
    credentials taken out of a line that has a traceback, as ``JsonFormatter`` does; any other
    line is written as it is."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        redact = _may_repeat_credentials(record, record.message)
        return without_credentials(text) if redact else text


class UvicornTextFormatter(TextFormatter, DefaultFormatter):
    """uvicorn's own error-log formatter (``INFO:     ...``), redacting as ``TextFormatter``:
    its ``Exception in ASGI application`` line carries the traceback of a request's 500."""


_TRACEBACK_HEADING = "Traceback (most recent call last):"
_WARNINGS_LOGGER = "py.warnings"  # logging.captureWarnings's


def _may_repeat_credentials(record: logging.LogRecord, message: str) -> bool:
    """Whether the line carries a traceback (the record's, or one its message holds as text:
    uvicorn logs a lifespan failure so, as Starlette reports it) or is a Python warning, each
    saying whatever the code that raised or warned put in it; EPIX's own lines never name a
    credential."""
    return (
        bool(record.exc_info or record.exc_text or record.stack_info)
        or _TRACEBACK_HEADING in message
        or record.name == _WARNINGS_LOGGER
    )


# A credential this long is taken out wherever it appears: no word or path is one by chance.
_ANYWHERE_MIN_LENGTH = 12
# Where a text gives a shorter one as a credential: after a name that says so (``password=``,
# ``'password': '``, ``EPIX_METRICS_TOKEN=``, ``Authorization: Bearer``).
_CREDENTIAL_NAME = r"(?:pass|pwd|secret|token|key|auth)[\w-]*['\"]?[ \t]*[=:][ \t]*['\"]?"
_BEARER = r"bearer[ \t]+"


def _as_credential(credential: str) -> re.Pattern[str]:
    """Where ``credential``, too short to be taken out anywhere, stands as a credential: a
    URL's ``user:credential@``, the value of a credential's name, or a whole quoted string (a
    driver repeating part of a connection string it cannot parse: ``after "..."``)."""
    value = re.escape(credential)
    return re.compile(
        rf"(?<=:){value}(?=@)"
        rf"|(?<=['\"]){value}(?=['\"])"
        rf"|(?P<name>(?:{_CREDENTIAL_NAME})(?:{_BEARER})?|{_BEARER}){value}(?![\w])",
        re.IGNORECASE,
    )


def without_credentials(text: str) -> str:
    """``text`` with the settings' credentials replaced by ``[redacted]``. A traceback repeats
    whatever the code that raised put in its message (SQLAlchemy a URL it cannot parse,
    password and all), and so may the message that comes with it (asyncio's names the
    exception) and a warning: every log format and Python's own output take them out here.

    A credential of at least ``_ANYWHERE_MIN_LENGTH`` characters is taken out wherever it
    appears. A shorter one only where it stands as a credential (``_as_credential``): taken
    out as a substring, a database password ``epix`` made every path of a traceback
    ``/work/[redacted]/...``. Where a URL, a connection string or a driver's message repeats it,
    it stands so; said bare in other words it is not taken out."""
    try:
        credentials = get_settings().credentials
    except (ValidationError, SettingsError):  # the command is refused, with no traceback
        return text
    for credential in sorted(credentials, key=len, reverse=True):
        if len(credential) >= _ANYWHERE_MIN_LENGTH:
            text = text.replace(credential, REDACTED)
        else:
            text = _as_credential(credential).sub(
                lambda found: (found.group("name") or "") + REDACTED, text
            )
    return text


def json_line(
    level: int, message: str, logger: str = "epix.cli", exc_info: ExcInfo | None = None
) -> str:
    """``message`` as ``JsonFormatter`` writes it, for what a command says before its logging
    is configured (or instead of starting), or as its last words (``log_python_output``)."""
    record = logging.makeLogRecord(
        {
            "name": logger,
            "levelno": level,
            "levelname": logging.getLevelName(level),
            "msg": message,
            "exc_info": exc_info,
        }
    )
    return JsonFormatter().format(record)


def uvicorn_log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging configuration plus the ``epix`` logger at ``level``, in ``log_format``
    (``text`` or ``json``); uvicorn applies it in every worker process it starts."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"request_id": _REQUEST_ID_FILTER}
    if log_format == "json":
        config["formatters"] = {
            name: dict(_JSON_FORMATTER) for name in ("default", "access", "epix")
        }
    else:
        config["formatters"]["default"]["()"] = "epix.cli.logs.UvicornTextFormatter"
        config["formatters"]["epix"] = {
            "()": "epix.cli.logs.TextFormatter",
            "fmt": LOG_FORMAT + "%(request_suffix)s",
        }
        config["formatters"]["access"]["fmt"] += "%(request_suffix)s"
    # Other libraries' warnings and errors (asyncio's "Task exception was never retrieved"):
    # Python's last-resort handler writes them bare otherwise, traceback and credentials too.
    config["root"] = {"handlers": ["epix"], "level": "WARNING"}
    for handler in ("default", "access"):
        config["handlers"][handler]["filters"] = ["request_id"]
    config["handlers"]["epix"] = {
        "()": "epix.cli.logs.node_log_handler",
        "log_format": log_format,
        "formatter": "epix",
        "filters": ["request_id"],
    }
    config["loggers"]["epix"] = {"handlers": ["epix"], "level": level, "propagate": False}
    return config


def node_log_handler(log_format: str) -> logging.Handler:
    """The ``epix`` (and, under json, root) handler of ``uvicorn_log_config``: standard error.
    Made here, not named by its class, so that applying the configuration also makes Python's
    own output JSON lines under json (``log_python_output``), in ``epix serve`` and in each
    worker process uvicorn starts, which runs nothing else of ``epix serve``."""
    log_python_output(log_format)
    return logging.StreamHandler(sys.stderr)


def configure_command_logging(level: str, log_format: str = "text") -> None:
    """The same lines for a command that runs without uvicorn (``epix worker``), and for any
    node command until it configures its own (epix.cli.main), which this replaces."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(LOG_FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    log_python_output(log_format)


# The format of Python's own output in this process, as ``log_python_output`` last set it.
_python_output_format = "text"


def log_python_output(log_format: str) -> None:
    """What Python itself writes to standard error. Under json it would be text, bare and over
    several lines: there its warnings (``warnings.warn``) are ``py.warnings`` lines, and the
    traceback of an exception nothing caught, in the main thread or in another (the outbox worker
    thread, the registry follower) or in a web process of ``--workers N``
    (``log_uncaught_in_process``), and one Python cannot raise to anyone ("Exception ignored
    in", a warning), is one line of logger ``epix.cli.logs``. Under text that
    traceback and a warning are Python's own text; in both, with the settings' credentials taken out
    (``without_credentials``). Written straight to standard error, so that it holds before the
    logging is configured too."""
    global _python_output_format
    _python_output_format = log_format
    logging.captureWarnings(log_format == "json")
    if log_format != "json":
        warnings.showwarning = _show_warning
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` under text: Python's own text, without the credentials."""
    stream = sys.stderr if file is None else file
    if stream is None:  # pythonw: nowhere to write, as Python's own gives up
        return
    with contextlib.suppress(OSError):  # as Python's own: a warning never fails the command
        stream.write(
            without_credentials(warnings.formatwarning(message, category, filename, lineno, line))
        )


def _log_uncaught(
    kind: type[BaseException], exc: BaseException, traceback: TracebackType | None
) -> None:
    """``sys.excepthook``: the command ends with this line."""
    _write_uncaught(
        logging.CRITICAL,
        f"uncaught {kind.__name__}; the command ends",
        "",
        (kind, exc, traceback),
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: the thread has ended, the process goes on."""
    if args.exc_type is SystemExit:  # ends a thread quietly, as Python's own hook lets it
        return
    name = args.thread.name if args.thread is not None else "?"
    _write_uncaught(
        logging.ERROR,
        f"uncaught {args.exc_type.__name__}; thread {name} ended",
        f"Exception in thread {name}:\n",
        (args.exc_type, args.exc_value, args.exc_traceback),
    )


def _log_unraisable(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook``: an exception Python could not raise to anyone (in a ``__del__``,
    a weakref callback, a generator the garbage collector closed); the process goes on."""
    what = unraisable.err_msg or "Exception ignored in"
    if unraisable.object is not None:
        what = f"{what}: {unraisable.object!r}"
    _write_uncaught(
        logging.WARNING,
        what,
        f"{what}\n",
        (unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback),
    )


def log_uncaught_in_process(exc: Exception) -> None:
    """For a multiprocessing process ended by ``exc``: multiprocessing prints its traceback
    itself (``BaseProcess._bootstrap``: ``Process <name>:`` and ``traceback.print_exc``), past
    ``sys.excepthook``, so the process's code catches it and says it here instead."""
    process = multiprocessing.current_process()
    _write_uncaught(
        logging.CRITICAL,
        f"uncaught {type(exc).__name__}; process {process.name} [{process.pid}] ends",
        f"Process {process.name}:\n",
        (type(exc), exc, exc.__traceback__),
    )


def _write_uncaught(level: int, message: str, text_heading: str, exc_info: ExcInfo) -> None:
    """One JSON line, or what Python would print (``text_heading`` and the traceback)."""
    if _python_output_format == "json":
        written = json_line(level, message, __name__, exc_info) + "\n"
    else:
        written = without_credentials(text_heading + "".join(format_exception(*exc_info)))
    sys.stderr.write(written)
    sys.stderr.flush()
