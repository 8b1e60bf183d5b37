"""The glucose care pages without a browser: who may see them, the forms (alerts, devices, the care
plan) with their localised refusals, and the full report as a standalone page and a PDF."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ehospital.glucose.router import REPORT_PAGE_CSP
from tests.personas import World, accepted_consultation
from tests.test_glucose_ingest import register
from tests.test_web_pages import csrf_of, sign_in

PLAN: dict[str, Any] = {
    "targets": "standard",
    "timezone": "Asia/Shanghai",
    "unit": "mmol/L",
    "monitoring": [{"time": "07:00", "what": "measure", "note": "fasting"}],
    "diet": "carbohydrate 45 % of energy",
    "exercise": "150 minutes a week",
    "medications": [{"name": "metformin", "dose": "500 mg", "times": ["08:00", "20:00"]}],
}


def readings(values: list[float], end: datetime, step: int = 5) -> list[dict[str, Any]]:
    n = len(values)
    return [
        {"time": (end - timedelta(minutes=step * (n - 1 - i))).isoformat(), "value": v, "unit": "mg/dL"}
        for i, v in enumerate(values)
    ]


async def enrolled(client: httpx.AsyncClient, world: World, *, low_now: bool = True) -> int:
    """Alice, seen by Dr Dia who wrote her plan, with a CGM whose last readings are an urgent low."""
    await accepted_consultation(client, world)
    patient_id = world.alice.family[0].id
    r = await client.put(f"/api/v1/patients/{patient_id}/care-plan", headers=world.dr_dia.headers, json=PLAN)
    assert r.status_code == 201, r.text
    device = await register(client, world.alice, patient_id, unit="mg/dL")
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    values = [110.0 + (i % 36) for i in range(288)] + ([80.0, 66.0, 60.0, 55.0, 50.0] if low_now else [])
    r = await client.post(
        f"/api/v1/glucose/devices/{device['uid']}/readings",
        headers=world.alice.headers,
        json=readings(values, now),
    )
    assert r.status_code == 200, r.text
    return patient_id


def alert_id(page: httpx.Response, condition: str) -> str:
    found = re.search(rf'data-alert="(\d+)" data-condition="{condition}"', page.text)
    assert found, page.text[:3000]
    return found.group(1)


async def test_the_patient_page_shows_readings_alerts_report_and_plan(
    client: httpx.AsyncClient, world: World
) -> None:
    patient_id = await enrolled(client, world)
    await sign_in(client, "alice")
    page = await client.get(f"/glucose/{patient_id}?lang=en")
    assert page.status_code == 200, page.text
    assert 'href="/static/report.css"' in page.text
    assert '<section class="agp-report"' in page.text and "<svg" in page.text
    assert 'id="latest-value">2.8<' in page.text  # 50 mg/dL in the plan's unit
    assert 'data-condition="urgent_low" data-status="open"' in page.text
    assert "metformin" in page.text and "fasting" in page.text
    assert f'href="/glucose/{patient_id}/report.pdf?lang=en"' in page.text
    assert "style=" not in page.text and "<script>" not in page.text  # the page's CSP allows neither
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    # /glucose opens the account holder's page; the nav marks it.
    home = await client.get("/glucose")
    assert home.status_code == 200 and 'href="/glucose" aria-current="page"' in home.text
    zh = await client.get(f"/glucose/{patient_id}?lang=zh")
    assert "紧急低血糖" in zh.text and "我的管理方案" in zh.text


async def test_others_see_nothing(client: httpx.AsyncClient, world: World) -> None:
    patient_id = await enrolled(client, world)
    await sign_in(client, "bob")
    for path in (
        f"/glucose/{patient_id}",
        f"/glucose/{patient_id}/report.html",
        f"/glucose/{patient_id}/report.pdf",
    ):
        assert (await client.get(path)).status_code == 404, path
    # A doctor of the centre who never saw her: 404 too; the patient's page is not for doctors.
    await sign_in(client, "dr.dia2")
    assert (await client.get(f"/doctor/glucose/{patient_id}")).status_code == 404
    assert (await client.get(f"/glucose/{patient_id}")).status_code == 403
    assert (await client.get("/doctor/glucose")).status_code == 200
    # A doctor waiting for verification is told why the list is empty.
    await sign_in(client, "dr.new")
    waiting = await client.get("/doctor/glucose?lang=en")
    assert waiting.status_code == 200 and 'id="unverified"' in waiting.text


async def test_alerts_are_acknowledged_and_snoozed_from_the_page(
    client: httpx.AsyncClient, world: World
) -> None:
    patient_id = await enrolled(client, world)
    csrf = await sign_in(client, "alice")
    page = await client.get(f"/glucose/{patient_id}?lang=en")
    urgent = alert_id(page, "urgent_low")
    bad = await client.post(
        f"/glucose/alerts/{urgent}/snooze", data={"csrf": csrf, "patient_id": str(patient_id), "minutes": "2"}
    )
    assert bad.status_code == 422 and "Choose 5 to 1440 minutes." in bad.text
    done = await client.post(
        f"/glucose/alerts/{urgent}/acknowledge", data={"csrf": csrf, "patient_id": str(patient_id)}
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"/glucose/{patient_id}?notice=glucose_alert_acknowledged#alerts"
    page = await client.get(done.headers["location"])
    assert "The alert was acknowledged" in page.text
    assert 'data-condition="urgent_low" data-status="acknowledged"' in page.text
    snoozed = await client.post(
        f"/glucose/alerts/{urgent}/snooze",
        data={"csrf": csrf, "patient_id": str(patient_id), "minutes": "60"},
    )
    assert snoozed.status_code == 303
    assert "snoozed until" in (await client.get(snoozed.headers["location"])).text
    forged = await client.post(f"/glucose/alerts/{urgent}/acknowledge", data={"csrf": "0" * 64})
    assert forged.status_code == 403
    # The doctor acts on the same alerts from her page.
    csrf = await sign_in(client, "dr.dia")
    doctor_page = await client.get(f"/doctor/glucose/{patient_id}")
    low = alert_id(doctor_page, "low")
    done = await client.post(
        f"/glucose/alerts/{low}/acknowledge", data={"csrf": csrf, "patient_id": str(patient_id)}
    )
    assert done.headers["location"].startswith(f"/doctor/glucose/{patient_id}?notice=")


async def test_a_device_is_registered_and_its_secret_shown_once(
    client: httpx.AsyncClient, world: World
) -> None:
    patient_id = world.alice.family[0].id
    csrf = await sign_in(client, "alice")
    form = {"csrf": csrf, "kind": "meter", "label": "", "unit": "mmol/L", "utc_offset_minutes": "480"}
    refused = await client.post(f"/glucose/{patient_id}/devices?lang=en", data=form)
    assert refused.status_code == 422 and "This field is required." in refused.text
    refused = await client.post(
        f"/glucose/{patient_id}/devices?lang=en",
        data={**form, "label": "Accu-Chek", "utc_offset_minutes": "x"},
    )
    assert refused.status_code == 422 and "Enter minutes from -720 to 840" in refused.text
    assert 'value="Accu-Chek"' in refused.text  # what was typed stays
    done = await client.post(f"/glucose/{patient_id}/devices?lang=en", data={**form, "label": "Accu-Chek"})
    assert done.status_code == 200
    secret = re.search(r'id="new-secret">(gs_[^<]+)<', done.text)
    assert secret and "ehospital/glucose/gd_" in done.text
    again = await client.get(f"/glucose/{patient_id}")
    assert secret.group(1) not in again.text and "Accu-Chek" in again.text
    uid = re.search(r'data-device="(gd_\w+)"', again.text)
    assert uid
    retired = await client.post(
        f"/glucose/devices/{uid.group(1)}/retire", data={"csrf": csrf, "patient_id": str(patient_id)}
    )
    assert retired.status_code == 303 and "glucose_device_retired" in retired.headers["location"]
    # Bob cannot register a device to Alice's family.
    csrf = await sign_in(client, "bob")
    bob_try = await client.post(f"/glucose/{patient_id}/devices", data={**form, "csrf": csrf, "label": "X"})
    assert bob_try.status_code == 404


async def test_the_doctor_dashboard_and_the_plan_editor(client: httpx.AsyncClient, world: World) -> None:
    patient_id = await enrolled(client, world)
    csrf = await sign_in(client, "dr.dia")
    dash = await client.get("/doctor/glucose?lang=en")
    assert dash.status_code == 200
    row = re.search(rf'<tr data-patient="{patient_id}".*?</tr>', dash.text, re.S)
    assert row and "Urgent low" in row.group(0) and f'href="/doctor/glucose/{patient_id}"' in row.group(0)
    page = await client.get(f"/doctor/glucose/{patient_id}?lang=en")
    assert page.status_code == 200 and 'id="plan-form"' in page.text
    assert 'name="low" value="3.9"' in page.text and 'name="thresholds_unit" value="mmol/L"' in page.text
    form = dict(re.findall(r'<input id="plan-(\w+)" type="\w+" name="\w+" value="([^"]*)"', page.text))
    form |= {
        "csrf": csrf,
        "thresholds_unit": "mmol/L",
        "targets": "older_high_risk",
        "unit": "mmol/L",
        "rem_what_0": "measure",
        "diet": "less rice",
        "exercise": "",
        "note": "",
    }
    url = f"/doctor/glucose/{patient_id}/plan?lang=en"
    for change, field, message in (
        ({"low": "abc"}, "low", "Enter a number."),
        ({"urgent_low": "4.0"}, "urgent_low", "The urgent low must be at least"),
        ({"high": "9.0"}, "sustained_high", "Thresholds must rise"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
        ({"med_times_0": "8am"}, "med_times_0", "Enter times as HH:MM"),
        ({"rem_time_2": "", "rem_note_2": "no time"}, "rem_time_2", "Enter times as HH:MM"),
        ({"sustained_minutes": "1.5"}, "sustained_minutes", "Enter a whole number of minutes."),
        ({"targets": "nonsense"}, "targets", "Please choose one of the options."),
    ):
        refused = await client.post(url, data={**form, **change})
        assert refused.status_code == 422, (change, refused.status_code)
        shown = re.search(rf'id="plan-{field}-error">([^<]+)<', refused.text)
        assert shown and message in shown.group(1), (change, shown and shown.group(1))
    saved = await client.post(url, data=form)
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=glucose_plan_saved#plan")
    plan = (await client.get(f"/api/v1/patients/{patient_id}/care-plan", headers=world.dr_dia.headers)).json()
    assert plan["version"] == 2 and plan["targets"] == "older_high_risk" and plan["diet"] == "less rice"
    # Thresholds left as drawn keep their exact value: 3.9 mmol/L is still 70 mg/dL, not 70.2.
    assert plan["thresholds"]["low"] == 70 and plan["thresholds"]["high"] == 250
    assert plan["thresholds"]["rapid_fall"] == 3.0
    assert plan["monitoring"] == PLAN["monitoring"] and plan["medications"][0]["times"] == ["08:00", "20:00"]
    page = await client.get(f"/doctor/glucose/{patient_id}?lang=zh")
    assert page.text.count('<li data-version="') == 2 and "老年或高风险人群" in page.text
    # A plan with every row filled is more than the usual 64 fields of a form.
    many = {**form, **{f"rem_time_{i}": f"{i:02d}:30" for i in range(24)}}
    many |= {f"rem_what_{i}": "measure" for i in range(24)}
    saved = await client.post(url, data=many)
    assert saved.status_code == 303, saved.text[:2000]


async def test_the_full_report_as_a_page_and_a_pdf(client: httpx.AsyncClient, world: World) -> None:
    patient_id = await enrolled(client, world, low_now=False)
    await sign_in(client, "alice")
    page = await client.get(f"/glucose/{patient_id}/report.html?lang=en")
    assert page.status_code == 200 and page.headers["content-security-policy"] == REPORT_PAGE_CSP
    assert "<style>" in page.text and "Ambulatory glucose profile" in page.text
    pdf = await client.get(f"/glucose/{patient_id}/report.pdf?lang=zh")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    bad = await client.get(f"/glucose/{patient_id}/report.html?days=0")
    assert bad.status_code == 422
    await sign_in(client, "dr.dia")
    assert (await client.get(f"/glucose/{patient_id}/report.html")).status_code == 200
    assert csrf_of(await client.get(f"/doctor/glucose/{patient_id}"))
