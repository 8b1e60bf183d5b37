"""The quality dashboard page: centre managers see their centre, administrators every centre."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ehospital.auth.models import Role
from ehospital.kit.errors import DomainError
from ehospital.quality.schemas import Dashboard, DayStats, Stats
from ehospital.quality.service import QualityService, dashboard_csv
from ehospital.web.common import QualityWeb, Web
from ehospital.web.forms import domain_message
from ehospital.web.i18n import Translator

router = APIRouter(include_in_schema=False)

Param = Annotated[str | None, Query(max_length=64)]
# The daily chart: one column per day, the 90th percentile drawn behind the median.
CHART_HEIGHT = 140
COLUMN = 30
BAR = 20


def duration(t: Translator, seconds: float | None) -> str:
    """A first-response time a manager reads at a glance: 45 s, 4.5 min, 38 min, 2 h 05 min."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return t("quality.dur.s", n=round(seconds))
    minutes = seconds / 60
    if minutes < 10:
        return t("quality.dur.min", n=f"{minutes:.1f}")
    if minutes < 60:
        return t("quality.dur.min", n=round(minutes))
    whole = round(minutes)
    return t("quality.dur.h", h=whole // 60, m=f"{whole % 60:02d}")


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


@dataclass(frozen=True)
class Column:
    """One day of the chart, in the SVG's units."""

    x: float
    label: str
    title: str
    p50_y: float
    p50_h: float
    p90_y: float
    p90_h: float


def _tick(day: date, index: int, count: int) -> str:
    """The day under a column: month and day where a month starts, the day otherwise; a long
    period labels only the 1st and 15th."""
    if index == 0 or day.day == 1:
        return day.strftime("%m-%d")
    if count > 62:
        return day.strftime("%d") if day.day == 15 else ""
    return day.strftime("%d")


def chart(t: Translator, days: list[DayStats]) -> dict[str, Any]:
    """Bars of the daily median and 90th percentile first response, scaled to the highest."""
    top = max((d.first_response_p90_s or 0.0 for d in days), default=0.0)
    columns = []
    for i, d in enumerate(days):
        p50 = d.first_response_p50_s or 0.0
        p90 = d.first_response_p90_s or 0.0
        h50 = CHART_HEIGHT * p50 / top if top else 0.0
        h90 = CHART_HEIGHT * p90 / top if top else 0.0
        title = t(
            "quality.chart.bar",
            day=d.day.isoformat(),
            p50=duration(t, d.first_response_p50_s),
            p90=duration(t, d.first_response_p90_s),
            n=d.answered,
        )
        columns.append(
            Column(
                x=i * COLUMN + (COLUMN - BAR) / 2,
                label=_tick(d.day, i, len(days)),
                title=title,
                p50_y=round(CHART_HEIGHT - h50, 2),
                p50_h=round(h50, 2),
                p90_y=round(CHART_HEIGHT - h90, 2),
                p90_h=round(h90, 2),
            )
        )
    return {
        "columns": columns,
        "width": max(len(days), 1) * COLUMN,
        "height": CHART_HEIGHT,
        "bar": BAR,
        "top": duration(t, top) if top else "",
        "empty": top == 0,
    }


def _row(t: Translator, s: Stats) -> dict[str, Any]:
    return {
        "requested": s.requested,
        "completed": percent(s.completion_rate),
        "expired": percent(s.expiry_rate),
        "cancelled": percent(s.cancellation_rate),
        "counts": t(
            "quality.counts",
            completed=s.completed,
            expired=s.expired,
            cancelled=s.cancelled,
            terminated=s.terminated,
        ),
        "open": s.open,
        "answered": s.answered,
        "p50": duration(t, s.first_response_p50_s),
        "p90": duration(t, s.first_response_p90_s),
        "p95": duration(t, s.first_response_p95_s),
        "refunds": s.refunds,
        "refund_cents": s.refund_cents,
    }


def _view(web: Web, d: Dashboard) -> dict[str, Any]:
    t = web.t
    name = {c.id: (c.name_zh if web.lang == "zh" else c.name_en) for c in d.centres}
    return {
        "totals": _row(t, d.totals),
        "days": [{"day": x.day.isoformat(), **_row(t, x)} for x in d.days],
        "centres": [
            {"id": c.centre.id, "code": c.centre.code, "name": name[c.centre.id], **_row(t, c.totals)}
            for c in d.by_centre
        ],
        "doctors": [
            {
                "id": x.doctor_id,
                "name": x.name,
                "centre": name.get(x.centre_id, ""),
                "accepted": x.accepted,
                "completed": x.completed,
                "messages": x.messages,
                "answered": x.answered,
                "median": duration(t, x.first_response_p50_s),
                "open_now": x.open_now,
            }
            for x in d.doctors
        ],
        "chart": chart(t, d.days),
    }


@router.get("/manage/quality")
async def quality(
    web: QualityWeb,
    first: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=32)] = None,
    centre: Param = None,
) -> Response:
    """First responses, outcomes, refunds and workload by day, centre and doctor."""
    service = QualityService(web.session)
    choices = (await service.scope(web.me))[0]
    form = {"from": first or "", "to": last or "", "centre": centre or ""}
    try:
        dashboard = await service.dashboard(web.me, first=first, last=last, centre=centre)
    except DomainError as exc:
        return web.render(
            "manage_quality.html",
            status_code=exc.status_code,
            form=form,
            error=domain_message(web.t, exc.code, exc.message),
            error_code=exc.code,
            dash=None,
            choices=choices,
            all_centres=web.me.role is Role.ADMIN,
            csv_url="",
        )
    form["from"], form["to"] = dashboard.first_day.isoformat(), dashboard.last_day.isoformat()
    query = urlencode({k: v for k, v in form.items() if v})
    return web.render(
        "manage_quality.html",
        form=form,
        error=None,
        error_code=None,
        dash=_view(web, dashboard),
        choices=choices,
        all_centres=web.me.role is Role.ADMIN,
        csv_url=f"/manage/quality.csv?{query}",
        period=dashboard,
    )


@router.get("/manage/quality.csv")
async def quality_csv(
    web: QualityWeb,
    first: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=32)] = None,
    centre: Param = None,
) -> Response:
    """The page's figures as CSV, one row per day and centre."""
    result = await QualityService(web.session).dashboard(web.me, first=first, last=last, centre=centre)
    name = f"quality-{result.first_day.isoformat()}-{result.last_day.isoformat()}.csv"
    response = Response(
        dashboard_csv(result),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
    return web.finish(response)
