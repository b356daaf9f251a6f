"""Notifications: a message from the node itself into a Party's inbox.

Used when a user of a Party is disabled (the Secretariat's inbox, Party ``CITES``, must be told)
and for permit status changes. Runs in the caller's transaction, so the notification exists
exactly when the change that caused it does.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from epix.exchange.inbox import put_notification


def notify(session: Session, *, party: str, kind: str, subject: str, body: str | bytes) -> None:
    """Put a notification into ``party``'s inbox: bytes are XML, text is stored as plain text."""
    if isinstance(body, bytes):
        payload, content_type = body, "application/xml"
    else:
        payload, content_type = body.encode("utf-8"), "text/plain; charset=utf-8"
    put_notification(
        session,
        party=party,
        kind=kind,
        subject=subject,
        payload=payload,
        content_type=content_type,
    )
