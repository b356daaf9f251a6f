"""Where the node's own log lines go: standard error, with time, level and logger name.

uvicorn configures only its own loggers, so without this every ``epix.*`` line below a warning
(a worker starting, a registry update, a client that left mid-body) was dropped under
``epix serve``, and warnings came out bare, without time or origin.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# Under epix serve each line written while a request is answered ends with its id, as does
# uvicorn's access line (epix.api.request_id).
_REQUEST_ID_FILTER = {"()": "epix.api.request_id.RequestIdFilter"}


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus the ``epix`` logger at ``level``; uvicorn applies it
    in every worker process it starts."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"request_id": _REQUEST_ID_FILTER}
    config["formatters"]["epix"] = {"format": LOG_FORMAT + "%(request_suffix)s"}
    config["formatters"]["access"]["fmt"] += "%(request_suffix)s"
    config["handlers"]["access"]["filters"] = ["request_id"]
    config["handlers"]["epix"] = {
        "class": "logging.StreamHandler",
        "formatter": "epix",
        "stream": "ext://sys.stderr",
        "filters": ["request_id"],
    }
    config["loggers"]["epix"] = {"handlers": ["epix"], "level": level, "propagate": False}
    return config


def configure_command_logging(level: str) -> None:
    """The same lines for a command that runs without uvicorn (``epix worker``)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
