"""Glucose care through the API: alerts on incoming readings (episode rule, notifications to the
patient and the care team, acknowledge, snooze, repeat, no data), versioned care plans, reports
in three formats, the doctor's risk-ordered dashboard, reminders and scheduled reports."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.glucose.alerting import AlertService
from ehospital.glucose.alerts import Thresholds, evaluate
from ehospital.glucose.care import CareService
from ehospital.glucose.models import Alert
from ehospital.notifications.models import Notification
from tests.personas import World, accepted_consultation
from tests.test_glucose_ingest import register
from tests.test_prescriptions import diagnosed, draft, formulary  # noqa: F401  (a fixture)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def series(values: list[float], end: datetime, step: int = 5) -> list[dict[str, Any]]:
    """Readings every `step` minutes ending at `end`, mg/dL."""
    n = len(values)
    return [
        {"time": (end - timedelta(minutes=step * (n - 1 - i))).isoformat(), "value": v, "unit": "mg/dL"}
        for i, v in enumerate(values)
    ]


async def notifications(session: AsyncSession, account_id: int) -> list[Notification]:
    await session.flush()
    rows = await session.scalars(
        select(Notification).where(Notification.account_id == account_id).order_by(Notification.id)
    )
    return list(rows)


PLAN: dict[str, Any] = {
    "targets": "standard",
    "timezone": "Asia/Shanghai",
    "unit": "mmol/L",
    "thresholds": {"low": 72},
    "monitoring": [{"time": "07:00", "what": "measure", "note": "fasting"}],
    "diet": "carbohydrate 45 % of energy",
    "exercise": "150 minutes a week",
    "medications": [{"name": "metformin", "dose": "500 mg", "times": ["08:00", "20:00"]}],
}


async def enrolled(client: httpx.AsyncClient, world: World) -> tuple[int, dict[str, Any]]:
    """Alice, seen by Dr Dia who wrote her plan, with a CGM."""
    await accepted_consultation(client, world)
    patient_id = world.alice.family[0].id
    r = await client.put(f"/api/v1/patients/{patient_id}/care-plan", headers=world.dr_dia.headers, json=PLAN)
    assert r.status_code == 201, r.text
    return patient_id, await register(client, world.alice, patient_id, unit="mg/dL")


def test_episode_rule_does_not_flap() -> None:
    th = Thresholds()
    t = np.arange(0, 8, dtype=np.float64) * 300.0
    # Two readings below 70 then back: under 15 minutes, no low.
    assert "low" not in evaluate(t[:3], np.array([80, 65, 66.0]), th)
    low = np.array([80, 65, 66, 64, 75, 68, 75, 76.0])
    assert "low" in evaluate(t[:4], low[:4], th)
    # Back above for 5 minutes, then below again, then 10 minutes above: still the same episode.
    assert evaluate(t[:7], low[:7], th)["low"].since == 300.0
    # An urgent low is at once, and so is a fall of 3 mg/dL a minute.
    assert "urgent_low" in evaluate(t[:1], np.array([50.0]), th)
    assert "rapid_fall" in evaluate(t[:3], np.array([180, 160, 140.0]), th)
    # mmol/L readings keep their thresholds: 13.9 is not above 13.9.
    high = np.full(5, 13.9 * 18)
    assert "high" in evaluate(t[:5], high, th, "mg/dL") and "high" not in evaluate(t[:5], high, th, "mmol/L")


async def test_urgent_low_alerts_patient_and_doctor_once(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    patient_id, device = await enrolled(client, world)
    url = f"/api/v1/glucose/devices/{device['uid']}/readings"
    end = now_utc() - timedelta(minutes=25)
    r = await client.post(url, headers=world.alice.headers, json=series([150, 130, 110, 85, 62, 50], end))
    assert r.status_code == 200, r.text
    assert sorted(r.json()["alerts_raised"]) == ["rapid_fall", "urgent_low"]
    mine = await notifications(session, world.alice.account.id)
    assert {n.code for n in mine} == {"urgent_low", "rapid_fall"}
    urgent = next(n for n in mine if n.code == "urgent_low")
    assert urgent.channel == "in_app" and "2.8 mmol/L" in urgent.body  # the plan's unit
    doctor = await notifications(session, world.dr_dia.account.id)
    assert [n.code for n in doctor] == ["urgent_low"] and "Alice" in doctor[0].title
    # More low readings: the same episode, nothing new.
    r = await client.post(
        url, headers=world.alice.headers, json=series([49, 48], end + timedelta(minutes=10))
    )
    assert r.json()["alerts_raised"] == ["low"]  # now 15 minutes below the plan's 72
    assert len(await notifications(session, world.dr_dia.account.id)) == 1

    live = (
        await client.get(
            f"/api/v1/patients/{patient_id}/glucose/alerts?live=true", headers=world.alice.headers
        )
    ).json()
    assert {a["condition"] for a in live} == {"urgent_low", "low", "rapid_fall"}
    alert_id = next(a["id"] for a in live if a["condition"] == "urgent_low")
    urgent_alert = next(a for a in live if a["condition"] == "urgent_low")
    assert (urgent_alert["value"], urgent_alert["unit"], urgent_alert["value_mgdl"]) == (2.8, "mmol/L", 50.0)
    # Bob may not touch it; the doctor may acknowledge; snooze validates its input.
    assert (
        await client.post(f"/api/v1/glucose/alerts/{alert_id}/acknowledge", headers=world.bob.headers)
    ).status_code == 404
    r = await client.post(
        f"/api/v1/glucose/alerts/{alert_id}/snooze", headers=world.alice.headers, json={"minutes": 1}
    )
    assert r.status_code == 422
    r = await client.post(
        f"/api/v1/glucose/alerts/{alert_id}/snooze", headers=world.alice.headers, json={"minutes": 30}
    )
    assert r.status_code == 200 and r.json()["snoozed_until"]
    r = await client.post(f"/api/v1/glucose/alerts/{alert_id}/acknowledge", headers=world.dr_dia.headers)
    assert r.json()["status"] == "acknowledged"

    # 15 minutes back in range end the episodes.
    back = series([100, 105, 110], end + timedelta(minutes=25))
    r = await client.post(url, headers=world.alice.headers, json=back)
    assert r.json()["alerts_raised"] == []
    live = (
        await client.get(
            f"/api/v1/patients/{patient_id}/glucose/alerts?live=true", headers=world.alice.headers
        )
    ).json()
    assert live == []
    every = (
        await client.get(f"/api/v1/patients/{patient_id}/glucose/alerts", headers=world.alice.headers)
    ).json()
    assert all(a["status"] == "resolved" and a["resolved_at"] for a in every)


async def test_backfill_raises_nothing_and_silence_raises_no_data(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    patient_id, device = await enrolled(client, world)
    url = f"/api/v1/glucose/devices/{device['uid']}/readings"
    old = now_utc() - timedelta(hours=5)
    r = await client.post(url, headers=world.alice.headers, json=series([60, 50, 45, 45, 45], old))
    assert r.json()["alerts_raised"] == []  # the past, uploaded late
    # The CGM went silent 5 hours ago: the watcher raises no_data once and tells the doctor.
    service = AlertService(session)
    assert (await service.watch())["no_data"] == 1
    assert (await service.watch())["no_data"] == 0
    assert [n.code for n in await notifications(session, world.dr_dia.account.id)] == ["no_data"]
    # Unacknowledged, it is told again after 30 minutes.
    assert (await service.watch(now_utc() + timedelta(minutes=31)))["repeated"] == 1
    # Data again: resolved.
    r = await client.post(url, headers=world.alice.headers, json=series([120], now_utc()))
    alerts = (
        await client.get(f"/api/v1/patients/{patient_id}/glucose/alerts", headers=world.alice.headers)
    ).json()
    assert [(a["condition"], a["status"]) for a in alerts] == [("no_data", "resolved")]


async def test_care_plan_versions_and_who_may_write(client: httpx.AsyncClient, world: World) -> None:
    patient_id, _ = await enrolled(client, world)
    url = f"/api/v1/patients/{patient_id}/care-plan"
    changed = {**PLAN, "targets": "older_high_risk", "thresholds": {"high": 270, "sustained_high": 200}}
    r = await client.put(url, headers=world.dr_dia.headers, json=changed)
    assert r.status_code == 201 and r.json()["version"] == 2
    current = (await client.get(url, headers=world.alice.headers)).json()
    assert current["version"] == 2 and current["targets"] == "older_high_risk"
    assert current["thresholds"]["high"] == 270 and current["thresholds"]["low"] == 70  # defaults fill in
    history = (await client.get(f"{url}/history", headers=world.alice.headers)).json()
    assert [(p["version"], p["targets"]) for p in history] == [(2, "older_high_risk"), (1, "standard")]
    assert history[1]["thresholds"]["low"] == 72 and history[1]["medications"][0]["name"] == "metformin"
    # The patient, a doctor who never saw her, Bob: no.
    assert (await client.put(url, headers=world.alice.headers, json=PLAN)).status_code == 403
    assert (await client.put(url, headers=world.dr_skin.headers, json=PLAN)).status_code == 404
    assert (await client.get(url, headers=world.bob.headers)).status_code == 404
    # Bad input: thresholds out of order, unknown zone, bad time.
    for bad in (
        {**PLAN, "thresholds": {"low": 200}},
        {**PLAN, "timezone": "Mars/Olympus"},
        {**PLAN, "monitoring": [{"time": "25:00", "what": "measure"}]},
        {**PLAN, "targets": "athlete"},
    ):
        r = await client.put(url, headers=world.dr_dia.headers, json=bad)
        assert r.status_code == 422, bad
    assert len((await client.get(f"{url}/history", headers=world.alice.headers)).json()) == 2
    r = await client.get(
        f"/api/v1/patients/{world.alice.family[1].id}/care-plan", headers=world.alice.headers
    )
    assert (r.status_code, r.json()["error"]["code"]) == (404, "no_care_plan")


async def test_report_in_three_formats_and_dashboard(client: httpx.AsyncClient, world: World) -> None:
    patient_id, device = await enrolled(client, world)
    end = now_utc() - timedelta(minutes=2)
    day = [140 + 60 * np.sin(i / 288 * 2 * np.pi) for i in range(288)]
    r = await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers={"api-secret": device["api_secret"]},
        json=series([round(float(v), 1) for v in day * 3], end),
    )
    assert r.json()["stored"] == 864
    url = f"/api/v1/patients/{patient_id}/glucose/report"
    report = (await client.get(url, headers=world.alice.headers, params={"days": 14, "lang": "en"})).json()
    assert report and "summary" in str(report).lower()
    html = await client.get(url, headers=world.dr_dia.headers, params={"format": "html", "lang": "zh"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "<svg" in html.text and "<script" not in html.text and 'lang="zh"' in html.text
    assert html.headers["content-security-policy"].startswith("default-src 'none'")
    pdf = await client.get(url, headers=world.alice.headers, params={"format": "pdf"})
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert (await client.get(url, headers=world.bob.headers)).status_code == 404
    r = await client.get(url, headers=world.alice.headers, params={"days": 400})
    assert r.status_code == 422

    board = (await client.get("/api/v1/glucose/dashboard", headers=world.dr_dia.headers)).json()
    assert [e["patient_id"] for e in board] == [patient_id]
    assert board[0]["readings"] == 864 and board[0]["gri_zone"] in "ABCDE"
    assert board[0]["data_missing"] is True  # three days of fourteen
    assert (await client.get("/api/v1/glucose/dashboard", headers=world.dr_skin.headers)).json() == []
    assert (await client.get("/api/v1/glucose/dashboard", headers=world.alice.headers)).status_code == 403


async def test_dashboard_puts_the_riskiest_first(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    patient_id, device = await enrolled(client, world)
    # Sam (Alice's son) seen too, with good control.
    sam = world.alice.family[1].id
    from tests.personas import open_consultation

    c = await open_consultation(client, world, patient=world.alice.family[1], centre=world.skin)
    await client.post(f"/api/v1/consultations/{c['id']}/accept", headers=world.dr_skin.headers)
    c2 = await open_consultation(client, world, patient=world.alice.family[1])
    assert (
        await client.post(f"/api/v1/consultations/{c2['id']}/accept", headers=world.dr_dia.headers)
    ).status_code == 200
    assert (
        await client.put(f"/api/v1/patients/{sam}/care-plan", headers=world.dr_dia.headers, json=PLAN)
    ).status_code == 201
    sam_device = await register(client, world.alice, sam, unit="mg/dL")
    end = now_utc() - timedelta(minutes=1)
    await client.post(
        f"/api/v1/glucose/devices/{sam_device['uid']}/readings",
        headers=world.alice.headers,
        json=series([110] * 48, end),
    )
    await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers=world.alice.headers,
        json=series([60, 55, 50, 48, 140, 300, 310, 320] * 6, end),
    )
    board = (await client.get("/api/v1/glucose/dashboard", headers=world.dr_dia.headers)).json()
    assert [e["patient_id"] for e in board] == [patient_id, sam]
    assert board[0]["below_54"] > 0 and board[1]["gri_zone"] == "A"


async def test_reminders_and_scheduled_reports_once(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    _, device = await enrolled(client, world)
    await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers=world.alice.headers,
        json=series([120] * 24, now_utc() - timedelta(hours=30)),
    )
    care = CareService(session)
    # 07:10 in Shanghai on a Monday: the 07:00 measurement is due, 08:00 metformin not yet.
    monday = datetime(2026, 11, 23, 7, 10, tzinfo=UTC) - timedelta(hours=8)
    assert await care.due_reminders(monday) == 1
    assert await care.due_reminders(monday + timedelta(minutes=5)) == 0
    assert await care.due_reminders(monday + timedelta(minutes=55)) == 1  # 08:05: metformin
    codes = [n.code for n in await notifications(session, world.alice.account.id) if n.kind == "reminder"]
    assert codes == ["measure", "medication"]
    # Readings in the window: the daily and the weekly report, once each. The daily report is
    # made after 06:00 in the patient's zone, so the test takes tomorrow 06:30 in Shanghai
    # (whatever the hour it runs at): the readings of 30 hours ago are inside its 14 days.
    shanghai = ZoneInfo("Asia/Shanghai")
    tomorrow = datetime.now(shanghai).date() + timedelta(days=1)
    when = datetime.combine(tomorrow, time(6, 30), shanghai).astimezone(UTC)
    made = await care.scheduled_reports(when)
    assert made >= 1 and await care.scheduled_reports(when) == 0
    reports = [n for n in await notifications(session, world.alice.account.id) if n.kind == "report"]
    assert [n.code for n in reports] == ["daily_report"]


async def test_evaluate_alert_service_is_unit_aware(session: AsyncSession) -> None:
    th = Thresholds.of({"low": 72})
    assert th.low == 72 and th.urgent_low == 54
    try:
        Thresholds.of({"low": 40})
    except ValueError as exc:
        assert "urgent_low" in str(exc)
    else:
        raise AssertionError("thresholds out of order were accepted")
    assert await session.scalar(select(Alert.id).limit(1)) is None


@pytest.mark.usefixtures("formulary")
async def test_plan_medications_link_to_the_patients_prescriptions(
    client: httpx.AsyncClient, world: World
) -> None:
    cid = await diagnosed(client, world)
    r = await draft(client, world, cid)
    assert r.status_code == 201, r.text
    rx_id = r.json()["id"]
    patient_id = world.alice.family[0].id
    url = f"/api/v1/patients/{patient_id}/care-plan"
    linked = {
        **PLAN,
        "medications": [
            {"name": "metformin", "dose": "500 mg", "times": ["08:00"], "prescription_id": rx_id}
        ],
    }
    r = await client.put(url, headers=world.dr_dia.headers, json=linked)
    assert r.status_code == 201, r.text
    assert r.json()["medications"][0]["prescription_id"] == rx_id
    unknown = {**PLAN, "medications": [{"name": "x", "dose": "1", "prescription_id": rx_id + 1000}]}
    r = await client.put(url, headers=world.dr_dia.headers, json=unknown)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "prescription_not_found")
    # Another patient's prescription cannot be linked either.
    r = await client.put(
        f"/api/v1/patients/{world.alice.family[0].id}/care-plan/history",
        headers=world.dr_dia.headers,
        json=linked,
    )
    assert r.status_code == 405
    assert len((await client.get(f"{url}/history", headers=world.alice.headers)).json()) == 1


async def test_alerts_raised_by_a_racing_upload_are_not_raised_twice(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    """Two conditions at once go in one savepoint; when another upload raised one of them
    first (the unique live index refuses it), the other is still raised, once."""
    from ehospital.glucose.alerts import Onset

    patient_id, _ = await enrolled(client, world)
    service = AlertService(session)
    care = await service.care(patient_id)
    now = now_utc()
    first = await service._raise_all(patient_id, [Onset("urgent_low", now.timestamp(), 50.0)], care, now)
    assert [a.condition for a in first] == ["urgent_low"]
    both = [Onset("urgent_low", now.timestamp(), 49.0), Onset("rapid_fall", now.timestamp(), 49.0)]
    raised = await service._raise_all(patient_id, both, care, now)
    assert [a.condition for a in raised] == ["rapid_fall"]
    live = await service.live(patient_id)
    assert sorted(live) == ["rapid_fall", "urgent_low"]
    codes = [n.code for n in await notifications(session, world.alice.account.id)]
    assert sorted(codes) == ["rapid_fall", "urgent_low"]
