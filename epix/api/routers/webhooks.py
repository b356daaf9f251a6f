"""Webhook subscriptions of a Party's systems: subscribe (secret shown once), list, unsubscribe."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from epix.api.deps import DatabaseDep, RequestContextDep, RowId, SettingsDep
from epix.api.security import require_roles
from epix.audit.service import record_event
from epix.auth.principal import Principal, Role
from epix.delivery import webhooks
from epix.delivery.models import WebhookSubscription

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

    @classmethod
    def of(cls, row: WebhookSubscription) -> SubscriptionOut:
        return cls(
            id=row.id,
            party=row.party,
            url=row.url,
            events=list(row.events),
            created_at=row.created_at,
            created_by=row.created_by,
        )


class CreatedSubscriptionOut(SubscriptionOut):
    secret: str = Field(
        description="HMAC-SHA256 key for X-EPIX-Signature; shown only in this answer."
    )


@router.post("", status_code=201, response_model=CreatedSubscriptionOut)
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
            detail={"subscription_id": row.id, "url": row.url, "events": list(row.events)},
        )
        return CreatedSubscriptionOut(**SubscriptionOut.of(row).model_dump(), secret=created.secret)


@router.get("", response_model=list[SubscriptionOut])
def list_subscriptions(principal: Subscriber, database: DatabaseDep) -> list[SubscriptionOut]:
    """Your Party's active subscriptions (secrets are never shown again)."""
    with database.unit_of_work() as session:
        rows = webhooks.list_subscriptions(session, party=principal.party)
        return [SubscriptionOut.of(row) for row in rows]


@router.delete("/{subscription_id}", status_code=204)
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
            detail={"subscription_id": row.id, "url": row.url},
        )
    return Response(status_code=204)
