"""Liveness and readiness for load balancers and operators."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from epix.api.deps import DatabaseDep, SettingsDep
from epix.registry import repository as registry

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up; ``process`` names the worker process that answered, so operators and
    load generators can see how connections spread over ``epix serve --workers N``."""
    return {"status": "ok", "process": str(os.getpid())}


@router.get("/readyz")
def readyz(database: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    """The database answers and, on a registry follower, a verified registry copy is held."""
    checks: dict[str, str] = {}
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any database failure means not ready, never a 500
        checks["database"] = f"unavailable: {type(exc).__name__}"
    if settings.registry_source_url and checks["database"] == "ok":
        with database.read() as session:  # a probe never waits for the write lock
            held = registry.latest_document(session) is not None
        checks["registry"] = "ok" if held else "EPIX-REG-009: no registry document held yet"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
