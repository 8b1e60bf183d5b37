"""Diabetes care between visits: versioned care plans, AGP reports (on demand, daily for the
patient, weekly for the doctor), the doctor's risk-ordered dashboard, and care-plan reminders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.directory.models import Doctor
from ehospital.glucose.alerts import CONDITIONS
from ehospital.glucose.metrics import Series, basic_metrics, sufficiency
from ehospital.glucose.models import Alert, AlertStatus, CarePlan, Device, GlucoseReport, ReminderSent
from ehospital.glucose.report import Report, build_report, targets_for
from ehospital.glucose.repository import ReadingRepository, SeriesRows
from ehospital.glucose.schemas import CarePlanIn, CarePlanRead, Medication, Reminder
from ehospital.kit.context import Actor
from ehospital.kit.errors import Forbidden, NotFound, Unprocessable
from ehospital.kit.models import utcnow
from ehospital.notifications.service import queue
from ehospital.patients.models import Patient
from ehospital.patients.repository import visible_patients
from ehospital.prescriptions.models import Prescription

DEFAULT_DAYS = 14
GRI_ZONES = ("A", "B", "C", "D", "E")

_REMINDER_TEXT = {
    "zh": {
        "measure": "测血糖",
        "medication": "按时用药",
        "meal": "用餐时间",
        "exercise": "运动时间",
        "report_patient": ("您的血糖报告已生成", "过去 {days} 天：目标范围内时间 {tir}。"),
        "report_doctor": (
            "{patient} 的血糖周报",
            "过去 {days} 天：目标范围内时间 {tir}，低于 3.9 的时间 {tbr}。",
        ),
    },
    "en": {
        "measure": "Check your glucose",
        "medication": "Time for your medication",
        "meal": "Meal time",
        "exercise": "Time to exercise",
        "report_patient": ("Your glucose report is ready", "Last {days} days: time in range {tir}."),
        "report_doctor": (
            "Weekly glucose report: {patient}",
            "Last {days} days: time in range {tir}, time below 70 mg/dL {tbr}.",
        ),
    },
}


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value):.0f} %"


def gri_zone(gri: float | None) -> str | None:
    if gri is None or gri != gri:
        return None
    return GRI_ZONES[min(4, int(max(gri, 0.0) // 20))]


@dataclass(frozen=True)
class Window:
    """A report window: UTC bounds, and the same bounds on the patient's wall clock (the
    metrics' convention of local time read as UTC)."""

    start: datetime
    end: datetime
    days: int
    offset_seconds: float

    @property
    def local_start(self) -> float:
        return self.start.timestamp() + self.offset_seconds

    @property
    def local_end(self) -> float:
        return self.end.timestamp() + self.offset_seconds


def window(end: datetime, days: int, zone: str) -> Window:
    offset = end.astimezone(ZoneInfo(zone)).utcoffset()
    return Window(end - timedelta(days=days), end, days, offset.total_seconds() if offset else 0.0)


def plan_read(plan: CarePlan, doctor_name: str) -> CarePlanRead:
    return CarePlanRead(
        id=plan.id,
        patient_id=plan.patient_id,
        version=plan.version,
        doctor_id=plan.doctor_id,
        doctor_name=doctor_name,
        created_at=plan.created_at,
        targets=plan.targets,
        timezone=plan.timezone,
        unit=plan.unit,
        thresholds=json.loads(plan.thresholds),
        monitoring=[Reminder(**r) for r in json.loads(plan.monitoring)],
        diet=plan.diet,
        exercise=plan.exercise,
        medications=[Medication(**m) for m in json.loads(plan.medications)],
        note=plan.note,
    )


def series_of(rows: SeriesRows, unit: str) -> Series:
    return Series(rows.local_times, rows.mgdl, unit)


class CareService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.readings = ReadingRepository(session)

    async def _patient(self, actor: Actor, patient_id: int) -> Patient:
        found = await self.session.scalar(visible_patients(actor).where(Patient.id == patient_id))
        if found is None:
            raise NotFound("no such patient", code="patient_not_found")
        return found

    # --- care plans -------------------------------------------------------------------------------

    async def write_plan(self, actor: Actor, patient_id: int, data: CarePlanIn) -> tuple[CarePlan, str]:
        """A new version of the patient's plan, by a doctor who has seen them; earlier versions
        stay as they were."""
        if not actor.is_practising_doctor:
            raise Forbidden("only the patient's doctors write care plans", code="not_a_doctor")
        patient = await self._patient(actor, patient_id)
        linked = {m.prescription_id for m in data.medications if m.prescription_id is not None}
        if linked:
            found = set(
                await self.session.scalars(
                    select(Prescription.id).where(
                        Prescription.id.in_(linked), Prescription.patient_id == patient.id
                    )
                )
            )
            if linked - found:
                raise Unprocessable(
                    "a medication is linked to a prescription this patient does not have",
                    code="prescription_not_found",
                    prescription_ids=sorted(linked - found),
                )
        latest = await self.session.scalar(
            select(func.max(CarePlan.version)).where(CarePlan.patient_id == patient.id)
        )
        plan = CarePlan(
            patient_id=patient.id,
            version=(latest or 0) + 1,
            doctor_id=actor.doctor_id,
            targets=data.targets,
            timezone=data.timezone,
            unit=data.unit,
            thresholds=json.dumps(data.thresholds.to_thresholds().as_dict()),
            monitoring=json.dumps([r.model_dump() for r in data.monitoring], ensure_ascii=False),
            diet=data.diet,
            exercise=data.exercise,
            medications=json.dumps([m.model_dump() for m in data.medications], ensure_ascii=False),
            note=data.note,
        )
        self.session.add(plan)
        await self.session.flush()  # a racing second writer of the same version gets 409
        record(self.session, actor, "create", "care_plan", plan.id, patient_id=patient.id)
        return plan, actor.display_name

    async def plans(self, actor: Actor, patient_id: int) -> list[tuple[CarePlan, str]]:
        """Every version, newest first, with the writing doctor's name."""
        patient = await self._patient(actor, patient_id)
        rows = await self.session.execute(
            select(CarePlan, Doctor.name)
            .join(Doctor, Doctor.id == CarePlan.doctor_id)
            .where(CarePlan.patient_id == patient.id)
            .order_by(CarePlan.version.desc())
        )
        record(self.session, actor, "read", "care_plan", None, patient_id=patient.id)
        return [(plan, name) for plan, name in rows.all()]

    async def current(self, patient_id: int) -> CarePlan | None:
        plan: CarePlan | None = await self.session.scalar(
            select(CarePlan)
            .where(CarePlan.patient_id == patient_id)
            .order_by(CarePlan.version.desc())
            .limit(1)
        )
        return plan

    # --- reports ----------------------------------------------------------------------------------

    async def report(
        self,
        actor: Actor,
        patient_id: int,
        end: datetime | None = None,
        days: int = DEFAULT_DAYS,
        locale: str = "zh",
    ) -> Report:
        """The AGP report of the `days` days up to `end` (default now)."""
        patient = await self._patient(actor, patient_id)
        found = await self.build(patient, end or utcnow(), days, locale)
        record(self.session, actor, "read", "glucose_report", None, patient_id=patient.id)
        return found

    async def build(self, patient: Patient, end: datetime, days: int, locale: str) -> Report:
        plan = await self.current(patient.id)
        zone = plan.timezone if plan else "Asia/Shanghai"
        win = window(end, days, zone)
        rows = await self.readings.series(patient.id, win.start, win.end)
        unit = plan.unit if plan else rows.main_unit("mmol/L")
        return build_report(
            series_of(rows, unit),
            start=win.local_start,
            end=win.local_end,
            targets=targets_for(plan.targets if plan else "standard"),
            locale=locale,
            patient=patient.name,
        )

    async def summary(self, patient_id: int, end: datetime, days: int, zone: str) -> dict[str, Any]:
        """Headline figures of a window (for the dashboard and stored reports)."""
        win = window(end, days, zone)
        rows = await self.readings.series(patient_id, win.start, win.end)
        unit = rows.main_unit("mmol/L")
        series = series_of(rows, unit)
        found: dict[str, Any] = {"days": days, "readings": int(rows.times.size)}
        if rows.times.size:
            m = basic_metrics(series)
            for key in (
                "in_range_70_180",
                "below_54",
                "below_70",
                "above_180",
                "above_250",
                "gri",
                "mean",
                "cv",
            ):
                value = m.get(key)
                found[key] = None if value is None or value != value else round(float(value), 2)
        found["gri_zone"] = gri_zone(found.get("gri"))
        suff = sufficiency(series, end=win.local_end, days=days)
        found["active_percent"] = round(float(suff["active_percent"]), 1)
        found["sufficient"] = bool(suff["sufficient"])
        return found

    async def dashboard(self, actor: Actor, now: datetime | None = None) -> list[dict[str, Any]]:
        """The doctor's diabetic patients (whose current plan they wrote), riskiest first: live
        urgent-low alerts, then the GRI zone (E first; no data counts as zone D-E), then the time
        below 54 and below 70 mg/dL, then missing data."""
        if not actor.is_practising_doctor:
            raise Forbidden("the dashboard is for doctors", code="not_a_doctor")
        now = now or utcnow()
        latest = (
            select(CarePlan.patient_id, func.max(CarePlan.version).label("v"))
            .group_by(CarePlan.patient_id)
            .subquery()
        )
        plans = await self.session.execute(
            select(CarePlan, Patient)
            .join(latest, (latest.c.patient_id == CarePlan.patient_id) & (latest.c.v == CarePlan.version))
            .join(Patient, Patient.id == CarePlan.patient_id)
            .where(CarePlan.doctor_id == actor.doctor_id)
        )
        entries: list[dict[str, Any]] = []
        for plan, patient in plans.all():
            summary = await self.summary(patient.id, now, DEFAULT_DAYS, plan.timezone)
            live = list(
                await self.session.scalars(
                    select(Alert.condition).where(
                        Alert.patient_id == patient.id, Alert.status != AlertStatus.RESOLVED
                    )
                )
            )
            last = await self.session.scalar(
                select(func.max(Device.last_reading_at)).where(Device.patient_id == patient.id)
            )
            missing = last is None or now - last > timedelta(hours=24) or not summary["sufficient"]
            zone = summary["gri_zone"]
            zone_rank = GRI_ZONES.index(zone) if zone else 3.5
            entries.append(
                {
                    "patient_id": patient.id,
                    "name": patient.name,
                    "plan_version": plan.version,
                    "targets": plan.targets,
                    "unit": plan.unit,
                    "last_reading_at": last,
                    "live_alerts": sorted(live, key=CONDITIONS.index),  # most urgent first
                    "data_missing": missing,
                    **summary,
                    "_risk": (
                        "urgent_low" in live,
                        zone_rank,
                        summary.get("below_54") or 0.0,
                        summary.get("below_70") or 0.0,
                        missing,
                    ),
                }
            )
        entries.sort(key=lambda e: e["_risk"], reverse=True)
        for e in entries:
            del e["_risk"]
        record(self.session, actor, "read", "glucose_dashboard", None)
        return entries

    # --- scheduled work ---------------------------------------------------------------------------

    async def scheduled_reports(self, now: datetime | None = None) -> int:
        """Daily reports for patients (after 06:00 their time, for the 14 days to midnight) and
        weekly ones for their doctors (Mondays after 07:00); each made once, by any process."""
        now = now or utcnow()
        made = 0
        for plan in await self._current_plans():
            zone = ZoneInfo(plan.timezone)
            local = now.astimezone(zone)
            midnight = datetime.combine(local.date(), time(0), zone).astimezone(UTC)
            if local.hour >= 6:
                made += await self._report_once(plan, "patient", midnight, now)
            if local.weekday() == 0 and local.hour >= 7:
                made += await self._report_once(plan, "doctor", midnight, now)
        return made

    async def _current_plans(self) -> list[CarePlan]:
        latest = (
            select(CarePlan.patient_id, func.max(CarePlan.version).label("v"))
            .group_by(CarePlan.patient_id)
            .subquery()
        )
        rows = await self.session.scalars(
            select(CarePlan).join(
                latest, (latest.c.patient_id == CarePlan.patient_id) & (latest.c.v == CarePlan.version)
            )
        )
        return list(rows)

    async def _report_once(self, plan: CarePlan, audience: str, end: datetime, now: datetime) -> int:
        exists = await self.session.scalar(
            select(GlucoseReport.id).where(
                GlucoseReport.patient_id == plan.patient_id,
                GlucoseReport.audience == audience,
                GlucoseReport.window_end == end,
            )
        )
        if exists is not None:
            return 0
        summary = await self.summary(plan.patient_id, end, DEFAULT_DAYS, plan.timezone)
        if not summary["readings"]:
            return 0
        report = GlucoseReport(
            patient_id=plan.patient_id,
            audience=audience,
            window_start=end - timedelta(days=DEFAULT_DAYS),
            window_end=end,
            summary=json.dumps(summary),
        )
        try:
            async with self.session.begin_nested():
                self.session.add(report)
                await self.session.flush()
        except IntegrityError:  # another process made it first
            return 0
        patient = await self.session.get(Patient, plan.patient_id)
        assert patient is not None
        if audience == "patient":
            account_id = patient.account_id
        else:
            doctor_account = await self.session.scalar(
                select(Doctor.account_id).where(Doctor.id == plan.doctor_id)
            )
            assert doctor_account is not None
            account_id = doctor_account
        locale = await self._locale(account_id)
        title, body = _REMINDER_TEXT[locale][f"report_{audience}"]
        queue(
            self.session,
            account_id=account_id,
            patient_id=plan.patient_id,
            kind="report",
            code=f"{'daily' if audience == 'patient' else 'weekly'}_report",
            subject_id=report.id,
            title=str(title).format(patient=patient.name),
            body=str(body).format(
                days=DEFAULT_DAYS,
                tir=_percent(summary.get("in_range_70_180")),
                tbr=_percent(summary.get("below_70")),
            ),
            now=now,
        )
        return 1

    async def _locale(self, account_id: int) -> str:
        from ehospital.auth.models import Account

        locale = await self.session.scalar(select(Account.locale).where(Account.id == account_id))
        return locale if locale in _REMINDER_TEXT else "zh"

    async def due_reminders(
        self, now: datetime | None = None, grace: timedelta = timedelta(minutes=30)
    ) -> int:
        """Care-plan reminders whose local time has come (within `grace`), each once a day."""
        now = now or utcnow()
        sent = 0
        for plan in await self._current_plans():
            local = now.astimezone(ZoneInfo(plan.timezone))
            items: list[tuple[int, str, str, str]] = [
                (i, r["time"], r["what"], r.get("note", ""))
                for i, r in enumerate(json.loads(plan.monitoring))
            ]
            for j, m in enumerate(json.loads(plan.medications)):
                items += [
                    (100 + 10 * j + k, t, "medication", f"{m['name']} {m['dose']}")
                    for k, t in enumerate(m["times"])
                ]
            for item, hhmm, what, note in items:
                due = datetime.combine(local.date(), time.fromisoformat(hhmm), local.tzinfo)
                if not due <= local < due + grace:
                    continue
                if await self._remind_once(plan, item, local.date(), what, note, now):
                    sent += 1
        return sent

    async def _remind_once(
        self, plan: CarePlan, item: int, day: date, what: str, note: str, now: datetime
    ) -> bool:
        if await self.session.get(ReminderSent, (plan.id, item, day)) is not None:
            return False  # sent already (the watcher runs every minute through the grace period)
        try:  # the key settles a race with another process
            async with self.session.begin_nested():
                self.session.add(ReminderSent(plan_id=plan.id, item=item, local_date=day, queued_at=now))
                await self.session.flush()
        except IntegrityError:
            return False
        patient = await self.session.get(Patient, plan.patient_id)
        assert patient is not None
        locale = await self._locale(patient.account_id)
        queue(
            self.session,
            account_id=patient.account_id,
            patient_id=patient.id,
            kind="reminder",
            code=what,
            subject_id=plan.id,
            title=str(_REMINDER_TEXT[locale][what]),
            body=note,
            now=now,
        )
        return True
