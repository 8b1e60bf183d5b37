"""Glucose alerts in the database: judged on every upload, raised once per episode, told to the
patient and the care team through the notification outbox, acknowledged or snoozed, repeated
while nobody acknowledges, and resolved when the condition has ended."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ehospital.audit.service import record
from ehospital.auth.models import Account
from ehospital.directory.models import Doctor
from ehospital.glucose.alerts import Onset, Thresholds, data_missing, evaluate
from ehospital.glucose.metrics import MGDL_PER_MMOL
from ehospital.glucose.models import Alert, AlertStatus, CarePlan, Device, DeviceKind
from ehospital.glucose.repository import ReadingRepository
from ehospital.kit.context import Actor
from ehospital.kit.errors import Conflict, NotFound
from ehospital.kit.models import utcnow
from ehospital.notifications.service import queue
from ehospital.patients.models import Patient
from ehospital.patients.repository import visible_patients

# The care team hears of the conditions that need a clinician; the patient hears of all.
CARE_TEAM_CONDITIONS = frozenset({"urgent_low", "sustained_high", "no_data"})
# An alert nobody acknowledged is told again after this long (unless snoozed).
REPEAT_AFTER = timedelta(minutes=30)

_TEXT: dict[str, dict[str, tuple[str, str]]] = {
    "zh": {
        "urgent_low": (
            "紧急低血糖",
            "血糖 {value}，低于 {threshold}。请立即按低血糖处理（如摄入 15 克糖），15 分钟后复测。",
        ),
        "low": ("低血糖", "血糖低于 {threshold} 已超过 15 分钟（当前 {value}）。"),
        "high": ("高血糖", "血糖高于 {threshold} 已超过 15 分钟（当前 {value}）。"),
        "sustained_high": ("持续高血糖", "血糖已连续 {minutes} 分钟高于 {threshold}（当前 {value}）。"),
        "rapid_fall": ("血糖快速下降", "血糖正以每分钟 {rate} 以上的速度下降（当前 {value}）。"),
        "no_data": ("没有血糖数据", "已有 {minutes} 分钟未收到传感器数据，请检查传感器和手机的连接。"),
    },
    "en": {
        "urgent_low": (
            "Urgent low glucose",
            "Glucose {value}, below {threshold}. Treat the low now (e.g. 15 g of sugar) "
            "and check again in 15 minutes.",
        ),
        "low": ("Low glucose", "Glucose has been below {threshold} for over 15 minutes (now {value})."),
        "high": ("High glucose", "Glucose has been above {threshold} for over 15 minutes (now {value})."),
        "sustained_high": (
            "Sustained high glucose",
            "Glucose has been above {threshold} for {minutes} minutes (now {value}).",
        ),
        "rapid_fall": (
            "Glucose falling fast",
            "Glucose is falling by {rate} a minute or faster (now {value}).",
        ),
        "no_data": (
            "No glucose data",
            "No sensor data for {minutes} minutes: check the sensor and the phone's connection.",
        ),
    },
}


def shown(mgdl: float, unit: str) -> str:
    """A value as the patient reads it: mmol/L to one decimal, mg/dL whole."""
    if unit == "mmol/L":
        return f"{mgdl / MGDL_PER_MMOL:.1f} mmol/L"
    return f"{mgdl:.0f} mg/dL"


def alert_text(
    condition: str, locale: str, th: Thresholds, unit: str, value: float | None
) -> tuple[str, str]:
    title, body = _TEXT.get(locale, _TEXT["zh"])[condition]
    threshold = {
        "urgent_low": th.urgent_low,
        "low": th.low,
        "high": th.high,
        "sustained_high": th.sustained_high,
    }.get(condition, 0.0)
    rate = f"{th.rapid_fall / MGDL_PER_MMOL:.2f} mmol/L" if unit == "mmol/L" else f"{th.rapid_fall:g} mg/dL"
    minutes = th.sustained_minutes if condition == "sustained_high" else th.no_data_minutes
    return title, body.format(
        value=shown(value, unit) if value is not None else "",
        threshold=shown(threshold, unit),
        minutes=minutes,
        rate=rate,
    )


# Statements run on every upload, built once.
_CURRENT_PLAN = (
    select(CarePlan)
    .where(CarePlan.patient_id == bindparam("patient"))
    .order_by(CarePlan.version.desc())
    .limit(1)
)
_LIVE_ALERTS = select(Alert).where(
    Alert.patient_id == bindparam("patient"), Alert.status != AlertStatus.RESOLVED
)
_LAST_OF_PATIENT = select(func.max(Device.last_reading_at)).where(Device.patient_id == bindparam("patient"))


@dataclass(frozen=True)
class Care:
    """What the current care plan says about alerting (defaults without a plan)."""

    thresholds: Thresholds
    unit: str
    doctor_id: int | None


class AlertService:
    def __init__(self, session: AsyncSession, urgent_channels: tuple[str, ...] = ()) -> None:
        self.session = session
        # Channels besides in-app for an urgent low told to the patient (e.g. "sms").
        self.urgent_channels = urgent_channels

    async def care(self, patient_id: int, device_unit: str | None = None) -> Care:
        plan = await self.session.scalar(
            select(CarePlan)
            .where(CarePlan.patient_id == patient_id)
            .order_by(CarePlan.version.desc())
            .limit(1)
        )
        if plan is None:
            return Care(Thresholds(), device_unit or "mmol/L", None)
        return Care(Thresholds.of(json.loads(plan.thresholds)), plan.unit, plan.doctor_id)

    async def live(self, patient_id: int) -> dict[str, Alert]:
        rows = await self.session.scalars(_LIVE_ALERTS, {"patient": patient_id})
        return {a.condition: a for a in rows}

    async def judge(self, patient_id: int, now: datetime, latest: datetime) -> list[Alert]:
        """After readings arrived: raise the conditions that began, resolve those that ended.
        Readings that arrive late (the newest older than the no-data threshold) update
        resolutions but raise nothing: they describe the past."""
        care = await self.care(patient_id)
        th = care.thresholds
        end = await self.session.scalar(_LAST_OF_PATIENT, {"patient": patient_id})
        end = max(end or latest, latest)
        fresh = (now - end).total_seconds() <= th.no_data_minutes * 60
        live = await self.live(patient_id)
        if not fresh and not live:
            return []  # a backfill of the past with nothing in force: nothing to judge
        rows = await ReadingRepository(self.session).series(
            patient_id, end - timedelta(minutes=th.window_minutes), end
        )
        onsets = evaluate(rows.times, rows.mgdl, th, care.unit)
        raised: list[Alert] = []
        for condition, alert in live.items():
            if condition not in onsets and (condition != "no_data" or fresh):
                self._resolve(alert, now)
        if fresh:
            raised = await self._raise_all(
                patient_id, [o for c, o in onsets.items() if c not in live], care, now
            )
        return raised

    def _resolve(self, alert: Alert, now: datetime) -> None:
        alert.status = AlertStatus.RESOLVED
        alert.resolved_at = now

    async def _raise_all(
        self, patient_id: int, onsets: list[Onset], care: Care, now: datetime
    ) -> list[Alert]:
        """Raise several conditions at once (one savepoint, one lookup of whom to tell); when an
        upload racing this one raised some of them first, one at a time."""
        if len(onsets) < 2:
            return [a for o in onsets if (a := await self._raise(patient_id, o, care, now)) is not None]
        alerts = [self._new_alert(patient_id, o, care, now) for o in onsets]
        try:
            async with self.session.begin_nested():
                self.session.add_all(alerts)
                await self.session.flush()
        except IntegrityError:
            return [a for o in onsets if (a := await self._raise(patient_id, o, care, now)) is not None]
        recipients = await self._recipients(patient_id, care)
        for alert in alerts:
            self._notify_each(alert, care, now, recipients)
        return alerts

    def _new_alert(self, patient_id: int, onset: Onset, care: Care, now: datetime) -> Alert:
        return Alert(
            patient_id=patient_id,
            condition=onset.condition,
            status=AlertStatus.OPEN,
            began_at=datetime.fromtimestamp(onset.since, now.tzinfo),
            value_mgdl=onset.value if onset.condition != "no_data" else None,
            unit=care.unit,
            raised_at=now,
            notified_at=now,
        )

    async def _raise(self, patient_id: int, onset: Onset, care: Care, now: datetime) -> Alert | None:
        alert = self._new_alert(patient_id, onset, care, now)
        try:  # one live alert per condition, even when two uploads race
            async with self.session.begin_nested():
                self.session.add(alert)
                await self.session.flush()
        except IntegrityError:
            return None
        await self._notify(alert, care, now)
        return alert

    async def _notify(self, alert: Alert, care: Care, now: datetime) -> None:
        self._notify_each(alert, care, now, await self._recipients(alert.patient_id, care))

    async def _recipients(self, patient_id: int, care: Care) -> tuple[Any, ...]:
        """The patient's account and language, and the plan doctor's, in one query."""
        doctor_account = aliased(Account)
        row = (
            await self.session.execute(
                select(
                    Patient.account_id, Patient.name, Account.locale, Doctor.account_id, doctor_account.locale
                )
                .join(Account, Account.id == Patient.account_id)
                .outerjoin(Doctor, Doctor.id == care.doctor_id)
                .outerjoin(doctor_account, doctor_account.id == Doctor.account_id)
                .where(Patient.id == patient_id)
            )
        ).one()
        return tuple(row)

    def _notify_each(self, alert: Alert, care: Care, now: datetime, row: tuple[Any, ...]) -> None:
        recipients: list[tuple[int, str, tuple[str, ...], str | None]] = [
            (row[0], row[2] or "zh", ("in_app", *self._extra(alert)), None)
        ]
        if row[3] is not None and alert.condition in CARE_TEAM_CONDITIONS:
            recipients.append((row[3], row[4] or "zh", ("in_app",), row[1]))
        for account_id, locale, channels, about in recipients:
            title, body = alert_text(alert.condition, locale, care.thresholds, care.unit, alert.value_mgdl)
            if about:
                title = f"{about}：{title}" if locale == "zh" else f"{about}: {title}"
            queue(
                self.session,
                account_id=account_id,
                patient_id=alert.patient_id,
                kind="alert",
                code=alert.condition,
                subject_id=alert.id,
                title=title,
                body=body,
                channels=channels,
                now=now,
            )

    def _extra(self, alert: Alert) -> tuple[str, ...]:
        return self.urgent_channels if alert.condition == "urgent_low" else ()

    # --- periodic work (every process may run it: the unique live index keeps alerts single) ---

    async def watch(self, now: datetime | None = None) -> dict[str, int]:
        """Raise `no_data` for CGMs gone silent, and tell again the alerts nobody acknowledged."""
        now = now or utcnow()
        counts = {"no_data": 0, "repeated": 0}
        latest = (
            select(Device.patient_id, func.max(Device.last_reading_at).label("last"))
            .where(Device.kind == DeviceKind.CGM, Device.retired_at.is_(None))
            .group_by(Device.patient_id)
        )
        for patient_id, last in (await self.session.execute(latest)).all():
            if last is None:
                continue
            care = await self.care(patient_id)
            # A day of silence means the patient stopped wearing it: no alert raised that late.
            silent = data_missing(last.timestamp(), now.timestamp(), care.thresholds)
            if silent and now - last < timedelta(days=1):
                live = await self.live(patient_id)
                if "no_data" not in live:
                    onset = Onset("no_data", last.timestamp(), float("nan"))
                    if await self._raise(patient_id, onset, care, now) is not None:
                        counts["no_data"] += 1
        due = await self.session.scalars(
            select(Alert).where(
                Alert.status == AlertStatus.OPEN,
                Alert.notified_at < now - REPEAT_AFTER,
                (Alert.snoozed_until.is_(None)) | (Alert.snoozed_until <= now),
            )
        )
        for alert in due:
            care = await self.care(alert.patient_id)
            alert.notified_at = now
            await self._notify(alert, care, now)
            counts["repeated"] += 1
        return counts

    # --- people acting on alerts -----------------------------------------------------------------

    async def alerts(
        self, actor: Actor, patient_id: int, live_only: bool = False, limit: int = 100
    ) -> list[Alert]:
        patient = await self._visible(actor, patient_id)
        query = select(Alert).where(Alert.patient_id == patient.id)
        if live_only:
            query = query.where(Alert.status != AlertStatus.RESOLVED)
        rows = await self.session.scalars(
            query.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(limit)
        )
        return list(rows)

    async def _visible(self, actor: Actor, patient_id: int) -> Patient:
        found = await self.session.scalar(visible_patients(actor).where(Patient.id == patient_id))
        if found is None:
            raise NotFound("no such patient", code="patient_not_found")
        return found

    async def _alert(self, actor: Actor, alert_id: int) -> Alert:
        alert = await self.session.get(Alert, alert_id, with_for_update=True)
        if alert is None:
            raise NotFound("no such alert", code="alert_not_found")
        try:
            await self._visible(actor, alert.patient_id)
        except NotFound:
            raise NotFound("no such alert", code="alert_not_found") from None
        return alert

    async def acknowledge(self, actor: Actor, alert_id: int) -> Alert:
        """Someone has seen it: no more repeats (it stays until the condition ends)."""
        alert = await self._alert(actor, alert_id)
        if alert.status == AlertStatus.OPEN:
            alert.status = AlertStatus.ACKNOWLEDGED
            alert.acknowledged_at = utcnow()
            alert.acknowledged_by = actor.account_id
            record(self.session, actor, "acknowledge", "glucose_alert", alert.id, patient_id=alert.patient_id)
        return alert

    async def snooze(self, actor: Actor, alert_id: int, minutes: int) -> Alert:
        """No repeats for a while (the alert stays open)."""
        alert = await self._alert(actor, alert_id)
        if alert.status == AlertStatus.RESOLVED:
            raise Conflict("this alert has ended", code="alert_resolved")
        alert.snoozed_until = utcnow() + timedelta(minutes=minutes)
        record(self.session, actor, "snooze", "glucose_alert", alert.id, patient_id=alert.patient_id)
        return alert


def value_of(alert: Alert) -> float | None:
    if alert.value_mgdl is None or np.isnan(alert.value_mgdl):
        return None
    return alert.value_mgdl
