"""Glucose care in Chromium, against a real server: the patient's page (Chinese and English), an
alert acknowledged, the doctor's dashboard and report page, the care plan edited to a new
version, and the full report as a standalone page and as a PDF.

The data comes through the JSON API of the running server: a consultation in the diabetes centre
that dr.zhang accepts, her care plan, a CGM registered by the patient with 14 days of 5-minute
readings (a daily pattern with meals, some lows and highs, a few gaps) and a recent urgent low.
Screenshots land in $EHOSPITAL_TEST_OUTPUT (default test-output/browser), named glucose-*.png.
"""

from __future__ import annotations

import io
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from PIL import Image

from tests.browser.common import (
    CHROMIUM,
    CHROMIUM_ARGS,
    api_client,
    need_browser,
    screenshot_dir,
    shooter,
    sign_in,
    watch_console,
)
from tests.live import live_server

if TYPE_CHECKING:
    from playwright.sync_api import ViewportSize

pytestmark = pytest.mark.browser

TIMEOUT_MS = 20_000
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
CHINA = timezone(timedelta(hours=8))
MEMBER = "李建国 Li Jianguo"  # the account holder's father, 73: the doctor moves him to older_high_risk
PREFIX = "glucose"


@pytest.fixture(scope="module")
def output_dir() -> Path:
    return screenshot_dir(PREFIX)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_browser()  # no point starting a server nobody can browse
    with live_server(tmp_path_factory.mktemp("glucose-pages")) as base:
        yield base


# --- the data, through the API --------------------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (240, 248, 255)).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Profile:
    """How one patient's glucose behaves: the basal level, how much meals raise it, whether some
    nights dip low, and how the data ends (an urgent low just now, or silence for days)."""

    basal: float = 118.0
    meals: float = 1.0
    night_lows: bool = True
    urgent_low_now: bool = False
    silent_days: float = 0.0
    seed: int = 20240607


def cgm_day_profile(minutes: float, day: int, profile: Profile) -> float:
    """mg/dL at a minute of a day: a basal level with a dawn rise, three meals (bigger at
    dinner), and a night-time dip on some nights."""
    level = profile.basal + 18.0 * math.exp(-(((minutes - 6.5 * 60) / 70.0) ** 2))
    meals = ((7.5 * 60, 85.0), (12.0 * 60, 95.0), (18.5 * 60, 125.0 + 10.0 * (day % 3)))
    for start, peak in meals:
        after = minutes - start
        if after > 0:  # a gamma-like rise and fall over about three hours
            level += profile.meals * peak * (after / 55.0) * math.exp(1.0 - after / 55.0)
    if profile.night_lows and day % 4 == 1 and 2 * 60 <= minutes <= 4.5 * 60:  # a nocturnal low
        level -= 58.0 * math.sin(math.pi * (minutes - 120.0) / 150.0)
    return level


def cgm_readings(now: datetime, profile: Profile, days: int = 14) -> list[dict[str, Any]]:
    """Every 5 minutes for `days` days up to `now` (less the silent days), in mmol/L as a Chinese
    CGM reports them, with gaps (a sensor change, short dropouts) and, for an urgent low, a fall
    over the last 80 minutes to 2.5 mmol/L (45 mg/dL) just now."""
    rng = random.Random(profile.seed)
    start = (now - timedelta(days=days)).astimezone(CHINA)
    t = start.replace(second=0, microsecond=0)
    gaps = [
        (start + timedelta(days=6, hours=9), timedelta(hours=2)),  # sensor change and warm-up
        (start + timedelta(days=3, hours=15), timedelta(minutes=40)),
        (start + timedelta(days=10, hours=1), timedelta(minutes=25)),
    ]
    last = now - timedelta(days=profile.silent_days, minutes=1)
    fall_from = now - timedelta(minutes=80)
    noise = 0.0
    out: list[dict[str, Any]] = []
    before_fall = 120.0
    while t <= last:
        if any(g <= t < g + length for g, length in gaps):
            t += timedelta(minutes=5)
            continue
        local = t.astimezone(CHINA)
        day = (local.date() - start.date()).days
        noise = 0.8 * noise + rng.gauss(0.0, 5.0)
        mgdl = cgm_day_profile(local.hour * 60 + local.minute, day, profile) + noise
        if not profile.urgent_low_now or t < fall_from:
            before_fall = mgdl
        else:  # eased from where it was down to 45 mg/dL at the last reading
            share = min(1.0, (t - fall_from) / (now - timedelta(minutes=3) - fall_from))
            mgdl = before_fall + (45.0 - before_fall) * (1 - math.cos(math.pi * share)) / 2
        mgdl = min(max(mgdl, 40.0), 400.0)
        out.append({"time": local.isoformat(), "value": round(mgdl / 18.0, 1), "unit": "mmol/L"})
        t += timedelta(minutes=5)
    return out


PLAN: dict[str, Any] = {
    "targets": "standard",
    "unit": "mmol/L",
    "timezone": "Asia/Shanghai",
    "monitoring": [
        {"time": "07:00", "what": "measure", "note": "空腹"},
        {"time": "09:30", "what": "measure", "note": "早餐后 2 小时"},
        {"time": "18:00", "what": "exercise", "note": "饭后散步 30 分钟"},
        {"time": "22:00", "what": "measure", "note": "睡前"},
    ],
    "diet": "主食定量，每餐一拳；少吃粥和甜点，晚餐七分饱。",
    "exercise": "每周至少 150 分钟中等强度运动，如快走。",
    "medications": [
        {"name": "二甲双胍", "dose": "500 mg", "times": ["08:00", "19:00"]},
        {"name": "甘精胰岛素", "dose": "12 U", "times": ["22:00"]},
    ],
    "note": "夜间低血糖时先测血糖再加餐，并告知医生。",
}
# The family members dr.zhang follows: the father in trouble (the one the test is about), the
# husband well controlled, the account holder whose sensor went silent two days ago.
PATIENTS = (
    (MEMBER, Profile(urgent_low_now=True)),
    ("王强 Wang Qiang", Profile(basal=108.0, meals=0.7, night_lows=False, seed=7)),
    ("李娜 Li Na", Profile(basal=150.0, meals=1.35, night_lows=False, silent_days=2.2, seed=11)),
)


def _follow(patient: httpx.Client, doctor: httpx.Client, member: dict[str, Any], centre_id: int) -> None:
    """A follow-up consultation that dr.zhang accepts: from then on she sees the member."""
    upload = patient.post(
        "/api/v1/uploads?purpose=evidence", files={"file": ("hba1c.png", _png(), "image/png")}
    )
    assert upload.status_code == 201, upload.text
    opened = patient.post(
        "/api/v1/consultations",
        json={
            "patient_id": member["id"],
            "centre_id": centre_id,
            "visit_type": "follow_up",
            "complaint": "夜间偶有心慌出汗，想调整血糖管理方案。",
            "prior_diagnosis": "2型糖尿病",
            "evidence_ids": [upload.json()["id"]],
        },
    )
    assert opened.status_code == 201, opened.text
    accepted = doctor.post(f"/api/v1/consultations/{opened.json()['id']}/accept")
    assert accepted.status_code == 200, accepted.text


@pytest.fixture(scope="module")
def world(server: str) -> dict[str, Any]:
    """Consultations, care plans, CGMs and their readings; returns the ids the test needs."""
    patient = api_client(server, "patient", "patient-demo-1")
    doctor = api_client(server, "dr.zhang", "doctor-demo-1")
    family = {p["name"]: p for p in patient.get("/api/v1/patients").json()}
    centres = patient.get("/api/v1/centres").json()
    diabetes = next(c for c in centres if c["code"] == "diabetes")
    now = datetime.now(UTC)
    ids: dict[str, int] = {}
    for name, profile in PATIENTS:
        member = family[name]
        ids[name] = member["id"]
        _follow(patient, doctor, member, diabetes["id"])
        plan = doctor.put(f"/api/v1/patients/{member['id']}/care-plan", json=PLAN)
        assert plan.status_code == 201, plan.text
        device = patient.post(
            f"/api/v1/patients/{member['id']}/glucose/devices",
            json={"kind": "cgm", "label": "瞬感 Libre", "unit": "mmol/L"},
        )
        assert device.status_code == 201, device.text
        readings = cgm_readings(now, profile)
        stored = patient.post(f"/api/v1/glucose/devices/{device.json()['uid']}/readings", json=readings)
        assert stored.status_code == 200, stored.text
        result = stored.json()
        assert result["stored"] == len(readings) and result["rejected"] == 0, result
        if profile.urgent_low_now:
            assert "urgent_low" in result["alerts_raised"], result
    return {"patient_id": ids[MEMBER], "ids": ids}


# --- the browser ----------------------------------------------------------------------------------


def test_glucose_care_in_the_browser(server: str, world: dict[str, Any], output_dir: Path) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    shot = shooter(output_dir, PREFIX)
    pid = world["patient_id"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            patient_ctx = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
            patient_ctx.set_default_timeout(TIMEOUT_MS)
            patient = patient_ctx.new_page()
            errors: list[str] = []
            watch_console(patient, errors)

            # --- the patient's page, in Chinese ----------------------------------------------------
            sign_in(patient, server, "patient", "patient-demo-1", f"/glucose/{pid}")
            expect(patient.locator("h1")).to_contain_text("血糖管理")
            expect(patient.locator(".mainnav a[aria-current=page]")).to_have_text("我的血糖")
            expect(patient.locator("#members a[aria-current=page]")).to_have_text(MEMBER)
            urgent = patient.locator("#alerts li[data-condition=urgent_low]")
            expect(urgent).to_have_attribute("data-status", "open")
            expect(urgent).to_contain_text("紧急低血糖")
            expect(patient.locator("#latest-value")).to_have_text(re.compile(r"^[23]\.\d$"))
            expect(patient.locator("#readings tbody tr").first).to_be_visible()
            expect(patient.locator("#current-targets")).to_have_attribute("data-preset", "standard")
            expect(patient.locator("#current-medications")).to_contain_text("二甲双胍")
            report = patient.locator("#report .agp-report")
            expect(report).to_contain_text("动态葡萄糖图谱")
            expect(report.locator("svg.agp-chart")).to_have_count(1)
            expect(patient.locator("#device-list")).to_contain_text("瞬感 Libre")
            expect(patient.locator("#notifications")).to_contain_text("紧急低血糖")
            shot(patient, "patient-zh")

            # --- in English ------------------------------------------------------------------------
            patient.click("a[data-lang=en]")
            expect(patient.locator("h1")).to_contain_text("Glucose care")
            expect(urgent).to_contain_text("Urgent low")
            expect(report).to_contain_text("Ambulatory glucose profile")
            shot(patient, "patient-en")

            # --- the patient acknowledges the urgent low -------------------------------------------
            urgent.locator("form.g-ack button").click()
            expect(patient.locator(".flash.ok")).to_contain_text("acknowledged")
            expect(urgent).to_have_attribute("data-status", "acknowledged")
            expect(urgent.locator("form.g-ack")).to_have_count(0)

            # --- and registers a meter: its secret is shown this once -------------------------------
            patient.select_option("#device-kind", "meter")
            patient.fill("#device-label", "Accu-Chek Guide")
            patient.fill("#device-utc_offset_minutes", "480")
            patient.click("#device-form button[type=submit]")
            expect(patient.locator("#device-registered")).to_contain_text("Accu-Chek Guide")
            expect(patient.locator("#new-secret")).to_have_text(re.compile(r"^gs_"))
            expect(patient.locator("#new-api-secret")).to_have_text(re.compile(r"^[0-9a-f]{40}$"))
            expect(patient.locator("#new-topic")).to_have_text(
                re.compile(r"^ehospital/glucose/gd_\w+/readings$")
            )
            patient.locator("#devices").scroll_into_view_if_needed()
            patient.locator("#devices").screenshot(path=str(output_dir / f"{PREFIX}-devices-en.png"))
            patient.goto(f"{server}/glucose/{pid}")
            expect(patient.locator("#device-registered")).to_have_count(0)  # shown once only
            expect(patient.locator("#device-list tbody tr")).to_have_count(2)
            shot(patient, "patient-acknowledged-en")

            # --- the doctor's dashboard ------------------------------------------------------------
            doctor_ctx = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
            doctor_ctx.set_default_timeout(TIMEOUT_MS)
            doctor = doctor_ctx.new_page()
            watch_console(doctor, errors)
            sign_in(doctor, server, "dr.zhang", "doctor-demo-1", "/doctor/glucose")
            expect(doctor.locator("h1")).to_have_text("血糖管理患者")
            rows = doctor.locator("#glucose-dashboard tbody tr")
            expect(rows).to_have_count(3)
            expect(rows.first).to_have_attribute("data-patient", str(pid))  # the urgent low first
            silent = doctor.locator(f"tr[data-patient='{world['ids']['李娜 Li Na']}']")
            expect(silent.locator("[data-missing=true]")).to_have_count(1)
            row = doctor.locator(f"#glucose-dashboard tr[data-patient='{pid}']")
            expect(row).to_contain_text(MEMBER)
            expect(row).to_contain_text("紧急低血糖")
            expect(row.locator(".gri")).to_have_text(re.compile(r"^[A-E]$"))
            shot(doctor, "doctor-dashboard-zh")

            # --- the patient's report page ---------------------------------------------------------
            row.locator("a").first.click()
            expect(doctor).to_have_url(re.compile(rf"/doctor/glucose/{pid}$"))
            expect(doctor.locator("#alerts li[data-condition=urgent_low]")).to_have_attribute(
                "data-status", "acknowledged"
            )
            expect(doctor.locator("#report .agp-report")).to_contain_text("国际共识指标")
            expect(doctor.locator("#plan-history li")).to_have_count(1)
            expect(doctor.locator("#plan-targets")).to_have_value("standard")
            expect(doctor.locator("#plan-low")).to_have_value("3.9")
            expect(doctor.locator("#plan-rem_note_1")).to_have_value("早餐后 2 小时")
            shot(doctor, "doctor-patient-zh")

            # --- a mistake is explained, then the plan is saved as version 2 -------------------------
            doctor.select_option("#plan-targets", "older_high_risk")
            doctor.fill("#plan-low", "abc")
            doctor.click("#plan-save")
            expect(doctor.locator("#plan .flash.error")).to_contain_text("请修改")
            expect(doctor.locator("#plan-low-error")).to_have_text("请输入数字。")
            expect(doctor.locator("#plan-targets")).to_have_value("older_high_risk")  # kept
            doctor.fill("#plan-low", "4.4")
            doctor.fill("#plan-urgent_low", "4.5")  # above the low
            doctor.fill("#plan-med_times_0", "早上8点")
            doctor.click("#plan-save")
            expect(doctor.locator("#plan-urgent_low-error")).to_contain_text("紧急低血糖阈值")
            expect(doctor.locator("#plan-med_times_0-error")).to_contain_text("HH:MM")
            shot(doctor, "doctor-plan-refused-zh")
            doctor.fill("#plan-urgent_low", "3.0")
            doctor.fill("#plan-med_times_0", "08:00 19:00")
            doctor.fill("#plan-rem_time_4", "15:00")
            doctor.select_option("#plan-rem_what_4", "meal")
            doctor.fill("#plan-rem_note_4", "下午加餐：一小把坚果")
            doctor.fill("#plan-note", "改为老年人目标；低血糖阈值提高到 4.4 mmol/L。")
            doctor.click("#plan-save")
            expect(doctor.locator(".flash.ok")).to_contain_text("新版本")
            expect(doctor.locator("#plan-history li[data-version='2']")).to_contain_text("老年或高风险人群")
            expect(doctor.locator("#plan-history li")).to_have_count(2)
            expect(doctor.locator("#current-version")).to_have_attribute("data-version", "2")
            expect(doctor.locator("#plan-targets")).to_have_value("older_high_risk")
            expect(doctor.locator("#plan-low")).to_have_value("4.4")
            expect(doctor.locator("#plan-urgent_low")).to_have_value("3.0")
            shot(doctor, "doctor-plan-v2-zh")

            # --- the standalone report page and the PDF -------------------------------------------
            response = doctor.goto(f"{server}/glucose/{pid}/report.html?lang=zh")
            assert response is not None and response.status == 200
            csp = response.headers.get("content-security-policy", "")
            assert csp == "default-src 'none'; style-src 'unsafe-inline'; img-src data:", csp
            expect(doctor.locator(".agp-report h2")).to_contain_text("动态葡萄糖图谱")
            expect(doctor.locator(".agp-report")).to_contain_text("老年或高风险人群")
            shot(doctor, "report-page-zh")
            pdf = doctor.request.get(f"{server}/glucose/{pid}/report.pdf?lang=zh")
            assert pdf.status == 200
            assert pdf.headers["content-type"] == "application/pdf"
            body = pdf.body()
            assert body.startswith(b"%PDF")
            (output_dir / f"{PREFIX}-report-zh.pdf").write_bytes(body)

            # The patient sees the new plan.
            patient.goto(f"{server}/glucose/{pid}")
            expect(patient.locator("#current-targets")).to_have_attribute("data-preset", "older_high_risk")
            expect(patient.locator("#current-reminders")).to_contain_text("15:00")
            assert not errors, errors  # no CSP violations or script errors in either console
        finally:
            browser.close()
