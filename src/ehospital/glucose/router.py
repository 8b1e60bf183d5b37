"""The glucose API: devices, uploads (our JSON, FHIR Observations), readings, alerts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ehospital.deps import CurrentActor, RuntimeDep, SessionDep, get_actor
from ehospital.glucose.alerting import AlertService, value_of
from ehospital.glucose.care import CareService, plan_read
from ehospital.glucose.ingest import MAX_ITEMS, Batch, ItemError, Rejected, parse_fhir, parse_items
from ehospital.glucose.metrics import MGDL_PER_MMOL
from ehospital.glucose.models import Alert, Device
from ehospital.glucose.render import render_page, render_pdf
from ehospital.glucose.schemas import (
    AlertRead,
    CarePlanIn,
    CarePlanRead,
    DeviceCreate,
    DeviceRead,
    DeviceRegistered,
    SnoozeIn,
)
from ehospital.glucose.service import DeviceKey, GlucoseService, api_secret_of, defaults_of
from ehospital.kit.context import Actor
from ehospital.kit.errors import BadRequest, NotFound, PayloadTooLarge, Unprocessable
from ehospital.kit.models import utcnow
from ehospital.kit.schemas import IdPath

router = APIRouter(tags=["glucose"])

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MQTT_TOPIC = "ehospital/glucose/{uid}/readings"
DeviceUid = Annotated[str, Query(min_length=1, max_length=40)]


def device_read(device: Device) -> DeviceRead:
    return DeviceRead(
        uid=device.uid,
        patient_id=device.patient_id,
        kind=device.kind,
        label=device.label,
        unit=device.unit,
        utc_offset_minutes=device.utc_offset_minutes,
        created_at=device.created_at,
        last_reading_at=device.last_reading_at,
        retired_at=device.retired_at,
    )


def alert_read(alert: Alert) -> AlertRead:
    mgdl = value_of(alert)
    return AlertRead(
        id=alert.id,
        patient_id=alert.patient_id,
        condition=alert.condition,
        status=alert.status,
        began_at=alert.began_at,
        value=None
        if mgdl is None
        else round(mgdl / MGDL_PER_MMOL, 1)
        if alert.unit == "mmol/L"
        else round(mgdl),
        unit=alert.unit,
        value_mgdl=mgdl,
        raised_at=alert.raised_at,
        snoozed_until=alert.snoozed_until,
        acknowledged_at=alert.acknowledged_at,
        resolved_at=alert.resolved_at,
    )


async def read_json_body(request: Request, limit: int = MAX_UPLOAD_BYTES) -> Any:
    """The body as JSON, refused early when it is too large (413) or not JSON (400)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"uploads are limited to {limit} bytes", code="upload_too_large", limit=limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(
                f"uploads are limited to {limit} bytes", code="upload_too_large", limit=limit
            )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON", code="malformed_json") from None


async def optional_actor(request: Request, session: SessionDep, runtime: RuntimeDep) -> Actor | None:
    """The bearer token's account when one is sent (uploads may instead carry an api-secret)."""
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return await get_actor(request, session, runtime, header[7:].strip())


@router.post(
    "/api/v1/patients/{patient_id}/glucose/devices",
    response_model=DeviceRegistered,
    status_code=status.HTTP_201_CREATED,
)
async def register_device(
    patient_id: IdPath, data: DeviceCreate, actor: CurrentActor, session: SessionDep
) -> DeviceRegistered:
    """Register a meter or CGM to a member of your family. The answer holds the device's
    secret, shown this once: configure the uploader with it (Nightscout uploaders: the
    `api_secret`, which is its SHA-1)."""
    device, secret = await GlucoseService(session).register_device(actor, patient_id, data)
    return DeviceRegistered(
        **device_read(device).model_dump(),
        secret=secret,
        api_secret=api_secret_of(secret),
        mqtt_topic=MQTT_TOPIC.format(uid=device.uid),
    )


@router.get("/api/v1/patients/{patient_id}/glucose/devices", response_model=list[DeviceRead])
async def list_devices(patient_id: IdPath, actor: CurrentActor, session: SessionDep) -> list[DeviceRead]:
    """A patient's devices (their family, or their doctors)."""
    return [device_read(d) for d in await GlucoseService(session).devices(actor, patient_id)]


@router.post("/api/v1/glucose/devices/{uid}/retire", response_model=DeviceRead)
async def retire_device(uid: str, actor: CurrentActor, session: SessionDep) -> DeviceRead:
    """Stop accepting uploads from a device (lost, replaced); its readings are kept."""
    return device_read(await GlucoseService(session).retire_device(actor, uid[:40]))


def parse_upload(body: Any, device: DeviceKey, now: datetime) -> tuple[Batch, list[ItemError], int]:
    """Our JSON (an array, or `{"readings": [...]}`) or FHIR (a Bundle or one Observation)."""
    defaults = defaults_of(device)
    if isinstance(body, dict) and "resourceType" in body:
        try:
            found, bad = parse_fhir(body, defaults, now)
        except Rejected as exc:
            raise Unprocessable(exc.message, code=exc.code) from None
        good = Batch.of(found)
        received = len(good) + len(bad)
    else:
        items = body.get("readings") if isinstance(body, dict) and body.keys() == {"readings"} else body
        if not isinstance(items, list):
            raise Unprocessable(
                'expected a JSON array of readings, {"readings": [...]}, or a FHIR Bundle of Observations',
                code="invalid_upload",
            )
        received = len(items)
        if received > MAX_ITEMS:
            raise PayloadTooLarge(
                f"at most {MAX_ITEMS} readings per upload", code="too_many_readings", limit=MAX_ITEMS
            )
        good, bad = parse_items(items, defaults, now)
    return good, bad, received


@router.post("/api/v1/glucose/devices/{uid}/readings")
async def upload_readings(
    uid: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    api_secret: Annotated[str | None, Header(alias="api-secret")] = None,
) -> JSONResponse:
    """Upload readings of a device, in bulk: a JSON array of `{"time": ISO 8601 with offset,
    "value": n, "unit"?: "mg/dL"|"mmol/L", "kind"?: "cgm"|"smbg"}` or a FHIR R4 Bundle of glucose
    Observations (LOINC 99504-3, 105272-9, 41653-7, 14743-9). Authenticated by the patient's
    bearer token or the device's `api-secret` header.

    Each item is judged on its own: the answer counts what was stored, what was already stored
    (a retried upload stores nothing twice) and lists the rejected items by index with a code.
    422 only when no item at all was acceptable."""
    actor = await optional_actor(request, session, runtime)
    service = GlucoseService(session)
    # With a device checked recently, nothing here touches the database until the readings are
    # parsed: SQLite serves one transaction at a time, and parsing is a third of the work.
    device = await service.uploading_device(actor, uid[:40], api_secret, runtime.settings.token_cache_seconds)
    now = utcnow()
    body = await read_json_body(request)
    good, bad, received = parse_upload(body, device, now)
    if bad and not len(good):
        raise Unprocessable(
            "no reading in the upload was acceptable",
            code="no_valid_readings",
            errors=[e.as_dict() for e in bad[:100]],
        )
    source = "fhir" if isinstance(body, dict) and "resourceType" in body else "api"
    result = await service.ingest(device, source, good, bad, received, now)
    return JSONResponse(result.as_dict())


@router.get("/api/v1/patients/{patient_id}/glucose/readings")
async def list_readings(
    patient_id: IdPath,
    actor: CurrentActor,
    session: SessionDep,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[str, Any]:
    """A patient's readings (default: the last 24 hours), oldest first: the instant in UTC, the
    local time where it was measured, mg/dL, and the value in the unit it was measured in."""
    end = end or utcnow()
    start = start or end - timedelta(days=1)
    if start.tzinfo is None or end.tzinfo is None:
        raise Unprocessable("start and end need a UTC offset", code="naive_time")
    if end - start > timedelta(days=92) or end <= start:
        raise Unprocessable("the window must be positive and at most 92 days", code="invalid_window")
    _, rows = await GlucoseService(session).series(actor, patient_id, start, end)
    return {
        "patient_id": patient_id,
        "start": start,
        "end": end,
        "readings": [
            {
                "time": datetime.fromtimestamp(t, start.tzinfo).isoformat(),
                "utc_offset_minutes": int(o),
                "mgdl": round(float(g), 1),
                "value": round(float(g) / MGDL_PER_MMOL, 1) if u == "mmol/L" else round(float(g), 1),
                "unit": u,
            }
            for t, o, g, u in zip(rows.times, rows.offsets, rows.mgdl, rows.units, strict=True)
        ],
    }


@router.get("/api/v1/patients/{patient_id}/glucose/alerts", response_model=list[AlertRead])
async def list_alerts(
    patient_id: IdPath,
    actor: CurrentActor,
    session: SessionDep,
    live: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AlertRead]:
    """A patient's glucose alerts, newest first (`live=true`: those not yet ended)."""
    found = await AlertService(session).alerts(actor, patient_id, live_only=live, limit=limit)
    return [alert_read(a) for a in found]


@router.post("/api/v1/glucose/alerts/{alert_id}/acknowledge", response_model=AlertRead)
async def acknowledge_alert(alert_id: IdPath, actor: CurrentActor, session: SessionDep) -> AlertRead:
    """Seen: stop repeating it (it stays until the condition ends)."""
    return alert_read(await AlertService(session).acknowledge(actor, alert_id))


@router.post("/api/v1/glucose/alerts/{alert_id}/snooze", response_model=AlertRead)
async def snooze_alert(
    alert_id: IdPath, data: SnoozeIn, actor: CurrentActor, session: SessionDep
) -> AlertRead:
    """No repeats for `minutes` (5 to 1440)."""
    return alert_read(await AlertService(session).snooze(actor, alert_id, data.minutes))


# --- care plans, reports, the doctor's dashboard ----------------------------------------------


@router.put(
    "/api/v1/patients/{patient_id}/care-plan",
    response_model=CarePlanRead,
    status_code=status.HTTP_201_CREATED,
)
async def write_care_plan(
    patient_id: IdPath, data: CarePlanIn, actor: CurrentActor, session: SessionDep
) -> CarePlanRead:
    """A doctor who has seen the patient writes a new version of their care plan: targets
    (`standard`, `older_high_risk`, `pregnancy_t1`), the unit and time zone the patient lives
    in, alert thresholds, reminders, diet, exercise, medications. Earlier versions are kept."""
    plan, doctor = await CareService(session).write_plan(actor, patient_id, data)
    return plan_read(plan, doctor)


@router.get("/api/v1/patients/{patient_id}/care-plan", response_model=CarePlanRead)
async def current_care_plan(patient_id: IdPath, actor: CurrentActor, session: SessionDep) -> CarePlanRead:
    """The current version of the patient's care plan (404 `no_care_plan` before the first)."""
    plans = await CareService(session).plans(actor, patient_id)
    if not plans:
        raise NotFound("no care plan has been written for this patient", code="no_care_plan")
    return plan_read(*plans[0])


@router.get("/api/v1/patients/{patient_id}/care-plan/history", response_model=list[CarePlanRead])
async def care_plan_history(
    patient_id: IdPath, actor: CurrentActor, session: SessionDep
) -> list[CarePlanRead]:
    """Every version of the care plan, newest first."""
    return [plan_read(p, d) for p, d in await CareService(session).plans(actor, patient_id)]


REPORT_PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@router.get("/api/v1/patients/{patient_id}/glucose/report", response_model=None)
async def glucose_report(
    patient_id: IdPath,
    actor: CurrentActor,
    session: SessionDep,
    days: Annotated[int, Query(ge=1, le=90)] = 14,
    end: datetime | None = None,
    lang: Literal["zh", "en"] = "zh",
    format: Literal["json", "html", "pdf"] = "json",
) -> Response:
    """The Ambulatory Glucose Profile report of the `days` days up to `end` (default now):
    consensus table with targets, data sufficiency, AGP percentiles, daily profiles, time in
    ranges, episodes and a plain-language summary; as JSON, a standalone HTML page with SVG
    charts, or a PDF."""
    if end is not None and end.tzinfo is None:
        raise Unprocessable("end needs a UTC offset", code="naive_time")
    report = await CareService(session).report(actor, patient_id, end, days, lang)
    if format == "html":
        return HTMLResponse(
            render_page(report),
            headers={"Content-Security-Policy": REPORT_PAGE_CSP, "Cache-Control": "private, no-store"},
        )
    if format == "pdf":
        return Response(
            render_pdf(report),
            media_type="application/pdf",
            headers={
                "Content-Disposition": f'inline; filename="glucose-report-{patient_id}.pdf"',
                "Cache-Control": "private, no-store",
            },
        )
    return JSONResponse(report.as_dict())


@router.get("/api/v1/glucose/dashboard")
async def glucose_dashboard(actor: CurrentActor, session: SessionDep) -> list[dict[str, Any]]:
    """The doctor's diabetic patients (whose current care plan they wrote), riskiest first,
    with the headline figures of the last 14 days."""
    return await CareService(session).dashboard(actor)
