"""Users, passwords and API keys; every change is audited in the caller's transaction.

API keys are 256-bit random secrets, so a fast hash (SHA-256) is the right way to store them:
there is nothing to brute-force. The key carries a random public prefix used to find the row,
then the full key's hash is compared in constant time. Passwords are low-entropy and get Argon2.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from epix.audit.context import RequestContext
from epix.audit.service import record_event
from epix.auth.models import ApiKey, User
from epix.auth.notify import notify_secretariat
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db.base import table_of, utcnow
from epix.db.prepared import Prepared
from epix.delivery.webhooks import stop_subscriptions_of
from epix.errors import EpixError

KEY_SCHEME = "epix"
# Whole-string patterns (``fullmatch``): "$" would also match before a final line break.
_PARTY_RE = re.compile(r"[A-Z]{2}")
_USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,149}")
_KEY_RE = re.compile(r"^epix_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})$")
_hasher = PasswordHasher()
# Verified against when the user does not exist, so both failures take the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
MIN_PASSWORD_LENGTH = 12
# Authority names, full names and key labels: the size of their columns.
MAX_TEXT_LENGTH = 200
_USERS = table_of(User)
_API_KEYS = table_of(ApiKey)
# What authentication reads of a person: enough to refuse a disabled one and to build a Principal.
_PERSON = (
    _USERS.c.id,
    _USERS.c.username,
    _USERS.c.party,
    _USERS.c.authority,
    _USERS.c.roles,
    _USERS.c.disabled_at,
    _USERS.c.removed_at,
)


class Person(Protocol):
    """A ``User`` or a row of the columns in ``_PERSON``: what the checks below read."""

    @property
    def id(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def party(self) -> str: ...
    @property
    def authority(self) -> str: ...
    @property
    def roles(self) -> str: ...
    @property
    def disabled_at(self) -> datetime | None: ...
    @property
    def removed_at(self) -> datetime | None: ...


# Built once: composing a statement per call cost more than running it, and they run on the
# DBAPI cursor (epix.db.prepared).
_KEY_AND_OWNER = Prepared(
    select(
        *_PERSON,
        _API_KEYS.c.id.label("key_id"),
        _API_KEYS.c.key_hash,
        _API_KEYS.c.revoked_at,
        _API_KEYS.c.expires_at,
    )
    .join_from(_API_KEYS, _USERS, _USERS.c.id == _API_KEYS.c.user_id)
    .where(_API_KEYS.c.prefix == bindparam("prefix"))
)
_SESSION_USER = Prepared(
    select(*_PERSON, _USERS.c.auth_epoch).where(_USERS.c.id == bindparam("user_id"))
)


def _key_hash(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode("utf-8")).hexdigest()


def parse_roles(value: str) -> frozenset[Role]:
    return frozenset(Role(part) for part in value.split(",") if part)


def principal_of(user: Person, api_key_id: int | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        party=user.party,
        authority=user.authority,
        roles=parse_roles(user.roles),
        api_key_id=api_key_id,
    )


def _ensure_active(user: Person) -> None:
    if user.disabled_at is not None or user.removed_at is not None:
        raise EpixError.of("EPIX-AUTH-006", f"The account {user.username!r} is disabled.", "user")


def no_such_user(username: str) -> EpixError:
    """The refusal for a user name nobody has (EPIX-AUTH-008); also the answer to a node admin
    naming a user they may not manage, so that the two cannot be told apart."""
    return EpixError.of("EPIX-AUTH-008", f"There is no user {username!r}.", "username")


def no_such_api_key(key_id: int) -> EpixError:
    """The refusal for an API key id that does not exist (EPIX-AUTH-008), or whose key the
    caller may not see: the same answer either way."""
    return EpixError.of("EPIX-AUTH-008", f"There is no API key {key_id}.", "key_id")


def name_unavailable(username: str) -> EpixError:
    """The refusal for a new user name that an account the admin may not manage already has
    (EPIX-AUTH-013): it does not say whose, nor that such an account exists, only that the name
    is not free on this node, which the admin needs to know to choose another."""
    return EpixError.of(
        "EPIX-AUTH-013",
        f"The user name {username!r} cannot be used on this node; choose another.",
        "username",
    )


def _name_taken(username: str) -> EpixError:
    return EpixError.of("EPIX-AUTH-007", f"A user {username!r} already exists.", "username")


def find_user(session: Session, username: str) -> User | None:
    return session.scalars(select(User).where(User.username == username)).one_or_none()


def get_user(session: Session, username: str) -> User:
    user = find_user(session, username)
    if user is None:
        raise no_such_user(username)
    return user


def user_exists(session: Session, username: str) -> bool:
    return session.scalars(select(User.id).where(User.username == username)).first() is not None


def list_users(session: Session, *, party: str | None = None) -> Sequence[User]:
    query = select(User).order_by(User.party, User.username)
    if party is not None:
        query = query.where(User.party == party)
    return session.scalars(query).all()


def list_api_keys(session: Session, user: User) -> Sequence[ApiKey]:
    return session.scalars(
        select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.id)
    ).all()


def _validate_new_user(username: str, party: str, roles: frozenset[Role]) -> None:
    if not _USERNAME_RE.fullmatch(username):
        raise EpixError.of(
            "EPIX-REQ-004",
            "A username is 1–150 letters, digits or . _ @ -, starting with a letter or digit.",
            "username",
        )
    if party != SECRETARIAT_PARTY and not _PARTY_RE.fullmatch(party):
        raise EpixError.of(
            "EPIX-REQ-004",
            f"Party must be an ISO 3166 alpha-2 code or {SECRETARIAT_PARTY!r}; got {party!r}.",
            "party",
        )
    if not roles:
        raise EpixError.of("EPIX-REQ-004", "A user needs at least one role.", "roles")
    if Role.SECRETARIAT in roles and party != SECRETARIAT_PARTY:
        raise EpixError.of(
            "EPIX-REQ-004",
            f"Only users of {SECRETARIAT_PARTY!r} can have the secretariat role.",
            "roles",
        )


def _ensure_fits(value: str | None, location: str, what: str) -> None:
    """Refuse (EPIX-REQ-004) a text longer than its column: PostgreSQL would fail the whole
    transaction on it, and SQLite would keep it whole, unlike PostgreSQL."""
    if value is not None and len(value) > MAX_TEXT_LENGTH:
        raise EpixError.of(
            "EPIX-REQ-004", f"{what} may have at most {MAX_TEXT_LENGTH} characters.", location
        )


def _validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise EpixError.of(
            "EPIX-REQ-004",
            f"A password needs at least {MIN_PASSWORD_LENGTH} characters.",
            "password",
        )


@dataclass(frozen=True, slots=True)
class HashedPassword:
    """A new password, long enough and Argon2-hashed by ``hash_password``; what ``create_user``
    and ``set_password`` store."""

    encoded: str = field(repr=False)


def hash_password(password: str) -> HashedPassword:
    """Hash a new password (refused, EPIX-REQ-004, when too short) before the unit of work that
    stores it opens: the hash takes ~50 ms, which inside the transaction would hold SQLite's one
    write lock that every other writer of the node (submissions, pulls, audit) waits for."""
    _validate_password(password)
    return HashedPassword(_hasher.hash(password))


def create_user(
    session: Session,
    *,
    username: str,
    party: str,
    authority: str,
    roles: Iterable[Role],
    password: HashedPassword | None = None,
    full_name: str | None = None,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> User:
    """Create a person of one Party and authority, with the web ``password`` if given (from
    ``hash_password``, outside the transaction); audited as ``user_created``."""
    role_set = frozenset(roles)
    party = party.upper()
    _validate_new_user(username, party, role_set)
    if not authority.strip():
        raise EpixError.of("EPIX-REQ-004", "The authority name is required.", "authority")
    _ensure_fits(authority.strip(), "authority", "The authority name")
    _ensure_fits(full_name, "full_name", "The full name")
    if user_exists(session, username):
        raise _name_taken(username)
    user = User(
        username=username,
        full_name=full_name,
        party=party,
        authority=authority.strip(),
        roles=",".join(sorted(role.value for role in role_set)),
        password_hash=password.encoded if password is not None else None,
        created_at=utcnow(),
        auth_epoch=0,
    )
    try:
        with session.begin_nested():
            session.add(user)
    except IntegrityError:
        if not user_exists(session, username):
            raise
        raise _name_taken(username) from None  # taken by a transaction committed meanwhile
    record_event(
        session,
        action="user_created",
        outcome="ok",
        actor=actor,
        party=party,
        request=request,
        detail={"user": username, "authority": user.authority, "roles": user.roles.split(",")},
    )
    return user


def set_password(
    session: Session,
    user: User,
    password: HashedPassword,
    *,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> None:
    """Replace the password (``hash_password``); existing web sessions of that user end."""
    user.password_hash = password.encoded
    user.auth_epoch += 1
    record_event(
        session,
        action="user_password_set",
        outcome="ok",
        actor=actor,
        party=user.party,
        request=request,
        detail={"user": user.username},
    )


@dataclass(frozen=True, slots=True)
class CheckedPassword:
    """A password found right for a user's stored hash, by ``check_password`` outside any
    transaction; ``accept_password`` then takes it in the write transaction."""

    username: str
    matched_hash: str
    # The same password under the hasher's current parameters, when the stored hash's are old.
    rehashed: str | None


def stored_password_hash(session: Session, username: str) -> str | None:
    """The user's password hash, or None (no such user, or no password); reads only."""
    return session.scalars(select(User.password_hash).where(User.username == username)).first()


def check_password(username: str, stored: str | None, password: str) -> CheckedPassword:
    """Argon2-check ``password`` against ``stored`` (from ``stored_password_hash``), unknown
    user and wrong password failing alike (EPIX-AUTH-002) and taking the same time.

    Takes no session: the check (~50 ms) runs outside the database's transactions, so on
    SQLite it does not hold the one write lock every other writer waits for."""
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
        matched = bool(stored)
    except (VerificationError, InvalidHashError):
        matched = False
    if not matched or not stored:
        raise EpixError.of("EPIX-AUTH-002", "Unknown user or wrong password.", "credentials")
    rehashed = _hasher.hash(password) if _hasher.check_needs_rehash(stored) else None
    return CheckedPassword(username, stored, rehashed)


def accept_password(session: Session, checked: CheckedPassword) -> User:
    """The user whose password was checked, read again in the caller's (write) transaction: a
    password changed since the check does not log in (EPIX-AUTH-002), nor does a user disabled
    since (EPIX-AUTH-006); a hash under old parameters is replaced by the rehashed one."""
    user = session.scalars(select(User).where(User.username == checked.username)).one_or_none()
    if user is None or user.password_hash != checked.matched_hash:
        raise EpixError.of("EPIX-AUTH-002", "Unknown user or wrong password.", "credentials")
    _ensure_active(user)
    if checked.rehashed is not None:
        user.password_hash = checked.rehashed
    return user


def authenticate_session(session: Session, user_id: int, epoch: int) -> Principal:
    """The person behind a web session, if that session is still valid.

    One Core SELECT of the needed columns; it writes nothing, so callers use ``Database.read()``.
    """
    user = _SESSION_USER.first(session, {"user_id": user_id})
    if user is None or user.auth_epoch != epoch:
        raise EpixError.of("EPIX-AUTH-009", "The web session is no longer valid.", "session")
    _ensure_active(user)
    return principal_of(user)


def end_web_sessions(session: Session, user_id: int) -> None:
    """Log a person out: every web session of theirs ends, copies of its cookie included.

    A session cookie is signed data, not a server-side id, so clearing it in one browser
    does not stop a copy; moving the user's epoch on does (as a password change does).
    """
    user = session.get(User, user_id)
    if user is not None:
        user.auth_epoch += 1


def issue_api_key(
    session: Session,
    user: User,
    *,
    expires_at: datetime | None = None,
    label: str | None = None,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``user``; the raw key is returned here once and never stored."""
    _ensure_active(user)
    _ensure_fits(label, "label", "A key's label")
    if expires_at is not None and expires_at <= utcnow():
        raise EpixError.of("EPIX-REQ-004", "The expiry must be in the future.", "expires_at")
    prefix = secrets.token_hex(8)
    raw_key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(
        user_id=user.id,
        prefix=prefix,
        key_hash=_key_hash(raw_key),
        label=label,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    record_event(
        session,
        action="api_key_issued",
        outcome="ok",
        actor=actor,
        party=user.party,
        request=request,
        detail={
            "user": user.username,
            "key_id": key.id,
            "prefix": prefix,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return key, raw_key


def expiry_in_days(days: int | None) -> datetime | None:
    return utcnow() + timedelta(days=days) if days is not None else None


def revoke_api_key(
    session: Session,
    key_id: int,
    *,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise no_such_api_key(key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        owner = session.get(User, key.user_id)
        record_event(
            session,
            action="api_key_revoked",
            outcome="ok",
            actor=actor,
            party=owner.party if owner else None,
            request=request,
            detail={"user": owner.username if owner else None, "key_id": key.id},
        )
    return key


def authenticate_api_key(session: Session, raw_key: str) -> Principal:
    """The person a presented API key was issued to, or a refusal with an AUTH code.

    One Core SELECT of the key joined with its owner (only the columns the checks and the
    Principal need; a key without an owner is not valid); it writes nothing, so callers use
    ``Database.read()``.
    """
    match = _KEY_RE.match(raw_key.strip())
    row = None
    if match is not None:
        row = _KEY_AND_OWNER.first(session, {"prefix": match.group(1)})
    if row is None or not hmac.compare_digest(row.key_hash, _key_hash(raw_key.strip())):
        raise EpixError.of("EPIX-AUTH-002", "The API key is not valid.", "Authorization")
    if row.revoked_at is not None:
        raise EpixError.of("EPIX-AUTH-003", "The API key was revoked.", "Authorization")
    if row.expires_at is not None and row.expires_at <= utcnow():
        raise EpixError.of("EPIX-AUTH-003", "The API key has expired.", "Authorization")
    _ensure_active(row)
    return principal_of(row, api_key_id=row.key_id)


def _notify_user_change(
    session: Session, user: User, kind: str, reason: str | None
) -> dict[str, object]:
    subject = f"User {user.username} of {user.party} ({user.authority}) was {kind.split('_')[1]}"
    body: dict[str, object] = {
        "user": user.username,
        "full_name": user.full_name,
        "party": user.party,
        "authority": user.authority,
        "roles": user.roles.split(","),
        "reason": reason,
    }
    notify_secretariat(session, kind=kind, subject=subject, body=body)
    return {"kind": kind, "subject": subject}


def disable_user(
    session: Session,
    user: User,
    *,
    reason: str | None = None,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> bool:
    """Disable a user: keys, sessions and the webhook subscriptions they made stop working
    (``webhooks_stopped`` in the audit event) and the Secretariat is told.

    False (and nothing recorded or sent) when the user was disabled already."""
    if user.disabled_at is not None:
        return False
    user.disabled_at = utcnow()
    user.auth_epoch += 1
    stopped = stop_subscriptions_of(session, user.username)
    notification = _notify_user_change(session, user, "user_disabled", reason)
    record_event(
        session,
        action="user_disabled",
        outcome="ok",
        actor=actor,
        party=user.party,
        request=request,
        detail={
            "user": user.username,
            "reason": reason,
            "secretariat_notification": notification,
            "webhooks_stopped": stopped,
        },
    )
    return True


def enable_user(
    session: Session,
    user: User,
    *,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> None:
    if user.removed_at is not None:
        raise EpixError.of(
            "EPIX-AUTH-006", f"The user {user.username!r} was removed for good.", "username"
        )
    if user.disabled_at is None:
        return
    user.disabled_at = None
    record_event(
        session,
        action="user_enabled",
        outcome="ok",
        actor=actor,
        party=user.party,
        request=request,
        detail={"user": user.username},
    )


def remove_user(
    session: Session,
    user: User,
    *,
    reason: str | None = None,
    actor: Principal | None = None,
    request: RequestContext | None = None,
) -> bool:
    """Remove a user for good (the row stays, so the audit trail can still name them).

    False (and nothing recorded or sent) when the user was removed already."""
    if user.removed_at is not None:
        return False
    now = utcnow()
    user.removed_at = now
    user.disabled_at = user.disabled_at or now
    user.auth_epoch += 1
    for key in list_api_keys(session, user):
        if key.revoked_at is None:
            key.revoked_at = now
    stopped = stop_subscriptions_of(session, user.username)
    notification = _notify_user_change(session, user, "user_removed", reason)
    record_event(
        session,
        action="user_removed",
        outcome="ok",
        actor=actor,
        party=user.party,
        request=request,
        detail={
            "user": user.username,
            "reason": reason,
            "secretariat_notification": notification,
            "webhooks_stopped": stopped,
        },
    )
    return True
