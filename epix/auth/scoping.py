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
