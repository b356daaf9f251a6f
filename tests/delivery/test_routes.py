"""Where a Party-addressed message goes on a Party node: its own inbox when the registry's
endpoint for the Party is this node (however the URL is spelt), else the peer's node."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from epix.db import Database
from epix.delivery.peers import LocalRoute, PeerRoute, route_for
from epix.settings import Settings


class _Endpoints:
    """A registry's endpoints by Party, as ``PeerDirectory`` answers them."""

    def __init__(self, endpoints: dict[str, str]) -> None:
        self.endpoints = endpoints

    def endpoint_of(self, session: Session, party: str) -> str | None:
        return self.endpoints.get(party)


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [
        ("https://node.example", True),
        ("https://NODE.example:443/v1", True),  # the default port and case spelt out
        ("https://node.example./", True),  # the root domain's trailing dot
        ("https://node.example:8443", False),
        ("https://other.example", False),
    ],
)
def test_a_party_whose_endpoint_is_this_node_is_delivered_here(
    sqlite_database: Database, tmp_path: Path, endpoint: str, local: bool
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        node_mode="party",
        node_party="XA",
        node_base_url="https://node.example/",
    )
    with sqlite_database.read() as session:
        route = route_for(
            session,
            destination_party="XB",
            settings=settings,
            directory=_Endpoints({"XB": endpoint}),
        )
    if local:
        assert route == LocalRoute("XB")
    else:
        assert isinstance(route, PeerRoute) and route.url.startswith(endpoint.rstrip("/"))
