"""A Party's annual-report trade data (Art. VIII.7): ``GET /v1/reports/annual/{party}/{year}``.

For the Secretariat (any Party) and a Party's Management Authority (its own). Each read is
audited: the report shows every permit of the Party in the year.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from epix.api.deps import DatabaseDep, RequestContextDep
from epix.api.openapi import refusals
from epix.api.security import require_roles
from epix.auth.principal import Principal, Role
from epix.reports.annual import read_annual_report

router = APIRouter(prefix="/v1/reports", tags=["reports"])
Reader = Annotated[Principal, Depends(require_roles(Role.SECRETARIAT, Role.MANAGEMENT_AUTHORITY))]
PartyCode = Annotated[str, Path(min_length=2, max_length=8, pattern="^[A-Za-z]+$")]


@router.get(
    "/annual/{party}/{year}",
    summary="A Party's annual-report trade data",
    openapi_extra=refusals("EPIX-AUTH-005"),
    responses={
        200: {
            "description": "The report: JSON, or the trade records as CSV with `format=csv`.",
            "content": {"application/json": {}, "text/csv": {}},
        }
    },
)
def annual(
    party: PartyCode,
    year: Annotated[int, Path(description="The calendar year reported (1975 to this year).")],
    principal: Reader,
    database: DatabaseDep,
    context: RequestContextDep,
    output: Annotated[
        Literal["json", "csv"], Query(alias="format", description="json, or csv for the records.")
    ] = "json",
) -> Any:
    """Number and type of permits the Party granted in the year, and one trade record per
    permit line it exported, re-exported or imported, each saying whether its quantity was
    endorsed at the border or is what the permit allowed (Res. Conf. 11.17; an Appendix I
    shipment whose import permit was endorsed beside its export document is imported once, on
    that document), and the year's use of each published export quota summed across permits
    (`quota_use`). Only permits exchanged through this node are covered."""
    report = read_annual_report(
        database, party, year, reader=principal, request=context, output=output
    )
    if output == "csv":
        return Response(
            report.to_csv(),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="{party.upper()}-{year}-annual-report.csv"'
                )
            },
        )
    return report.as_dict()
