"""Tell the Secretariat about user changes through its inbox (CITES guidelines)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from epix.auth.principal import SECRETARIAT_PARTY
from epix.exchange.notifications import notify


def notify_secretariat(
    session: Session, *, kind: str, subject: str, body: dict[str, object]
) -> None:
    """Put a plain-text message in the Secretariat's inbox, in the caller's transaction."""
    text = "".join(f"{name}: {value}\n" for name, value in body.items() if value is not None)
    notify(session, party=SECRETARIAT_PARTY, kind=kind, subject=subject, body=text)
