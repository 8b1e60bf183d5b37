"""The quality dashboard for centre managers (their centre) and administrators (every centre)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ehospital.deps import CurrentActor, SessionDep
from ehospital.quality.schemas import Dashboard
from ehospital.quality.service import QualityService, dashboard_csv

router = APIRouter(prefix="/api/v1/quality", tags=["quality"])

From = Annotated[
    str | None, Query(alias="from", max_length=32, description="first day, YYYY-MM-DD (China time)")
]
To = Annotated[
    str | None, Query(alias="to", max_length=32, description="last day, YYYY-MM-DD; default today")
]
CentreParam = Annotated[
    str | None, Query(max_length=64, description="a centre's id or code; default every centre you manage")
]


@router.get("/dashboard", response_model=Dashboard)
async def dashboard(
    actor: CurrentActor, session: SessionDep, first: From = None, last: To = None, centre: CentreParam = None
) -> Dashboard:
    """First-response percentiles, outcome rates, refunds and doctors' workload by day and centre."""
    return await QualityService(session).dashboard(actor, first=first, last=last, centre=centre)


@router.get("/dashboard.csv", response_class=Response)
async def dashboard_as_csv(
    actor: CurrentActor, session: SessionDep, first: From = None, last: To = None, centre: CentreParam = None
) -> Response:
    """The dashboard's figures as CSV, one row per day and centre."""
    result = await QualityService(session).dashboard(actor, first=first, last=last, centre=centre)
    name = f"quality-{result.first_day.isoformat()}-{result.last_day.isoformat()}.csv"
    return Response(
        dashboard_csv(result),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
    )
