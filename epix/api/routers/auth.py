"""Log in and out of the web pages, who am I, and user administration for node admins."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from epix.api.deps import DatabaseDep, RequestContextDep, RowId, SettingsDep
from epix.api.openapi import refusals
from epix.api.security import (
    SESSION_USER,
    CurrentPrincipal,
    check_same_origin_audited,
    end_web_session,
    get_current_principal,
    record_denied,
    require_roles,
    start_web_session,
    throttled_address,
    web_session,
)
from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth import service
from epix.auth.models import ApiKey, User
from epix.auth.principal import Principal, Role
from epix.auth.scoping import ensure_administers_node, ensure_may_administer
from epix.auth.throttle import Refusal, Throttle
from epix.db import Database
from epix.errors import EpixError, Finding
from epix.settings import NodeMode, Settings

router = APIRouter(prefix="/v1", tags=["auth"])
NodeAdmin = Annotated[Principal, Depends(require_roles(Role.NODE_ADMIN))]
UserReader = Annotated[Principal, Depends(require_roles(Role.NODE_ADMIN, Role.SECRETARIAT))]
# The answers for a user, API key or outbox row that does not exist (or that is concealed).
NOTHING_THERE = frozenset({"EPIX-AUTH-008", "EPIX-DLV-009"})


def administered_party(settings: Settings) -> str | None:
    """The one Party whose users this node's admins manage: the node's own on a Party node;
    None on a hub, whose admins manage every Party's users."""
    return settings.node_party if settings.node_mode is NodeMode.PARTY else None


@contextmanager
def party_refusals_audited(
    request: Request, database: Database, principal: Principal
) -> Iterator[None]:
    """Audit (``auth.denied``) a node admin refused another Party's user (EPIX-AUTH-005), as a
    caller refused for their role is; recorded after the refused transaction rolled back.

    A refusal answered as one for a user, key or outbox row that does not exist carries the
    EPIX-AUTH-005 it stands for as its cause (``raise ... from``, as ``concealed`` does) and is
    audited as that: the caller is not told, the audit trail is. On a Party node, where such
    answers stand for other Parties' users, keys and rows, the same answer for one that really
    does not exist is audited too (as what it is): else the time the audit row takes would
    tell the two apart."""
    try:
        yield
    except EpixError as refusal:
        denied = refusal.__cause__ if isinstance(refusal.__cause__, EpixError) else refusal
        code = denied.findings[0].code
        settings: Settings = request.app.state.settings
        if code == "EPIX-AUTH-005" or (
            code in NOTHING_THERE and administered_party(settings) is not None
        ):
            record_denied(request, database, principal, denied, why=True)
        raise


def concealed(check: Callable[[], None], answer: EpixError) -> None:
    """Run a Party ``check``; refuse with ``answer`` (the refusal for a user or key that does not
    exist) instead of its EPIX-AUTH-005, which becomes the answer's cause for the audit trail.

    A 403 for another Party's user next to a 404 for a name nobody has would let a Party node's
    admin find out which user names other Parties' accounts (a peer node's) have."""
    try:
        check()
    except EpixError as refusal:
        raise answer from refusal


def administered_user(
    session: Session, username: str, principal: Principal, settings: Settings
) -> User:
    """The named user if this node admin may manage them; one they may not is answered as a
    name nobody has (EPIX-AUTH-008). A node admin of another Party on a Party node is refused
    (EPIX-AUTH-005) before the lookup, whatever the name."""
    node_party = administered_party(settings)
    ensure_administers_node(principal, node_party, "username")
    user = service.get_user(session, username)
    concealed(
        lambda: ensure_may_administer(principal, user.party, node_party, "username"),
        service.no_such_user(username),
    )
    return user


def ensure_name_not_concealed(
    session: Session, username: str, principal: Principal, node_party: str | None
) -> None:
    """Refuse a new user's name that a user this admin may not manage has with EPIX-AUTH-013,
    which does not say the name exists (``create_user``)."""
    holder = service.find_user(session, username)
    if holder is not None:
        holder_party = holder.party
        concealed(
            lambda: ensure_may_administer(principal, holder_party, node_party, "username"),
            service.name_unavailable(username),
        )


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=150, examples=["xb-customs"])
    password: str = Field(min_length=1, max_length=1024, examples=["printed-by-make-run"])


class PrincipalOut(BaseModel):
    user_id: int
    username: str
    party: str
    authority: str | None
    roles: list[str]
    via_api_key: bool

    @classmethod
    def of(cls, principal: Principal) -> PrincipalOut:
        return cls(
            user_id=principal.user_id,
            username=principal.username,
            party=principal.party,
            authority=principal.authority,
            roles=sorted(role.value for role in principal.roles),
            via_api_key=principal.api_key_id is not None,
        )


class UserOut(BaseModel):
    id: int
    username: str
    full_name: str | None
    party: str
    authority: str
    roles: list[str]
    has_password: bool
    created_at: datetime
    disabled_at: datetime | None
    removed_at: datetime | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(
            id=user.id,
            username=user.username,
            full_name=user.full_name,
            party=user.party,
            authority=user.authority,
            roles=sorted(role.value for role in service.parse_roles(user.roles)),
            has_password=user.password_hash is not None,
            created_at=user.created_at,
            disabled_at=user.disabled_at,
            removed_at=user.removed_at,
        )


class UserCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "username": "xb-customs-rotterdam",
                    "full_name": "Customs officer, Rotterdam",
                    "party": "XB",
                    "authority": "XB Customs",
                    "roles": ["customs"],
                }
            ]
        }
    )

    username: str = Field(min_length=1, max_length=150)
    full_name: str | None = Field(default=None, max_length=200)
    party: str = Field(min_length=2, max_length=8)
    authority: str = Field(min_length=1, max_length=200)
    roles: list[Role] = Field(min_length=1)
    password: str | None = Field(default=None, max_length=1024)


class ReasonIn(BaseModel):
    reason: str | None = Field(default=None, max_length=1000, examples=["left the service"])


class ApiKeyCreate(BaseModel):
    label: str | None = Field(default=None, max_length=200, examples=["customs clearance system"])
    expires_days: int | None = Field(default=None, ge=1, le=3650, examples=[365])


class ApiKeyOut(BaseModel):
    id: int
    prefix: str
    label: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            prefix=key.prefix,
            label=key.label,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class IssuedApiKey(ApiKeyOut):
    key: str = Field(description="The API key. Shown this once; only its hash is stored.")


@router.post(
    "/auth/login",
    summary="Log in to a web session",
    openapi_extra=refusals(
        "EPIX-AUTH-002",
        "EPIX-AUTH-006",
        "EPIX-AUTH-010",
        "EPIX-AUTH-011",
        "EPIX-AUTH-012",
        "EPIX-REQ-005",
    ),
    response_model=PrincipalOut,
)
def login(
    body: LoginRequest, request: Request, database: DatabaseDep, context: RequestContextDep
) -> PrincipalOut:
    """Check a password and start a web session (cookie). Failures are audited too.

    After EPIX_LOGIN_MAX_FAILURES attempts that did not succeed for one user name from one
    address within EPIX_LOGIN_FAILURE_WINDOW_SECONDS, attempts are refused (429, EPIX-AUTH-010,
    `Retry-After`) without checking the password, as they are from an address past
    EPIX_LOGIN_ADDRESS_MAX_FAILURES failures whatever the user names; the counts are shared by
    all worker processes, and each stretch of such refusals is audited once. A login sent by
    another site's page (its Origin, or without one its Referer, is not the node's) is refused
    (403, EPIX-AUTH-012) before any of that; one with neither header (a script) is not."""
    return PrincipalOut.of(password_login(request, database, context, body.username, body.password))


def password_login(
    request: Request, database: Database, context: RequestContext, username: str, password: str
) -> Principal:
    """Check a person's password (throttled, audited) and start their web session on this
    browser; the JSON login and the login page's own form both come here."""
    if web_session(request) is None:
        raise EpixError.of("EPIX-REQ-005", "This node has no web sessions.", "/v1/auth/login")
    check_same_origin_audited(request, database, credential="password")
    throttle: Throttle = request.app.state.login_throttle
    address_throttle: Throttle = request.app.state.login_address_throttle
    address = throttled_address(request)
    refusal: Refusal | None = None
    whose = "for this user name from your address"
    try:
        with database.read() as session:
            refusal = throttle.is_refusing(session, username, address)
            if refusal is None and (refusal := address_throttle.is_refusing(session, address)):
                whose = "from your address"
        if refusal is None:
            # Counted before the password is checked (and forgiven below when it is right), so
            # guesses sent in parallel cannot all be checked before the first one fails.
            with database.unit_of_work() as session:
                refusal = throttle.count(session, username, address)
                if refusal is None and (refusal := address_throttle.count(session, address)):
                    whose = "from your address"
        if refusal is not None:
            raise EpixError(
                [
                    Finding(
                        "EPIX-AUTH-010",
                        f"Too many failed logins {whose}; try again in {refusal.retry_after} s.",
                        "credentials",
                    )
                ],
                retry_after_seconds=refusal.retry_after,
            )
        # The Argon2 check runs between two transactions, holding no lock: the attempt is
        # counted already, so guesses sent in parallel still get no more checks than the limit.
        with database.read() as session:
            stored = service.stored_password_hash(session, username)
        checked = service.check_password(username, stored, password)
        with database.unit_of_work() as session:
            user = service.accept_password(session, checked)
            throttle.forgive(session, username, address)
            address_throttle.uncount(session, address)
            principal = service.principal_of(user)
            record_event(
                session,
                action="login",
                outcome="ok",
                actor=principal,
                party=principal.party,
                request=context,
            )
            epoch = user.auth_epoch
    except EpixError as refusal_error:
        # A stretch of throttled attempts is audited once, at its first refusal: an attacker
        # must not be able to make the node write one row per request.
        if refusal is None or refusal.first:
            with database.unit_of_work() as session:
                # A name no user has is not kept: it is often a password or an API key typed
                # into the wrong field, and the audit trail is kept for years.
                known = service.user_exists(session, username)
                record_event(
                    session,
                    action="login",
                    outcome=refusal_error.findings[0].code,
                    request=context,
                    detail={"username": username} if known else {"unknown_username": True},
                )
        raise
    start_web_session(request, principal, epoch)
    return principal


@router.post(
    "/auth/logout",
    summary="Log out of the web session",
    openapi_extra=refusals("EPIX-AUTH-012"),
    status_code=204,
)
def logout(request: Request, database: DatabaseDep, context: RequestContextDep) -> None:
    """End the web session, and with it every copy of its cookie (audited when someone was
    logged in). The person's other web sessions end too: a cookie carries no id of its own."""
    web = web_session(request)
    if not web or web.get(SESSION_USER) is None:
        return
    # Another site must not end the session either (audited, as a refused session is).
    check_same_origin_audited(request, database, credential="session")
    try:
        principal = get_current_principal(request, database)
    except EpixError:
        principal = None  # the session had already ended: nothing to record
    end_web_session(request)
    if principal is not None:
        with database.unit_of_work() as session:
            if principal.api_key_id is None:  # the session's person, not a key sent along
                service.end_web_sessions(session, principal.user_id)
            record_event(
                session,
                action="logout",
                outcome="ok",
                actor=principal,
                party=principal.party,
                request=context,
            )


@router.get("/auth/whoami", summary="Who the caller is", response_model=PrincipalOut)
def whoami(principal: CurrentPrincipal) -> PrincipalOut:
    """The authenticated caller: person, Party, authority and roles."""
    return PrincipalOut.of(principal)


@router.get(
    "/users",
    summary="List the node's users",
    openapi_extra=refusals("EPIX-AUTH-005"),
    response_model=list[UserOut],
)
def list_users(
    principal: UserReader,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    party: str | None = None,
) -> list[UserOut]:
    """Users of the node (node admins and the Secretariat), optionally of one Party. On a Party
    node its admins see only its own Party's users (another `party` is EPIX-AUTH-005)."""
    own_party = administered_party(settings)
    if own_party is not None and not principal.has(Role.SECRETARIAT):
        with party_refusals_audited(request, database, principal):
            ensure_may_administer(principal, party or own_party, own_party)
        party = own_party
    with database.unit_of_work() as session:
        return [UserOut.of(user) for user in service.list_users(session, party=party)]


@router.post(
    "/users",
    summary="Create a user",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-AUTH-007", "EPIX-AUTH-013"),
    response_model=UserOut,
    status_code=201,
)
def create_user(
    body: UserCreate,
    principal: NodeAdmin,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> UserOut:
    """Create a person of a Party and authority with roles (node admins); a password is for the web
    pages, API keys are issued separately. On a Party node only of its own Party (EPIX-AUTH-005).

    A name one of the admin's own users has is EPIX-AUTH-007. One that a user they may not
    manage has (another Party's, the Secretariat's) is EPIX-AUTH-013: the name is not free on
    this node (names are node-wide, so that much cannot be hidden from someone choosing one),
    but the answer names no account or Party, says nothing "exists", and is audited as the
    EPIX-AUTH-005 it stands for (``auth.denied``), so a run of such probes is on record."""
    node_party = administered_party(settings)
    with party_refusals_audited(request, database, principal):
        ensure_may_administer(principal, body.party, node_party)
    password = service.hash_password(body.password) if body.password is not None else None
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        ensure_name_not_concealed(session, body.username, principal, node_party)
        try:
            user = service.create_user(
                session,
                username=body.username,
                full_name=body.full_name,
                party=body.party,
                authority=body.authority,
                roles=body.roles,
                password=password,
                actor=principal,
                request=context,
            )
        except EpixError as refusal:
            if refusal.findings[0].code == "EPIX-AUTH-007":  # taken meanwhile: by whom?
                ensure_name_not_concealed(session, body.username, principal, node_party)
            raise
        return UserOut.of(user)


@router.post(
    "/users/{username}/disable",
    summary="Disable a user",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-AUTH-008"),
    response_model=UserOut,
)
def disable_user(
    username: str,
    body: ReasonIn,
    principal: NodeAdmin,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> UserOut:
    """Disable a user: their keys, sessions and the webhook subscriptions they made stop;
    the Secretariat is notified."""
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        user = administered_user(session, username, principal, settings)
        service.disable_user(session, user, reason=body.reason, actor=principal, request=context)
        return UserOut.of(user)


@router.post(
    "/users/{username}/enable",
    summary="Enable a disabled user",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-AUTH-008"),
    response_model=UserOut,
)
def enable_user(
    username: str,
    principal: NodeAdmin,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> UserOut:
    """Enable a disabled user again."""
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        user = administered_user(session, username, principal, settings)
        service.enable_user(session, user, actor=principal, request=context)
        return UserOut.of(user)


@router.delete(
    "/users/{username}",
    summary="Remove a user for good",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-AUTH-008"),
    response_model=UserOut,
)
def remove_user(
    username: str,
    principal: NodeAdmin,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> UserOut:
    """Remove a user for good (kept for the audit trail): their keys, sessions and webhook
    subscriptions stop; the Secretariat is notified."""
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        user = administered_user(session, username, principal, settings)
        service.remove_user(session, user, actor=principal, request=context)
        return UserOut.of(user)


@router.get(
    "/users/{username}/api-keys",
    summary="List a user's API keys",
    openapi_extra=refusals("EPIX-AUTH-004", "EPIX-AUTH-005", "EPIX-AUTH-008"),
    response_model=list[ApiKeyOut],
)
def list_api_keys(
    username: str,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
) -> list[ApiKeyOut]:
    """A user's keys (never the keys themselves): for the user, and node admins (on a Party
    node those of its own Party's users)."""
    own = principal.username == username
    if not own and not principal.has(Role.NODE_ADMIN):
        # Refused before the lookup, so the answer does not tell whether such a user exists.
        raise EpixError.of("EPIX-AUTH-004", "Only node admins see other users' keys.", "username")
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        user = (
            service.get_user(session, username)
            if own
            else administered_user(session, username, principal, settings)
        )
        return [ApiKeyOut.of(key) for key in service.list_api_keys(session, user)]


@router.post(
    "/users/{username}/api-keys",
    summary="Issue an API key",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-AUTH-008"),
    response_model=IssuedApiKey,
    status_code=201,
)
def issue_api_key(
    username: str,
    body: ApiKeyCreate,
    principal: NodeAdmin,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> IssuedApiKey:
    """Issue an API key to a named user; the key is in this answer only."""
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        user = administered_user(session, username, principal, settings)
        key, raw_key = service.issue_api_key(
            session,
            user,
            label=body.label,
            expires_at=service.expiry_in_days(body.expires_days),
            actor=principal,
            request=context,
        )
        return IssuedApiKey(**ApiKeyOut.of(key).model_dump(), key=raw_key)


@router.post(
    "/api-keys/{key_id}/revoke",
    summary="Revoke an API key",
    openapi_extra=refusals("EPIX-AUTH-005", "EPIX-AUTH-008"),
    response_model=ApiKeyOut,
)
def revoke_api_key(
    key_id: RowId,
    principal: CurrentPrincipal,
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    context: RequestContextDep,
) -> ApiKeyOut:
    """Revoke a key: users their own, node admins any (on a Party node, any of its own Party's
    users; another's key is answered as one that does not exist)."""
    with party_refusals_audited(request, database, principal), database.unit_of_work() as session:
        key = session.get(ApiKey, key_id)
        if key is None or key.user_id != principal.user_id:
            if not principal.has(Role.NODE_ADMIN):
                raise service.no_such_api_key(key_id)
            node_party = administered_party(settings)
            ensure_administers_node(principal, node_party, "key_id")
            if key is None:
                raise service.no_such_api_key(key_id)
            owner = session.get_one(User, key.user_id)
            concealed(
                lambda: ensure_may_administer(principal, owner.party, node_party, "key_id"),
                service.no_such_api_key(key_id),
            )
        return ApiKeyOut.of(
            service.revoke_api_key(session, key_id, actor=principal, request=context)
        )
