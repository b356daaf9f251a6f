"""Webhook subscriptions of a Party's systems: subscribe (secret shown once), list, rotate the
secret (the new one shown once), unsubscribe."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from epix.api.deps import DatabaseDep, RequestContextDep, RowId, SettingsDep
from epix.api.openapi import refusals
from epix.api.security import require_roles
from epix.audit.context import url_for_audit
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.db.base import utcnow
from epix.delivery import webhooks
from epix.delivery.models import WebhookSubscription

DEFAULT_GRACE_SECONDS = 24 * 3600
MAX_GRACE_SECONDS = 7 * 24 * 3600

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
Subscriber = Annotated[
    Principal,
    Depends(
        require_roles(Role.MANAGEMENT_AUTHORITY, Role.CUSTOMS, Role.SECRETARIAT, Role.NODE_ADMIN)
    ),
]


class SubscriptionIn(BaseModel):
    url: str = Field(min_length=1, max_length=2000, examples=["https://ma.example.org/epix"])
    events: list[str] = Field(min_length=1, max_length=20, examples=[["message.received"]])


class SubscriptionOut(BaseModel):
    id: int
    party: str
    url: str
    events: list[str]
    created_at: datetime
    created_by: str
    previous_secret_valid_until: datetime | None = Field(
        description="After a secret rotation: until when deliveries also carry a signature "
        "under the replaced secret (a second v1= in X-EPIX-Signature); null otherwise."
    )

    @classmethod
    def of(cls, row: WebhookSubscription) -> SubscriptionOut:
        return cls(
            id=row.id,
            party=row.party,
            url=row.url,
            events=list(row.events),
            created_at=row.created_at,
            created_by=row.created_by,
            previous_secret_valid_until=webhooks.previous_secret_valid_until(row, utcnow()),
        )


class CreatedSubscriptionOut(SubscriptionOut):
    secret: str = Field(
        description="HMAC-SHA256 key for X-EPIX-Signature; shown only in this answer."
    )


@router.post(
    "",
    summary="Subscribe a URL to events",
    openapi_extra=refusals("EPIX-DLV-004", "EPIX-DLV-007"),
    status_code=201,
    response_model=CreatedSubscriptionOut,
)
def subscribe(
    body: SubscriptionIn,
    principal: Subscriber,
    database: DatabaseDep,
    settings: SettingsDep,
    request: RequestContextDep,
) -> CreatedSubscriptionOut:
    """Subscribe a URL of your Party's system to events; keep the returned secret."""
    with database.unit_of_work() as session:
        created = webhooks.create_subscription(
            session,
            party=principal.party,
            url=body.url,
            events=body.events,
            created_by=principal.username,
            node_base_url=settings.node_base_url,
            secret_key=webhooks.webhook_key(settings),
            allow_private_addresses=settings.webhook_allow_private_addresses,
        )
        row = created.subscription
        record_event(
            session,
            action="webhook.subscribed",
            outcome="ok",
            actor=principal,
            party=principal.party,
            request=request,
            detail={
                "subscription_id": row.id,
                "url": url_for_audit(row.url),
                "events": list(row.events),
            },
        )
        return CreatedSubscriptionOut(**SubscriptionOut.of(row).model_dump(), secret=created.secret)


class SecretRotationIn(BaseModel):
    grace_seconds: int = Field(
        default=DEFAULT_GRACE_SECONDS,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="How long deliveries stay signed with the replaced secret too, so your "
        "system can switch to the new one without refusing any; 0 if the old one leaked.",
        examples=[3600],
    )


@router.get("", summary="List your Party's subscriptions", response_model=list[SubscriptionOut])
def list_subscriptions(principal: Subscriber, database: DatabaseDep) -> list[SubscriptionOut]:
    """Your Party's active subscriptions (secrets are never shown again)."""
    with database.unit_of_work() as session:
        rows = webhooks.list_subscriptions(session, party=principal.party)
        return [SubscriptionOut.of(row) for row in rows]


@router.post(
    "/{subscription_id}/secret",
    summary="Rotate a subscription's secret",
    openapi_extra=refusals("EPIX-DLV-009"),
    response_model=CreatedSubscriptionOut,
)
def rotate_secret(
    subscription_id: RowId,
    principal: Subscriber,
    database: DatabaseDep,
    settings: SettingsDep,
    request: RequestContextDep,
    body: SecretRotationIn | None = None,
) -> CreatedSubscriptionOut:
    """Issue a new secret for your subscription; keep it (it is shown only in this answer).

    Until ``previous_secret_valid_until`` each delivery carries signatures under both the new
    and the replaced secret (``t=...,v1=<new>,v1=<old>``); after it, only the new one.
    """
    grace_seconds = (body or SecretRotationIn()).grace_seconds
    with database.unit_of_work() as session:
        rotated = webhooks.rotate_secret(
            session,
            subscription_id,
            party=principal.party,
            secret_key=webhooks.webhook_key(settings),
            grace_seconds=grace_seconds,
        )
        row = SubscriptionOut.of(rotated.subscription)
        record_event(
            session,
            action="webhook.secret_rotated",
            outcome="ok",
            actor=principal,
            party=principal.party,
            request=request,
            detail={
                "subscription_id": row.id,
                "url": url_for_audit(row.url),
                "previous_secret_valid_until": row.previous_secret_valid_until.isoformat()
                if row.previous_secret_valid_until
                else None,
            },
        )
        return CreatedSubscriptionOut(**row.model_dump(), secret=rotated.secret)


@router.delete(
    "/{subscription_id}",
    summary="Stop a subscription",
    openapi_extra=refusals("EPIX-DLV-009"),
    status_code=204,
)
def unsubscribe(
    subscription_id: RowId,
    principal: Subscriber,
    database: DatabaseDep,
    request: RequestContextDep,
) -> Response:
    """Stop a subscription; its queued deliveries are dropped at their next attempt."""
    with database.unit_of_work() as session:
        row = webhooks.disable_subscription(session, subscription_id, party=principal.party)
        record_event(
            session,
            action="webhook.unsubscribed",
            outcome="ok",
            actor=principal,
            party=principal.party,
            request=request,
            detail={"subscription_id": row.id, "url": url_for_audit(row.url)},
        )
    return Response(status_code=204)
