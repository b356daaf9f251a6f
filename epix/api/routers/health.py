"""Liveness and readiness for load balancers and operators."""

from __future__ import annotations

import logging
import os

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from epix.api.deps import DatabaseDep, SettingsDep
from epix.db import Database
from epix.db.base import utcnow
from epix.db.trouble import UNREACHABLE, DatabaseTrouble, database_trouble, driver_message
from epix.errors import ERROR_TABLE, EpixError
from epix.registry import repository as registry
from epix.registry.anchors import anchor_finding, anchor_state, pinned_anchor_pem
from epix.registry.freshness import EXPIRED, FreshnessPolicy, held_copy_finding
from epix.settings import Settings

router = APIRouter(tags=["health"])
log = logging.getLogger("epix.api")


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    """The process is up; ``process`` names the worker process that answered, so operators and
    load generators can see how connections spread over ``epix serve --workers N``."""
    return {"status": "ok", "process": str(os.getpid())}


@router.get(
    "/readyz",
    summary="Readiness: the database answers, a registry copy is held and its anchor is usable",
)
def readyz(database: DatabaseDep, settings: SettingsDep) -> JSONResponse:
    """The database answers and, on a registry follower, a verified registry copy is held
    and the Secretariat certificate it verifies documents with (its anchor) can still take a
    newer one: not expired, and any announced successor reachable (``registry_anchor``).

    Every failure is an answer (503 with the check that failed, and ``Retry-After`` when the
    database is out), never a 500: a probe that errors tells the load balancer nothing it can
    act on. ``/healthz`` stays 200 meanwhile: the process is fine, restarting it would not help.
    """
    database_check, trouble = _database_check(database)
    checks = {"database": database_check}
    if settings.registry_source_url and database_check == "ok":
        checks["registry"] = _registry_check(database, FreshnessPolicy.from_settings(settings))
        anchor = _anchor_check(database, settings)
        if anchor is not None:
            checks["registry_anchor"] = anchor
    # An expired copy within its grace period is reported but the node still verifies.
    ready = all(value == "ok" or value.startswith(EXPIRED) for value in checks.values())
    headers = {"Retry-After": str(trouble.retry_after_seconds)} if trouble else None
    return JSONResponse(
        {"ready": ready, "checks": checks}, status_code=200 if ready else 503, headers=headers
    )


def _database_check(database: Database) -> tuple[str, DatabaseTrouble | None]:
    try:
        with database.read() as session:  # on SQLite no write lock: writers may hold it
            session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means not ready
        trouble = database_trouble(exc) or DatabaseTrouble(UNREACHABLE)
        cause = driver_message(exc, database.url)
        log.warning("%s on GET /readyz: %s", trouble.code, cause)
        return f"{trouble.code}: {ERROR_TABLE[trouble.code].meaning}", trouble
    return "ok", None


def _registry_check(database: Database, freshness: FreshnessPolicy) -> str:
    try:
        with database.read() as session:  # a probe never waits for the write lock
            held = registry.latest_document(session) is not None
            expiry = held_copy_finding(session, freshness)
    except Exception as exc:  # e.g. the database went away between the two checks
        return f"unavailable: {type(exc).__name__}"
    if not held:
        return "EPIX-REG-009: no registry document held yet"
    return f"{expiry.code}: {expiry.message}" if expiry else "ok"


def _anchor_check(database: Database, settings: Settings) -> str | None:
    """``ok`` or why the anchor can take no newer document (EPIX-REG-020/021); None when the
    node neither pins nor learnt an anchor (nothing to judge)."""
    pinned = pinned_anchor_pem(settings.registry_anchor_path)
    try:
        with database.read() as session:
            state = anchor_state(session, pinned)
            check = registry.source_check(session)
    except EpixError as exc:  # the pinned file is no single certificate
        return f"{exc.findings[0].code}: {exc.findings[0].message}"
    except Exception as exc:  # e.g. the database went away meanwhile
        return f"unavailable: {type(exc).__name__}"
    if state is None:
        return None
    finding = anchor_finding(state, check.failure_code if check else None, utcnow())
    return f"{finding.code}: {finding.message}" if finding else "ok"
