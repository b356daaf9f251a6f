"""Who is acting: the authenticated person (or system acting for a named person)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# The Secretariat is not a Party; its users and its inbox use this pseudo-Party code.
SECRETARIAT_PARTY = "CITES"


class Role(StrEnum):
    MANAGEMENT_AUTHORITY = "management_authority"
    CUSTOMS = "customs"
    SECRETARIAT = "secretariat"
    NODE_ADMIN = "node_admin"
    # Another Party's node, forwarding that Party's signed documents (permits, endorsements,
    # status changes) to this node; its API key is in that node's EPIX_PEER_API_KEYS.
    PEER_NODE = "peer_node"


@dataclass(frozen=True, slots=True)
class Principal:
    """Every action is attributable to a person (CITES audit requirement)."""

    user_id: int
    username: str
    party: str
    authority: str | None
    roles: frozenset[Role]
    api_key_id: int | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles
