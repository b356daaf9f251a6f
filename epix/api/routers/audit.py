"""The audit trail for node operators: ``GET /v1/audit/verify``, ``POST /v1/audit/checkpoints``.

The same checks as ``epix audit verify`` and ``epix audit checkpoint``, for operators who run
the node without a shell on its machine. Node administrators only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from epix.api.deps import DatabaseDep, RequestContextDep, SettingsDep
from epix.api.security import require_roles
from epix.audit.checkpoints import create_checkpoint, sign_pending_checkpoints
from epix.audit.service import format_time
from epix.audit.signing import certificate_fingerprint, node_checkpoint_signer
from epix.audit.verify import verify_chain
from epix.auth.principal import Principal, Role

router = APIRouter(prefix="/v1/audit", tags=["audit"])
NodeAdmin = Annotated[Principal, Depends(require_roles(Role.NODE_ADMIN))]


@router.get("/verify", summary="Verify the audit chain")
def verify(principal: NodeAdmin, settings: SettingsDep, database: DatabaseDep) -> dict[str, Any]:
    """Check every event and checkpoint against this node's key; ``ok`` false names the first
    broken event (the same report as ``epix audit verify``)."""
    fingerprint = certificate_fingerprint(node_checkpoint_signer(settings).cert_pem)
    with database.read() as session:
        report = verify_chain(
            session,
            trusted_fingerprints=[fingerprint],
            checkpoint_every=settings.audit_checkpoint_every,
        )
    return {
        "ok": report.ok,
        "events_checked": report.events_checked,
        "first_sequence": report.first_sequence,
        "last_sequence": report.last_sequence,
        "checkpoints_verified": report.checkpoints_verified,
        "checkpoints_pending": report.checkpoints_pending,
        "broken_at": report.broken_at,
        "findings": [finding.as_dict() for finding in report.findings],
    }


@router.post("/checkpoints", summary="Sign an audit checkpoint at the head", status_code=201)
def checkpoint(
    principal: NodeAdmin,
    settings: SettingsDep,
    database: DatabaseDep,
    context: RequestContextDep,
) -> dict[str, Any]:
    """Sign any checkpoints still unsigned and one at the current head, with the node key."""
    signer = node_checkpoint_signer(settings)
    with database.unit_of_work() as session:
        signed = sign_pending_checkpoints(session, signer)
        made = create_checkpoint(session, signer, actor=principal, request=context)
        answer = {
            "sequence": made.sequence,
            "head_hash": made.head_hash,
            "created_at": format_time(made.created_at),
            "certificate_sha256": certificate_fingerprint(signer.cert_pem),
            "pending_signed": signed,
        }
    return answer
