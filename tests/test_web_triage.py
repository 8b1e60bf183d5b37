"""The triage box on the patient's new-consultation page: a suggestion, labelled as one, whose link
preselects the centre and clinic; emergencies shown first; both languages; bad input refused."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.directory.repository import DirectoryRepository
from tests.personas import World
from tests.test_triage import seed_directory
from tests.test_web_pages import csrf_of, sign_in


async def test_the_suggestion_preselects_centre_and_clinic(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    centres = await seed_directory(session, world)
    acne = next(
        c for c in await DirectoryRepository(session).clinics([centres["skin"].id]) if c.code == "acne"
    )
    await sign_in(client, "alice")
    page = await client.get("/patient/consultations/new")
    assert page.status_code == 200 and "不确定选哪个中心" in page.text
    r = await client.post(
        "/patient/consultations/triage",
        data={"csrf": csrf_of(page), "symptoms": "脸上长了很多痘痘，不痒", "patient_id": ""},
    )
    assert r.status_code == 200, r.text
    assert "建议（非诊断）" in r.text and "皮肤病医院" in r.text and "痤疮门诊" in r.text
    assert "不是诊断" in r.text  # the disclaimer
    assert "未计入（您说没有）: 痒" in r.text
    assert 'id="triage-emergency"' not in r.text
    assert "脸上长了很多痘痘" in r.text  # the description stays in the box
    link = re.search(r'href="(/patient/consultations/new\?centre=\d+[^"]*)"', r.text)
    assert link, r.text
    url = link.group(1).replace("&amp;", "&")
    assert f"centre={centres['skin'].id}" in url and f"clinic={acne.id}" in url
    form = await client.get(url)
    assert form.status_code == 200
    assert re.search(rf'<option value="{centres["skin"].id}"[^>]*selected', form.text)
    assert re.search(rf'<option value="{acne.id}"[^>]*selected', form.text)


async def test_english_and_an_emergency(
    client: httpx.AsyncClient, session: AsyncSession, world: World
) -> None:
    await seed_directory(session, world)
    await sign_in(client, "alice")
    page = await client.get("/patient/consultations/new?lang=en")
    assert "Not sure which centre? Describe your symptoms" in page.text
    r = await client.post(
        "/patient/consultations/triage",
        data={"csrf": csrf_of(page), "symptoms": "crushing chest pain spreading to my left arm, sweating"},
    )
    assert r.status_code == 200
    emergency = r.text.index('id="triage-emergency"')
    assert "Call 120 now" in r.text[emergency:]
    assert emergency < r.text.index("Suggestion (not a diagnosis)")  # shown before any suggestion
    r = await client.post(
        "/patient/consultations/triage", data={"csrf": csrf_of(page), "symptoms": "a toothache since Monday"}
    )
    assert r.status_code == 200 and "could not tell from this description" in r.text


async def test_bad_input_and_who_may_post(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, "alice")
    page = await client.get("/patient/consultations/new?lang=en")
    csrf = csrf_of(page)
    r = await client.post("/patient/consultations/triage", data={"csrf": csrf, "symptoms": "  "})
    assert r.status_code == 422 and "Describe the symptoms first." in r.text
    r = await client.post("/patient/consultations/triage", data={"csrf": csrf, "symptoms": "x" * 2001})
    assert r.status_code == 422 and "limited to 2000 characters" in r.text
    r = await client.post("/patient/consultations/triage", data={"csrf": csrf})
    assert r.status_code == 422
    r = await client.post("/patient/consultations/triage", data={"symptoms": "acne"})
    assert r.status_code == 403
    doctor_csrf = await sign_in(client, "dr.dia")
    r = await client.post("/patient/consultations/triage", data={"csrf": doctor_csrf, "symptoms": "acne"})
    assert r.status_code == 403
