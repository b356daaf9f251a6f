"""Concurrent submissions run their pipeline at most EPIX_PIPELINE_CONCURRENCY at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from epix.db import Database
from epix.exchange import service
from epix.registry.roles import MANAGEMENT_AUTHORITY
from tests.exchange.conftest import headers, make_node

pytestmark = pytest.mark.anyio
Submit = Callable[..., service.SubmissionResult]


class _Overlap:
    """Wraps the real ``submit`` and records how many ran at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def wrap(self, real: Submit) -> Submit:
        def counted(*args: Any, **kwargs: Any) -> service.SubmissionResult:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                time.sleep(0.02)  # long enough for every thread that could enter to do so
                return real(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1

        return counted


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_submissions_queue_for_the_pipeline(
    tmp_path: Path, sqlite_database: Database, monkeypatch: pytest.MonkeyPatch, concurrency: int
) -> None:
    node = make_node(tmp_path, sqlite_database, pipeline_concurrency=concurrency)
    overlap = _Overlap()
    monkeypatch.setattr("epix.api.routers.messages.submit", overlap.wrap(service.submit))
    key = node.key("XA", MANAGEMENT_AUTHORITY)
    permits = [node.signed_permit() for _ in range(8)]
    statuses: list[int] = []
    transport = httpx.ASGITransport(app=node.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:

        async def send(body: bytes) -> None:
            response = await client.post("/v1/messages", content=body, headers=headers(key))
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for body in permits:
                group.start_soon(send, body)
    assert statuses == [201] * 8
    assert overlap.most == concurrency
