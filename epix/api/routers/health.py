"""Liveness and readiness for load balancers and operators."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from epix.api.deps import DatabaseDep, SettingsDep
from epix.db import Database
from epix.registry import repository as registry

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    """The process is up; ``process`` names the worker process that answered, so operators and
    load generators can see how connections spread over ``epix serve --workers N``."""
    return {"status": "ok", "process": str(os.getpid())}


@router.get("/readyz", summary="Readiness: the database answers and a registry copy is held")
def readyz(database: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    """The database answers and, on a registry follower, a verified registry copy is held.

    Every failure is an answer (503 with the check that failed), never a 500: a probe that
    errors tells the load balancer nothing it can act on.
    """
    checks = {"database": _database_check(database)}
    if settings.registry_source_url and checks["database"] == "ok":
        checks["registry"] = _registry_check(database)
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def _database_check(database: Database) -> str:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means not ready
        return f"unavailable: {type(exc).__name__}"
    return "ok"


def _registry_check(database: Database) -> str:
    try:
        with database.read() as session:  # a probe never waits for the write lock
            held = registry.latest_document(session) is not None
    except Exception as exc:  # e.g. the database went away between the two checks
        return f"unavailable: {type(exc).__name__}"
    return "ok" if held else "EPIX-REG-009: no registry document held yet"
