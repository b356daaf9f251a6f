"""Request dependencies: settings and database from app state.

Routes open ``database.unit_of_work()`` themselves so that the commit happens before the
response (a receipt is only sent after bytes, hash and audit event are committed).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.db import Database
from epix.db.base import ROW_ID_MAX as ROW_ID_MAX  # routers import it from here
from epix.errors import EpixError
from epix.settings import Settings

# The three below only read the request, so they are ``async def``: FastAPI runs a plain ``def``
# dependency in its thread pool, and each such hop cost more than the work it wrapped.


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def request_context(request: Request, headers: dict[str, str]) -> RequestContext:
    """What the audit trail keeps of ``request``, given its headers as a dict."""
    client = request.client.host if request.client else None
    return RequestContext.from_raw(request.method, request.url.path, client, headers)


async def get_request_context(request: Request) -> RequestContext:
    return request_context(request, dict(request.headers.items()))


async def raw_body(request: Request) -> bytes:
    """The body exactly as sent: read in this async dependency so that the route itself can be
    a plain ``def`` and parse, validate and verify in the thread pool."""
    return await request.body()


# A row id larger than the database's INTEGER in a URL is EPIX-REQ-004, not a 500.
RowId = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]

SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
RequestContextDep = Annotated[RequestContext, Depends(get_request_context)]
RawBody = Annotated[bytes, Depends(raw_body)]


@contextmanager
def audited_reading(database: Database) -> Iterator[Session]:
    """A unit of work whose refusal (``EpixError``) is raised once the work is committed: a
    refused lookup is answered after its audit event is stored, where a plain unit of work
    would roll it back with the refusal."""
    refusal: EpixError | None = None
    with database.unit_of_work() as session:
        try:
            yield session
        except EpixError as exc:
            refusal = exc
    if refusal is not None:
        raise refusal
