"""Which kind of authority signs which documents.

A signing role is what a verifier asks the registry for ("certificates that may sign for Party
P as role R"): permits and status changes are signed as ``management_authority``, endorsements
as ``customs``, receipts and checkpoints as ``node``. The Secretariat signs only the registry
document, with the pinned anchor, so it is not a role of any authority in the registry.
"""

from __future__ import annotations

from epix.errors import EpixError

MANAGEMENT_AUTHORITY = "management_authority"
CUSTOMS = "customs"
SCIENTIFIC_AUTHORITY = "scientific_authority"
NODE = "node"
SECRETARIAT = "secretariat"

AUTHORITY_KINDS: tuple[str, ...] = (MANAGEMENT_AUTHORITY, CUSTOMS, SCIENTIFIC_AUTHORITY, NODE)

# The roles a certificate of each kind of authority may be registered for.
SIGNING_ROLES: dict[str, frozenset[str]] = {
    MANAGEMENT_AUTHORITY: frozenset({MANAGEMENT_AUTHORITY}),
    CUSTOMS: frozenset({CUSTOMS}),
    SCIENTIFIC_AUTHORITY: frozenset({SCIENTIFIC_AUTHORITY}),
    NODE: frozenset({NODE}),
}


def normalise_kind(kind: str, location: str = "kind") -> str:
    """The canonical kind name (``management-authority`` is accepted for the CLI's sake)."""
    canonical = kind.strip().lower().replace("-", "_")
    if canonical not in AUTHORITY_KINDS:
        raise EpixError.of(
            "EPIX-REG-013",
            f"Unknown authority kind {kind!r}; use one of {', '.join(AUTHORITY_KINDS)}.",
            location,
        )
    return canonical


def check_roles(kind: str, roles: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The sorted roles a certificate gets; by default every role its authority's kind signs."""
    allowed = SIGNING_ROLES[kind]
    if not roles:
        return tuple(sorted(allowed))
    chosen = {role.strip().lower().replace("-", "_") for role in roles}
    refused = sorted(chosen - allowed)
    if refused:
        raise EpixError.of(
            "EPIX-REG-013",
            f"A {kind} certificate may not sign as {', '.join(refused)}; "
            f"allowed: {', '.join(sorted(allowed))}.",
            "roles",
        )
    return tuple(sorted(chosen))
