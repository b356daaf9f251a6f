"""Demo bootstrap: two test Parties (XA, XB) and the Secretariat, ready to exchange permits.

On first start of ``epix serve --demo`` the node gets, in its own database and data directory:
the Secretariat user, Parties XA and XB with a Management Authority and a customs authority
each, their keys (generated into ``<data_dir>/demo/keys``, never committed) registered in the
registry, the node's own key registered as the ``node`` authority, one user per role with an
API key and a web password, and ``<data_dir>/demo/demo.json`` (0600) holding those credentials so
a restart prints them again. XA, XB are ISO 3166 user-assigned codes: never a real Party.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from epix.auth import service as auth
from epix.auth.principal import SECRETARIAT_PARTY, Principal, Role
from epix.db import Database
from epix.exchange.node_identity import NODE_ROLE, node_identity
from epix.registry import repository
from epix.registry import service as registry
from epix.registry.roles import CUSTOMS, MANAGEMENT_AUTHORITY
from epix.settings import Settings
from epix.signatures.keys import ensure_identity, identity_paths

DEMO_PARTIES = ("XA", "XB")


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    party: str
    role: str
    api_key: str
    password: str  # for the web pages; TEST ONLY, printed at every demo start


@dataclass(frozen=True, slots=True)
class DemoSetup:
    """What the demo needs to act: users with their API keys, and where the MA keys live."""

    users: tuple[DemoUser, ...]
    keys_dir: str

    def api_key(self, party: str, role: str) -> str:
        return next(u.api_key for u in self.users if u.party == party and u.role == role)

    def signing_identity(self, party: str, role: str = MANAGEMENT_AUTHORITY) -> tuple[bytes, bytes]:
        """Key and certificate PEM of a demo authority (for signing demo permits)."""
        key_path, cert_path = identity_paths(Path(self.keys_dir), f"{party}-{role}")
        return key_path.read_bytes(), cert_path.read_bytes()


def demo_dir(settings: Settings) -> Path:
    return settings.data_dir / "demo"


def demo_file(settings: Settings) -> Path:
    """Where the demo users' credentials are kept (0600), for the next start to show again."""
    return demo_dir(settings) / "demo.json"


def load_demo(settings: Settings) -> DemoSetup | None:
    """The demo set up on an earlier start, if any."""
    path = demo_file(settings)
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return DemoSetup(tuple(DemoUser(**user) for user in data["users"]), data["keys_dir"])


@dataclass(frozen=True, slots=True)
class _DemoAccount:
    """A demo user to create, with its web password and that password's hash."""

    username: str
    party: str
    authority: str
    role: Role
    password: str = field(repr=False)
    hashed: auth.HashedPassword


def _account(username: str, party: str, authority: str, role: Role) -> _DemoAccount:
    """Hashed here, before the transaction (``auth.hash_password``: ~50 ms a password)."""
    password = secrets.token_urlsafe(12)
    return _DemoAccount(username, party, authority, role, password, auth.hash_password(password))


def _user(session: Session, account: _DemoAccount) -> DemoUser:
    user = auth.create_user(
        session,
        username=account.username,
        party=account.party,
        authority=account.authority,
        roles=[account.role],
        password=account.hashed,
    )
    _, raw_key = auth.issue_api_key(session, user, label="demo")
    return DemoUser(account.username, account.party, account.role.value, raw_key, account.password)


def _register(
    session: Session, actor: Principal, party: str, kind: str, name: str, cert_pem: bytes
) -> None:
    authority = registry.add_authority(session, party=party, kind=kind, name=name, actor=actor)
    registry.add_certificate(session, authority_id=authority.id, pem=cert_pem, actor=actor)


def bootstrap_demo(database: Database, settings: Settings) -> DemoSetup:
    """Create the demo Parties, keys, users and API keys once; later calls just load them."""
    existing = load_demo(settings)
    if existing is not None:
        return existing
    # Owner-only like the rest of the data directory: mkdir(parents=True) would make this one
    # with the umask's mode (0755 as a rule) on the way to its keys directory.
    demo_dir(settings).mkdir(mode=0o700, parents=True, exist_ok=True)
    keys_dir = (demo_dir(settings) / "keys").resolve()
    # Passwords hashed and keys made before the transaction, which holds SQLite's one write
    # lock: Argon2 and key generation would keep every other writer waiting meanwhile.
    secretariat = _account(
        "cites-secretariat", SECRETARIAT_PARTY, "CITES Secretariat", Role.SECRETARIAT
    )
    authorities: list[tuple[str, bytes, _DemoAccount]] = []
    for party in DEMO_PARTIES:
        for kind, label, role in (
            (MANAGEMENT_AUTHORITY, "Management Authority", Role.MANAGEMENT_AUTHORITY),
            (CUSTOMS, "Customs", Role.CUSTOMS),
        ):
            name = f"{party} {label} (DEMO)"
            _, cert_pem = ensure_identity(
                keys_dir, f"{party}-{kind}", party=party, role=kind, common_name=name
            )
            account = _account(f"{party.lower()}-{kind}", party, name, role)
            authorities.append((kind, cert_pem, account))
    node = node_identity(settings.data_dir, settings.node_party)
    node_admin = _account("node-admin", settings.node_party, "Node operator", Role.NODE_ADMIN)
    with database.unit_of_work() as session:
        users = [_user(session, secretariat)]
        actor = auth.principal_of(auth.get_user(session, secretariat.username))
        parties = set(DEMO_PARTIES) | {settings.node_party}
        for party in sorted(parties):
            if repository.get_party(session, party) is None:
                registry.add_party(session, code=party, name=f"Demo Party {party}", actor=actor)
        for kind, cert_pem, account in authorities:
            _register(session, actor, account.party, kind, account.authority, cert_pem)
            users.append(_user(session, account))
        _register(session, actor, node.party, NODE_ROLE, f"EPIX node {node.party}", node.cert_pem)
        users.append(_user(session, node_admin))
    setup = DemoSetup(tuple(users), str(keys_dir))
    path = demo_file(settings)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"users": [asdict(u) for u in setup.users], "keys_dir": setup.keys_dir}, handle)
    return setup
