"""Role and Party checks that services and routes share, each refusing with its own code."""

from __future__ import annotations

from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.errors import EpixError


def ensure_role(principal: Principal, *roles: Role) -> None:
    """Refuse (EPIX-AUTH-004) unless the principal holds at least one of ``roles``."""
    if not principal.roles & frozenset(roles):
        names = ", ".join(sorted(role.value for role in roles))
        raise EpixError.of(
            "EPIX-AUTH-004", f"This action needs one of the roles: {names}.", "roles"
        )


def ensure_own_party(principal: Principal, party: str, location: str = "party") -> None:
    """Refuse (EPIX-AUTH-005) acting for another Party: an MA submits only as its own Party."""
    if principal.party != party.upper():
        raise EpixError.of(
            "EPIX-AUTH-005",
            f"You act for {principal.party}; you may not act for {party}.",
            location,
        )


def may_see_party(principal: Principal, party: str) -> bool:
    """Whether the principal may see a Party's data: its own, or any for the Secretariat."""
    return principal.party == party.upper() or (
        principal.party == SECRETARIAT_PARTY and principal.has(Role.SECRETARIAT)
    )


def ensure_administers_node(principal: Principal, node_party: str | None, location: str) -> None:
    """Refuse (EPIX-AUTH-005) a node admin of another Party on a Party node, whoever they name.

    ``node_party`` is the Party whose node this is, None on a hub. Such an admin (made before
    this rule, or by hand) manages nobody there: fail closed rather than guess whom it is meant
    to manage. The refusal does not depend on the user or key named, so callers make it before
    looking that up and it tells nothing about what exists."""
    if node_party is not None and principal.party != node_party:
        raise EpixError.of(
            "EPIX-AUTH-005",
            f"This is {node_party}'s node and you are of {principal.party}: only "
            f"{node_party}'s node admins administer it.",
            location,
        )


def ensure_may_administer(
    principal: Principal, party: str, node_party: str | None, location: str = "party"
) -> None:
    """Refuse (EPIX-AUTH-005) a node admin managing a user of another Party on a Party node.

    ``node_party`` is the Party whose node this is, None on a hub. A hub's node admins are its
    operator's staff and manage every Party's users. A Party node's admins manage only users of
    its own Party, and only when they are of it themselves: else XA's admin could mint an XB
    management authority or a Secretariat user and act as them there. Users of other Parties
    (a peer node's account) are the operator's, made with ``epix users``."""
    ensure_administers_node(principal, node_party, location)
    if node_party is not None and party.upper() != node_party:
        raise EpixError.of(
            "EPIX-AUTH-005",
            f"This is {node_party}'s node: its node admins manage only {node_party}'s users, "
            f"not {party}'s; the node's operator manages others with 'epix users'.",
            location,
        )
