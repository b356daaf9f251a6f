"""Tell the Secretariat about user changes through its inbox (CITES guidelines).

The inbox belongs to the exchange package, whose contract is
``epix.exchange.notifications.notify(session, *, party, kind, subject, body) -> None``, where
a text body is stored as plain text.
"""

from __future__ import annotations

import importlib

from sqlalchemy.orm import Session

from epix.auth.principal import SECRETARIAT_PARTY

_MODULE = "epix.exchange.notifications"


def notify_secretariat(
    session: Session, *, kind: str, subject: str, body: dict[str, object]
) -> bool:
    """Put a message in the Secretariat's inbox, in the caller's transaction.

    Returns False while the exchange package has no inbox notifications yet; the audit event
    of the user change then carries the notification for the Secretariat to read.
    """
    try:
        notifications = importlib.import_module(_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _MODULE:
            raise
        return False
    text = "".join(f"{name}: {value}\n" for name, value in body.items() if value is not None)
    notifications.notify(session, party=SECRETARIAT_PARTY, kind=kind, subject=subject, body=text)
    return True
