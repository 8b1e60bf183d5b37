"""Glucose care pages: a family member's readings, report, alerts, care plan and devices for the
patient; the risk-ordered dashboard and a patient's report with the care-plan editor for the doctor.

They call the glucose services exactly as the JSON API does (ehospital.glucose.router); the full
report is also offered as the standalone HTML page and the PDF, behind the session cookie."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from pydantic import ValidationError
from starlette.datastructures import FormData

from ehospital.consultations.service import ConsultationService
from ehospital.glucose.alerting import AlertService, shown
from ehospital.glucose.alerts import Thresholds
from ehospital.glucose.care import CareService, plan_read
from ehospital.glucose.metrics import MGDL_PER_MMOL
from ehospital.glucose.models import Alert, Device
from ehospital.glucose.render import render_fragment, render_page, render_pdf
from ehospital.glucose.report import PRESETS, format_glucose, format_threshold, targets_for, threshold
from ehospital.glucose.router import MQTT_TOPIC, REPORT_PAGE_CSP
from ehospital.glucose.schemas import CarePlanIn, CarePlanRead, DeviceCreate, SnoozeIn
from ehospital.glucose.service import GlucoseService, api_secret_of
from ehospital.kit.errors import DomainError
from ehospital.kit.models import utcnow
from ehospital.notifications.service import NotificationService
from ehospital.patients.models import Patient, Relationship
from ehospital.patients.service import PatientService
from ehospital.web.common import (
    CSRF_FIELD,
    CareWeb,
    DoctorWeb,
    PatientWeb,
    PostedForm,
    Web,
    WebDep,
)
from ehospital.web.forms import EMPTY, FormState, failed, field_error, invalid, text, values_of
from ehospital.web.i18n import Translator
from ehospital.web.pages.shared import MAX_ID

router = APIRouter(include_in_schema=False)

PatientId = Annotated[int, Path(ge=1, le=MAX_ID)]
DEFAULT_ZONE = "Asia/Shanghai"
REPORT_DAYS = 14
UNITS = ("mmol/L", "mg/dL")
REMINDER_KINDS = ("measure", "medication", "meal", "exercise")
SNOOZE_MINUTES = (15, 30, 60, 120, 240)
DEVICE_FIELDS = ("kind", "label", "unit", "utc_offset_minutes")
# The care plan form: one row per reminder and medication, a few empty ones to add to.
MAX_REMINDERS = 24
MAX_MEDICATIONS = 20
SPARE_ROWS = 2
MIN_REMINDER_ROWS = 4
MIN_MEDICATION_ROWS = 3
# A row counts when one of these is filled (a select always posts a value).
REMINDER_TEXT_FIELDS = ("rem_time", "rem_note")
MEDICATION_TEXT_FIELDS = ("med_name", "med_dose", "med_times")
PLAN_MAX_FIELDS = 20 + 3 * MAX_REMINDERS + 4 * MAX_MEDICATIONS
# Threshold fields in the glucose unit the form was drawn in (the others are minutes).
GLUCOSE_THRESHOLDS = ("urgent_low", "low", "sustained_high", "high")
MINUTE_THRESHOLDS = ("sustained_minutes", "no_data_minutes")
THRESHOLD_FIELDS = (*GLUCOSE_THRESHOLDS, "rapid_fall", *MINUTE_THRESHOLDS)
PLAN_FIELDS = (
    "targets",
    "unit",
    "timezone",
    "thresholds_unit",
    *THRESHOLD_FIELDS,
    "diet",
    "exercise",
    "note",
)
COMMON_ZONES = (
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Tokyo",
    "Asia/Singapore",
    "Europe/London",
    "Europe/Paris",
    "America/New_York",
    "America/Los_Angeles",
    "Australia/Sydney",
)
_TIMES_SPLIT = re.compile(r"[\s,，、;；]+")


# --- shared pieces --------------------------------------------------------------------------------


def _local(value: datetime | None, zone: ZoneInfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return "" if value is None else value.astimezone(zone).strftime(fmt)


def _zone(plan: CarePlanRead | None) -> ZoneInfo:
    return ZoneInfo(plan.timezone if plan else DEFAULT_ZONE)


def _percent(value: object) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "—"
    return f"{value:.1f}%"


@dataclass(frozen=True)
class AlertView:
    id: int
    condition: str
    status: str
    value: str
    began: str
    raised: str
    snoozed_until: str
    acknowledged: str


# Live alerts are listed most urgent first.
_URGENCY = ("urgent_low", "low", "rapid_fall", "no_data", "sustained_high", "high")


def _urgency(condition: str) -> int:
    return _URGENCY.index(condition) if condition in _URGENCY else len(_URGENCY)


def _alert_views(alerts: Sequence[Alert], zone: ZoneInfo, now: datetime) -> list[AlertView]:
    views = []
    for a in sorted(alerts, key=lambda a: _urgency(a.condition)):
        value = a.value_mgdl
        views.append(
            AlertView(
                id=a.id,
                condition=a.condition,
                status=str(a.status),
                value="" if value is None or not math.isfinite(value) else shown(value, a.unit),
                began=_local(a.began_at, zone),
                raised=_local(a.raised_at, zone),
                snoozed_until=(
                    _local(a.snoozed_until, zone) if a.snoozed_until and a.snoozed_until > now else ""
                ),
                acknowledged=_local(a.acknowledged_at, zone),
            )
        )
    return views


def _report_links(patient_id: int, lang: str) -> dict[str, str]:
    return {
        "html": f"/glucose/{patient_id}/report.html?lang={lang}",
        "pdf": f"/glucose/{patient_id}/report.pdf?lang={lang}",
    }


async def _current_plan(web: Web, patient_id: int) -> tuple[CarePlanRead | None, list[CarePlanRead]]:
    history = [plan_read(p, d) for p, d in await CareService(web.session).plans(web.me, patient_id)]
    return (history[0] if history else None), history


async def _report_fragment(web: Web, patient_id: int, now: datetime) -> Markup:
    report = await CareService(web.session).report(web.me, patient_id, now, REPORT_DAYS, web.lang)
    return Markup(render_fragment(report))


def _plan_facts(t: Translator, plan: CarePlanRead) -> dict[str, Any]:
    """The plan as the pages show it: thresholds in the plan's unit, reminders by time."""
    th = Thresholds.of(plan.thresholds)
    unit = plan.unit
    rate = f"{th.rapid_fall / MGDL_PER_MMOL:.2f} mmol/L" if unit == "mmol/L" else f"{th.rapid_fall:g} mg/dL"
    targets = targets_for(plan.targets)
    return {
        "target_range": f"{format_threshold(targets.low, unit, with_unit=False)}–"
        f"{format_threshold(targets.high, unit)}",
        "thresholds": [
            (
                t("glucose.condition.urgent_low"),
                t("glucose.below", value=format_threshold(th.urgent_low, unit)),
            ),
            (t("glucose.condition.low"), t("glucose.below", value=format_threshold(th.low, unit))),
            (t("glucose.condition.high"), t("glucose.above", value=format_threshold(th.high, unit))),
            (
                t("glucose.condition.sustained_high"),
                t(
                    "glucose.above_for",
                    value=format_threshold(th.sustained_high, unit),
                    minutes=th.sustained_minutes,
                ),
            ),
            (t("glucose.condition.rapid_fall"), t("glucose.per_minute", value=rate)),
            (t("glucose.condition.no_data"), t("glucose.silent_for", n=th.no_data_minutes)),
        ],
        "reminders": sorted(plan.monitoring, key=lambda r: r.time),
    }


# --- the patient's page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadingView:
    time: str
    value: str
    band: str  # very_low | low | in_range | high | very_high


def _band(mgdl: float, low: float, high: float) -> str:
    if mgdl < 54.0:
        return "very_low"
    if mgdl < low:
        return "low"
    if mgdl > 250.0:
        return "very_high"
    if mgdl > high:
        return "high"
    return "in_range"


def _trend(times: Sequence[float], mgdl: Sequence[float]) -> str:
    """An arrow for the last quarter of an hour: ↑ / ↗ / → / ↘ / ↓ (mg/dL per minute 2 and 1)."""
    if len(times) < 2:
        return ""
    last_t, last_g = times[-1], mgdl[-1]
    for t, g in zip(reversed(times[:-1]), reversed(mgdl[:-1]), strict=True):
        minutes = (last_t - t) / 60.0
        if minutes >= 10.0:
            if minutes > 30.0:
                return ""
            rate = (last_g - g) / minutes
            if rate >= 2.0:
                return "↑"
            if rate >= 1.0:
                return "↗"
            if rate <= -2.0:
                return "↓"
            if rate <= -1.0:
                return "↘"
            return "→"
    return ""


async def _family(web: Web) -> list[Patient]:
    members = await PatientService(web.session).family(web.me)
    # The account holder first, then in the order they were added.
    return sorted(members, key=lambda p: (p.relationship != Relationship.SELF, p.id))


async def _patient_page(
    web: Web,
    patient_id: int | None,
    *,
    state: FormState = EMPTY,
    registered: Mapping[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    members = await _family(web)
    if patient_id is None:
        if not members:
            return web.render("glucose_patient.html", members=[], patient=None, here="/glucose")
        patient_id = members[0].id
        here = "/glucose"
    else:
        here = f"/glucose/{patient_id}"
    glucose = GlucoseService(web.session)
    patient = await glucose.patient(web.me, patient_id)  # 404 for anyone else's
    plan, _ = await _current_plan(web, patient.id)
    zone = _zone(plan)
    now = utcnow()
    midnight = datetime.combine(now.astimezone(zone).date(), time(0), zone)
    _, rows = await glucose.series(web.me, patient.id, midnight, now)
    devices = await glucose.devices(web.me, patient.id)
    unit = plan.unit if plan else rows.main_unit(devices[-1].unit if devices else "mmol/L")
    targets = targets_for(plan.targets if plan else "standard")
    times = rows.times.tolist()
    mgdl = rows.mgdl.tolist()
    readings = [
        ReadingView(
            time=datetime.fromtimestamp(s, zone).strftime("%H:%M"),
            value=format_glucose(g, unit, with_unit=False),
            band=_band(g, targets.low, targets.high),
        )
        for s, g in zip(reversed(times), reversed(mgdl), strict=True)
    ]
    latest: dict[str, str] | None = None
    if readings:
        latest = {
            "value": readings[0].value,
            "band": readings[0].band,
            "time": datetime.fromtimestamp(times[-1], zone).strftime("%Y-%m-%d %H:%M"),
            "trend": _trend(times, mgdl),
        }
    else:  # nothing today: the newest reading of the report's window, if any
        _, recent = await glucose.series(web.me, patient.id, now - timedelta(days=REPORT_DAYS), now)
        if recent.times.size:
            g = float(recent.mgdl[-1])
            latest = {
                "value": format_glucose(g, unit, with_unit=False),
                "band": _band(g, targets.low, targets.high),
                "time": datetime.fromtimestamp(float(recent.times[-1]), zone).strftime("%Y-%m-%d %H:%M"),
                "trend": "",
            }
    in_range = sum(1 for r in readings if r.band == "in_range")
    alerts = await AlertService(web.session).alerts(web.me, patient.id, live_only=True)
    inbox = await NotificationService(web.session).inbox(web.me, limit=50)
    notifications = [
        {"kind": n.kind, "title": n.title, "body": n.body, "time": _local(n.created_at, zone)}
        for n in inbox
        if n.patient_id == patient.id and n.kind in ("alert", "reminder", "report")
    ][:5]
    return web.render(
        "glucose_patient.html",
        members=members,
        patient=patient,
        plan=plan,
        facts=_plan_facts(web.t, plan) if plan else None,
        unit=unit,
        zone=zone.key,
        target_range=f"{format_threshold(targets.low, unit, with_unit=False)}–"
        f"{format_threshold(targets.high, unit)}",
        latest=latest,
        readings=readings,
        in_range_today=_percent(100.0 * in_range / len(readings)) if readings else "—",
        alerts=_alert_views(alerts, zone, now),
        snooze_minutes=SNOOZE_MINUTES,
        report=await _report_fragment(web, patient.id, now),
        links=_report_links(patient.id, web.lang),
        devices=[_device_view(d, zone) for d in devices],
        registered=registered,
        notifications=notifications,
        state=state,
        status_code=status_code,
        here=here,
        nav_current="/glucose",
    )


def _device_view(device: Device, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "uid": device.uid,
        "kind": device.kind,
        "label": device.label,
        "unit": device.unit,
        "created": _local(device.created_at, zone),
        "last_reading": _local(device.last_reading_at, zone),
        "retired": device.retired_at is not None,
    }


@router.get("/glucose")
async def my_glucose(web: PatientWeb) -> Response:
    """The account holder's glucose page (the others of the family are a tab away)."""
    return await _patient_page(web, None)


@router.get("/glucose/{patient_id}")
async def member_glucose(patient_id: PatientId, web: PatientWeb) -> Response:
    """Today's readings, live alerts, the 14-day report, the care plan and the devices."""
    return await _patient_page(web, patient_id)


@router.post("/glucose/{patient_id}/devices")
async def register_device(patient_id: PatientId, web: PatientWeb, form: PostedForm) -> Response:
    """Register a meter or CGM; the page shows its secret this once."""
    values = values_of(form, *DEVICE_FIELDS)
    try:
        data = DeviceCreate.model_validate({k: v for k, v in values.items() if v != ""})
    except ValidationError as exc:
        state = invalid(web.t, "device", exc, values)
        if "utc_offset_minutes" in state.fields:
            state.fields["utc_offset_minutes"] = web.t("glucose.validation.offset")
        return await _patient_page(web, patient_id, state=state, status_code=422)
    try:
        async with web.atomic():
            device, secret = await GlucoseService(web.session).register_device(web.me, patient_id, data)
    except DomainError as exc:
        state = failed(web.t, "device", exc, values)
        return await _patient_page(web, patient_id, state=state, status_code=exc.status_code)
    registered = {
        "uid": device.uid,
        "label": device.label,
        "secret": secret,
        "api_secret": api_secret_of(secret),
        "mqtt_topic": MQTT_TOPIC.format(uid=device.uid),
        "upload_path": f"/api/v1/glucose/devices/{device.uid}/readings",
    }
    return await _patient_page(web, patient_id, registered=registered)


@router.post("/glucose/devices/{uid}/retire")
async def retire_device(uid: str, web: PatientWeb, form: PostedForm) -> Response:
    """Stop accepting uploads from a device; its readings stay."""
    try:
        async with web.atomic():
            device = await GlucoseService(web.session).retire_device(web.me, uid[:40])
    except DomainError as exc:
        patient_id = _form_id(form, "patient_id")
        if patient_id is None:
            raise
        state = failed(web.t, "devices", exc, {})
        return await _patient_page(web, patient_id, state=state, status_code=exc.status_code)
    return web.redirect(f"/glucose/{device.patient_id}?notice=glucose_device_retired#devices")


@router.get("/glucose/{patient_id}/report.html")
async def report_page(
    patient_id: PatientId, web: CareWeb, days: Annotated[int, Query(ge=1, le=90)] = REPORT_DAYS
) -> Response:
    """The full AGP report as a standalone, printable page (its styles inline, nothing else)."""
    report = await CareService(web.session).report(web.me, patient_id, None, days, web.lang)
    return web.finish(HTMLResponse(render_page(report), headers={"Content-Security-Policy": REPORT_PAGE_CSP}))


@router.get("/glucose/{patient_id}/report.pdf")
async def report_pdf(
    patient_id: PatientId, web: CareWeb, days: Annotated[int, Query(ge=1, le=90)] = REPORT_DAYS
) -> Response:
    """The full AGP report as a two-page A4 PDF."""
    report = await CareService(web.session).report(web.me, patient_id, None, days, web.lang)
    pdf = await asyncio.to_thread(render_pdf, report)
    return web.finish(
        Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="glucose-report-{patient_id}.pdf"'},
        )
    )


# --- alerts (the patient and their doctors) -------------------------------------------------------


def _form_id(form: FormData, key: str) -> int | None:
    value = text(form, key)
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID else None


async def _back_to_alerts(web: Web, patient_id: int, state: FormState, status_code: int) -> Response:
    if web.me.is_patient:
        return await _patient_page(web, patient_id, state=state, status_code=status_code)
    return await _doctor_patient_page(web, patient_id, state=state, status_code=status_code)


def _alerts_url(web: Web, patient_id: int, notice: str) -> str:
    page = f"/glucose/{patient_id}" if web.me.is_patient else f"/doctor/glucose/{patient_id}"
    return f"{page}?notice={notice}#alerts"


@router.post("/glucose/alerts/{alert_id}/acknowledge")
async def acknowledge_alert(alert_id: PatientId, web: CareWeb, form: PostedForm) -> Response:
    """Seen: no more repeats (the alert stays until the condition ends)."""
    try:
        async with web.atomic():
            alert = await AlertService(web.session).acknowledge(web.me, alert_id)
    except DomainError as exc:
        patient_id = _form_id(form, "patient_id")
        if patient_id is None:
            raise
        return await _back_to_alerts(web, patient_id, failed(web.t, "alerts", exc, {}), exc.status_code)
    return web.redirect(_alerts_url(web, alert.patient_id, "glucose_alert_acknowledged"))


@router.post("/glucose/alerts/{alert_id}/snooze")
async def snooze_alert(alert_id: PatientId, web: CareWeb, form: PostedForm) -> Response:
    """No repeats for a while."""
    values = values_of(form, "minutes")
    patient_id = _form_id(form, "patient_id")
    try:
        data = SnoozeIn.model_validate({"minutes": values["minutes"]})
    except ValidationError:
        if patient_id is None:
            raise
        state = field_error(web.t, "alerts", "minutes", "glucose.validation.snooze", values)
        return await _back_to_alerts(web, patient_id, state, 422)
    try:
        async with web.atomic():
            alert = await AlertService(web.session).snooze(web.me, alert_id, data.minutes)
    except DomainError as exc:
        if patient_id is None:
            raise
        return await _back_to_alerts(web, patient_id, failed(web.t, "alerts", exc, values), exc.status_code)
    return web.redirect(_alerts_url(web, alert.patient_id, "glucose_alert_snoozed"))


# --- the doctor's dashboard -----------------------------------------------------------------------


@router.get("/doctor/glucose")
async def dashboard(web: DoctorWeb) -> Response:
    """The doctor's patients with a care plan, riskiest first; then those seen without one."""
    me = web.me
    if not me.is_practising_doctor:
        return web.render("glucose_dashboard.html", verified=False, entries=[], unplanned=[])
    entries = []
    for e in await CareService(web.session).dashboard(me):
        unit = str(e.get("unit") or "mmol/L")
        entries.append(
            {
                **e,
                "live_alerts": sorted(e.get("live_alerts") or [], key=_urgency),
                "tir": _percent(e.get("in_range_70_180")),
                "tbr": _percent(e.get("below_70")),
                "tbr_very": _percent(e.get("below_54")),
                "active": _percent(e.get("active_percent")),
                "mean": format_glucose(e.get("mean"), unit),
                "last": _local(e.get("last_reading_at"), ZoneInfo(DEFAULT_ZONE)),
                "low_label": format_threshold(70.0, unit),
                "very_low_label": format_threshold(54.0, unit),
            }
        )
    planned = {e["patient_id"] for e in entries}
    unplanned: dict[int, str] = {}
    consultations = await ConsultationService(web.session, web.runtime.settings, web.runtime.files).list_for(
        me, limit=100
    )
    for c in consultations:
        if c.patient.id not in planned:
            unplanned.setdefault(c.patient.id, c.patient.name)
    return web.render(
        "glucose_dashboard.html",
        verified=True,
        entries=entries,
        unplanned=sorted(unplanned.items(), key=lambda item: item[1]),
    )


# --- the doctor's page of one patient: report, alerts, care plan ----------------------------------


def _glucose_text(mgdl: float, unit: str) -> str:
    """A threshold as the form shows it: the consensus value in mmol/L (70 → 3.9), else rounded."""
    if unit == "mmol/L":
        return f"{threshold(mgdl, unit):.1f}"
    return f"{mgdl:g}"


def _rate_text(mgdl_per_minute: float, unit: str) -> str:
    return f"{mgdl_per_minute / MGDL_PER_MMOL:.2f}" if unit == "mmol/L" else f"{mgdl_per_minute:g}"


def _threshold_texts(th: Thresholds, unit: str) -> dict[str, str]:
    found = {name: _glucose_text(float(getattr(th, name)), unit) for name in GLUCOSE_THRESHOLDS}
    found["rapid_fall"] = _rate_text(th.rapid_fall, unit)
    for name in MINUTE_THRESHOLDS:
        found[name] = str(getattr(th, name))
    return found


def _plan_values(plan: CarePlanRead | None) -> tuple[dict[str, str], int, int]:
    """The form's values for the current plan (or the defaults), and its row counts."""
    unit = plan.unit if plan else "mmol/L"
    th = Thresholds.of(plan.thresholds) if plan else Thresholds()
    values = {
        "targets": plan.targets if plan else "standard",
        "unit": unit,
        "timezone": plan.timezone if plan else DEFAULT_ZONE,
        "thresholds_unit": unit,
        **_threshold_texts(th, unit),
        "diet": plan.diet if plan else "",
        "exercise": plan.exercise if plan else "",
        "note": plan.note if plan else "",
    }
    reminders = plan.monitoring if plan else []
    for i, r in enumerate(reminders):
        values |= {f"rem_time_{i}": r.time, f"rem_what_{i}": r.what, f"rem_note_{i}": r.note}
    medications = plan.medications if plan else []
    for i, m in enumerate(medications):
        values |= {
            f"med_name_{i}": m.name,
            f"med_dose_{i}": m.dose,
            f"med_times_{i}": " ".join(m.times),
            f"med_rx_{i}": str(m.prescription_id or ""),
        }
    return (
        values,
        _rows(len(reminders), MIN_REMINDER_ROWS, MAX_REMINDERS),
        _rows(len(medications), MIN_MEDICATION_ROWS, MAX_MEDICATIONS),
    )


def _rows(used: int, minimum: int, maximum: int) -> int:
    return min(maximum, max(minimum, used + SPARE_ROWS))


async def _doctor_patient_page(
    web: Web, patient_id: int, *, state: FormState = EMPTY, status_code: int = 200
) -> Response:
    patient = await GlucoseService(web.session).patient(web.me, patient_id)  # 404 unless their doctor
    plan, history = await _current_plan(web, patient.id)
    zone = _zone(plan)
    now = utcnow()
    alerts = await AlertService(web.session).alerts(web.me, patient.id, live_only=True)
    if state.form == "plan":
        form_state = state
        reminder_rows = _rows(
            _count_rows(state.values, REMINDER_TEXT_FIELDS, MAX_REMINDERS), MIN_REMINDER_ROWS, MAX_REMINDERS
        )
        medication_rows = _rows(
            _count_rows(state.values, MEDICATION_TEXT_FIELDS, MAX_MEDICATIONS),
            MIN_MEDICATION_ROWS,
            MAX_MEDICATIONS,
        )
    else:
        values, reminder_rows, medication_rows = _plan_values(plan)
        form_state = FormState("plan", values)
    t = web.t
    return web.render(
        "glucose_doctor_patient.html",
        patient=patient,
        plan=plan,
        facts=_plan_facts(t, plan) if plan else None,
        history=[
            {
                "version": p.version,
                "created": _local(p.created_at, zone),
                "doctor": p.doctor_name,
                "targets": p.targets,
                "unit": p.unit,
                "timezone": p.timezone,
                "reminders": len(p.monitoring),
                "medications": len(p.medications),
            }
            for p in history
        ],
        alerts=_alert_views(alerts, zone, now),
        snooze_minutes=SNOOZE_MINUTES,
        report=await _report_fragment(web, patient.id, now),
        links=_report_links(patient.id, web.lang),
        f=form_state,
        state=state,
        presets=[(p, t(f"glucose.preset.{p}")) for p in PRESETS],
        units=[(u, u) for u in UNITS],
        reminder_kinds=[(k, t(f"glucose.reminder.{k}")) for k in REMINDER_KINDS],
        reminder_rows=reminder_rows,
        medication_rows=medication_rows,
        zones=COMMON_ZONES,
        status_code=status_code,
        nav_current="/doctor/glucose",
    )


def _count_rows(values: Mapping[str, str], fields: Sequence[str], maximum: int) -> int:
    """How many rows of a re-rendered form hold something (up to the last filled one)."""
    used = 0
    for i in range(maximum):
        if any(values.get(f"{field}_{i}") for field in fields):
            used = i + 1
    return used


@router.get("/doctor/glucose/{patient_id}")
async def doctor_patient(patient_id: PatientId, web: DoctorWeb) -> Response:
    """A patient's 14-day report, live alerts, and the care plan to edit with its history."""
    return await _doctor_patient_page(web, patient_id)


async def _plan_form(request: Request, web: WebDep) -> AsyncIterator[FormData]:
    """The care plan form once its CSRF token is verified (it has more fields than most)."""
    async with request.form(max_files=0, max_fields=PLAN_MAX_FIELDS) as form:
        web.check_csrf(form.get(CSRF_FIELD))
        yield form


PlanForm = Annotated[FormData, Depends(_plan_form)]


class _FieldProblem(Exception):
    def __init__(self, name: str, key: str) -> None:
        self.name, self.key = name, key


def _number(raw: str, name: str) -> float:
    try:
        value = float(raw.replace("，", ".").replace(",", "."))
    except ValueError:
        raise _FieldProblem(name, "glucose.validation.number") from None
    if not math.isfinite(value):
        raise _FieldProblem(name, "glucose.validation.number")
    return value


def _thresholds_in(values: Mapping[str, str], current: Thresholds) -> dict[str, float | int]:
    """The submitted thresholds in mg/dL; a field left as it was drawn keeps the exact stored
    value (3.9 mmol/L stays 70 mg/dL, not 70.2)."""
    unit = values.get("thresholds_unit", "")
    if unit not in UNITS:
        unit = "mg/dL"
    drawn = _threshold_texts(current, unit)
    factor = MGDL_PER_MMOL if unit == "mmol/L" else 1.0
    found: dict[str, float | int] = {}
    for name in THRESHOLD_FIELDS:
        raw = values.get(name, "")
        if raw == "":
            continue
        if raw == drawn[name]:
            found[name] = getattr(current, name)
        elif name in MINUTE_THRESHOLDS:
            if not raw.isascii() or not raw.isdigit():
                raise _FieldProblem(name, "glucose.validation.minutes")
            found[name] = int(raw)
        else:
            found[name] = round(_number(raw, name) * factor, 1 if name != "rapid_fall" else 2)
    return found


# The threshold rules (alerts.Thresholds.problems) and the field each one is shown at.
_THRESHOLD_RULES = (
    ("urgent_low must", "urgent_low", "glucose.validation.urgent_low"),
    ("thresholds must rise", "sustained_high", "glucose.validation.rising"),
    ("sustained_minutes must", "sustained_minutes", "glucose.validation.sustained_minutes"),
    ("rapid_fall must", "rapid_fall", "glucose.validation.rapid_fall"),
    ("no_data_minutes must", "no_data_minutes", "glucose.validation.no_data_minutes"),
)


def _plan_locator(
    reminder_rows: list[int], medication_rows: list[int]
) -> Callable[[tuple[int | str, ...]], str]:
    def locate(loc: tuple[int | str, ...]) -> str:
        if not loc:
            return "form"
        head = str(loc[0])
        if head in ("monitoring", "medications") and len(loc) >= 2 and isinstance(loc[1], int):
            rows, prefix = (reminder_rows, "rem") if head == "monitoring" else (medication_rows, "med")
            row = rows[loc[1]] if loc[1] < len(rows) else loc[1]
            field = str(loc[2]) if len(loc) > 2 else "time"
            field = {"prescription_id": "name"}.get(field, field)
            return f"{prefix}_{field}_{row}"
        return head

    return locate


def _plan_input(form: FormData) -> tuple[dict[str, str], dict[str, Any], list[int], list[int]]:
    """The form's raw values (to re-render) and the CarePlanIn input, with the form row of each
    reminder and medication (blank rows are skipped)."""
    values = values_of(form, *PLAN_FIELDS)
    monitoring: list[dict[str, Any]] = []
    reminder_rows: list[int] = []
    for i in range(MAX_REMINDERS):
        row = values_of(form, f"rem_time_{i}", f"rem_what_{i}", f"rem_note_{i}")
        values |= row
        if row[f"rem_time_{i}"] or row[f"rem_note_{i}"]:
            monitoring.append(
                {"time": row[f"rem_time_{i}"], "what": row[f"rem_what_{i}"], "note": row[f"rem_note_{i}"]}
            )
            reminder_rows.append(i)
    medications: list[dict[str, Any]] = []
    medication_rows: list[int] = []
    for i in range(MAX_MEDICATIONS):
        row = values_of(form, f"med_name_{i}", f"med_dose_{i}", f"med_times_{i}", f"med_rx_{i}")
        values |= row
        if row[f"med_name_{i}"] or row[f"med_dose_{i}"] or row[f"med_times_{i}"]:
            rx = row[f"med_rx_{i}"]
            medications.append(
                {
                    "name": row[f"med_name_{i}"],
                    "dose": row[f"med_dose_{i}"],
                    "times": [x for x in _TIMES_SPLIT.split(row[f"med_times_{i}"]) if x],
                    "prescription_id": int(rx)
                    if rx.isascii() and rx.isdigit() and 0 < int(rx) <= MAX_ID
                    else None,
                }
            )
            medication_rows.append(i)
    raw: dict[str, Any] = {
        "targets": values["targets"],
        "unit": values["unit"],
        "timezone": values["timezone"] or DEFAULT_ZONE,
        "monitoring": monitoring,
        "diet": values["diet"],
        "exercise": values["exercise"],
        "medications": medications,
        "note": values["note"],
    }
    return values, raw, reminder_rows, medication_rows


def _plan_problems(
    t: Translator,
    exc: ValidationError,
    values: Mapping[str, str],
    locate: Callable[[tuple[int | str, ...]], str],
) -> FormState:
    state = invalid(t, "plan", exc, values, locate=locate)
    for err in exc.errors():
        loc = tuple(err["loc"])
        if loc == ("timezone",):
            state.fields["timezone"] = t("glucose.validation.timezone")
        elif loc and loc[0] == "thresholds":
            state.fields.pop("thresholds", None)
            message = str(err.get("msg", ""))
            matched = False
            for needle, name, key in _THRESHOLD_RULES:
                if needle in message:
                    state.fields.setdefault(name, t(key))
                    matched = True
            if not matched:
                state.fields.setdefault("sustained_high", t("glucose.validation.rising"))
        elif err["type"] == "value_error" and len(loc) >= 3 and loc[2] in ("time", "times"):
            state.fields[locate(loc)] = t("glucose.validation.hhmm")
    return state


@router.post("/doctor/glucose/{patient_id}/plan")
async def save_plan(patient_id: PatientId, web: DoctorWeb, form: PlanForm) -> Response:
    """A new version of the care plan; the earlier ones stay in the history."""
    values, raw, reminder_rows, medication_rows = _plan_input(form)
    plan, _ = await _current_plan(web, patient_id)
    current = Thresholds.of(plan.thresholds) if plan else Thresholds()
    try:
        raw["thresholds"] = _thresholds_in(values, current)
    except _FieldProblem as problem:
        state = field_error(web.t, "plan", problem.name, problem.key, values)
        return await _doctor_patient_page(web, patient_id, state=state, status_code=422)
    try:
        data = CarePlanIn.model_validate(raw)
    except ValidationError as exc:
        state = _plan_problems(web.t, exc, values, _plan_locator(reminder_rows, medication_rows))
        return await _doctor_patient_page(web, patient_id, state=state, status_code=422)
    try:
        async with web.atomic():
            await CareService(web.session).write_plan(web.me, patient_id, data)
    except DomainError as exc:
        state = failed(web.t, "plan", exc, values)
        return await _doctor_patient_page(web, patient_id, state=state, status_code=exc.status_code)
    return web.redirect(f"/doctor/glucose/{patient_id}?notice=glucose_plan_saved#plan")
