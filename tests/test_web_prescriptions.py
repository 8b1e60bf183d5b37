"""Prescriptions on the pages: the doctor's pad, the pharmacist's review, the patient's view."""

from __future__ import annotations

import re
from typing import Any

import httpx

from ehospital.prescriptions.models import RxStatus
from ehospital.web import i18n
from tests.personas import World
from tests.test_prescriptions import diagnosed, formulary
from tests.test_web_pages import sign_in

__all__ = ["formulary"]  # the fixture, imported for use here


def pad(world: World, **lines: Any) -> dict[str, str]:
    """The pad's fields: one metformin line (7 days) unless told otherwise."""
    body = {
        "pharmacy_id": str(world.pharmacy.id),
        "validity_days": "1",
        "drug_code_1": "t-metformin-500",
        "dose_1": "500",
        "dose_unit_1": "mg",
        "route_1": "oral",
        "frequency_1": "bid",
        "days_1": "7",
        "quantity_1": "14",
        "instructions_1": "after meals",
    }
    body.update({k: str(v) for k, v in lines.items()})
    return body


def rx_ids(page: httpx.Response) -> list[int]:
    return [int(x) for x in re.findall(r'data-prescription="(\d+)"', page.text)]


async def test_rx_status_labels_exist_in_both_languages() -> None:
    for lang in i18n.LANGS:
        missing = {f"rx_status.{s}" for s in RxStatus} - set(i18n.CATALOGS[lang])
        assert missing == set(), lang


async def test_draft_check_sign_return_answer_approve(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)

    # --- the doctor drafts 10 days: the supply rule shows next to line 1 --------------------------
    csrf = await sign_in(client, "dr.dia")
    page = await client.get(f"/consultations/{cid}")
    assert 'id="rx-pad"' in page.text and "测试药房" in page.text
    saved = await client.post(
        f"/consultations/{cid}/prescriptions", data={"csrf": csrf, **pad(world, days_1=10, quantity_1=20)}
    )
    assert saved.status_code == 303, saved.text
    page = await client.get(f"/consultations/{cid}")
    failures = re.search(r'id="rx-failures-1">(.*?)</ul>', page.text, re.S)
    assert failures and "用量 10 天超过 7 天上限" in failures.group(1)
    draft_id = int(re.search(r'name="prescription_id" value="(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    english = await client.get(f"/consultations/{cid}?lang=en")
    assert "10 days&#39; supply exceeds the limit of 7 days" in english.text
    refused = await client.post(f"/prescriptions/{draft_id}/sign", data={"csrf": csrf})
    assert refused.status_code == 422 and "prescription_rules_failed" in refused.text
    assert 'id="rx-failures-1"' in refused.text

    # --- a field error is shown on its line; the draft itself is kept -----------------------------
    bad = await client.post(
        f"/consultations/{cid}/prescriptions",
        data={"csrf": csrf, "prescription_id": str(draft_id), **pad(world, dose_1="abc")},
    )
    assert bad.status_code == 422 and 'id="rx-dose_1-error"' in bad.text

    # --- fixed, saved, signed ------------------------------------------------------------------
    fixed = await client.post(
        f"/consultations/{cid}/prescriptions",
        data={"csrf": csrf, "prescription_id": str(draft_id), **pad(world)},
    )
    assert fixed.status_code == 303
    page = await client.get(f"/consultations/{cid}")
    assert 'id="rx-failures-1"' not in page.text and 'id="rx-sign"' in page.text
    signed = await client.post(f"/prescriptions/{draft_id}/sign", data={"csrf": csrf})
    assert signed.status_code == 303, signed.text
    page = await client.get(signed.headers["location"])
    assert "The prescription was signed" in page.text and 'data-status="auto_checked"' in page.text
    assert 'class="code fingerprint"' in page.text

    # --- the pharmacist lands on the queue and returns it with a question --------------------------
    pcsrf = await sign_in(client, "pharmacist.p")
    queue = await client.get("/pharmacy")
    assert queue.status_code == 200 and draft_id in rx_ids(queue) and "E11.9" in queue.text
    review = await client.get(f"/pharmacy/prescriptions/{draft_id}")
    assert review.status_code == 200 and "Type 2 diabetes" in review.text
    assert 'id="patient-context"' in review.text
    no_reason = await client.post(
        f"/pharmacy/prescriptions/{draft_id}/review", data={"csrf": pcsrf, "decision": "return"}
    )
    assert no_reason.status_code == 422 and 'id="review-reason-error"' in no_reason.text
    returned = await client.post(
        f"/pharmacy/prescriptions/{draft_id}/review",
        data={"csrf": pcsrf, "decision": "return", "reason": "Is the kidney function known?"},
    )
    assert returned.status_code == 303

    # --- the doctor sees the question and answers ------------------------------------------------
    csrf = await sign_in(client, "dr.dia")
    page = await client.get(f"/consultations/{cid}")
    assert "Is the kidney function known?" in page.text and 'data-status="returned"' in page.text
    answered = await client.post(
        f"/prescriptions/{draft_id}/answer", data={"csrf": csrf, "text": "eGFR 85 last month"}
    )
    assert answered.status_code == 303, answered.text

    # --- the pharmacist approves -------------------------------------------------------------------
    pcsrf = await sign_in(client, "pharmacist.p")
    approved = await client.post(
        f"/pharmacy/prescriptions/{draft_id}/review", data={"csrf": pcsrf, "decision": "approve"}
    )
    assert approved.status_code == 303
    assert draft_id not in rx_ids(await client.get("/pharmacy"))

    # --- a second draft stays unseen by the patient ------------------------------------------------
    csrf = await sign_in(client, "dr.dia")
    second = await client.post(f"/consultations/{cid}/prescriptions", data={"csrf": csrf, **pad(world)})
    assert second.status_code == 303
    page = await client.get(f"/consultations/{cid}")
    doctor_sees = rx_ids(page)
    assert len(doctor_sees) == 2

    await sign_in(client, "alice")
    page = await client.get(f"/consultations/{cid}")
    assert rx_ids(page) == [draft_id] and 'data-status="approved"' in page.text
    assert 'id="rx-pad"' not in page.text
    mine = await client.get("/patient/prescriptions")
    assert rx_ids(mine) == [draft_id] and "二甲双胍" in mine.text


async def test_outsiders_get_404_and_csrf_is_enforced(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)
    csrf = await sign_in(client, "dr.dia")
    missing_token = await client.post(f"/consultations/{cid}/prescriptions", data=pad(world))
    assert missing_token.status_code == 403
    wrong_token = await client.post(
        f"/consultations/{cid}/prescriptions", data={"csrf": "0" * 64, **pad(world)}
    )
    assert wrong_token.status_code == 403
    saved = await client.post(f"/consultations/{cid}/prescriptions", data={"csrf": csrf, **pad(world)})
    assert saved.status_code == 303
    page = await client.get(f"/consultations/{cid}")
    rx_id = int(re.search(r'name="prescription_id" value="(\d+)"', page.text).group(1))  # type: ignore[union-attr]
    assert (await client.post(f"/prescriptions/{rx_id}/sign", data={})).status_code == 403

    # Another doctor: neither the consultation, its drug search nor the prescription.
    other = await sign_in(client, "dr.skin")
    assert (await client.get(f"/consultations/{cid}")).status_code == 404
    assert (await client.get(f"/consultations/{cid}/drugs?q=met")).status_code == 404
    assert (await client.post(f"/prescriptions/{rx_id}/sign", data={"csrf": other})).status_code == 404
    hijack = await client.post(
        f"/consultations/{cid}/prescriptions",
        data={"csrf": other, "prescription_id": str(rx_id), **pad(world)},
    )
    assert hijack.status_code == 404

    # A pharmacist never sees a draft; a patient never reaches the pharmacy pages.
    await sign_in(client, "pharmacist.p")
    assert (await client.get(f"/pharmacy/prescriptions/{rx_id}")).status_code == 404
    await sign_in(client, "bob")
    assert (await client.get("/pharmacy")).status_code == 403
    assert (await client.get(f"/consultations/{cid}")).status_code == 404
    assert rx_ids(await client.get("/patient/prescriptions")) == []


async def test_drug_search_json_and_the_no_script_fallback(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)
    await sign_in(client, "dr.dia")
    found = await client.get("/prescriptions/drugs.json?q=metf")
    assert found.status_code == 200
    assert [d["code"] for d in found.json()["drugs"]] == ["t-metformin-500"]
    assert (await client.get("/prescriptions/drugs.json?q=")).json() == {"drugs": []}
    page = await client.get(f"/consultations/{cid}/drugs?q=氨氯&line=2")
    assert page.status_code == 200 and "t-amlodipine-5" in page.text
    link = re.search(r'href="(/consultations/\d+\?line=2&amp;drug=t-amlodipine-5#rx-pad)"', page.text)
    assert link
    picked = await client.get(link.group(1).replace("&amp;", "&"))
    assert 'name="drug_code_2" value="t-amlodipine-5"' in picked.text

    # Only doctors use the search.
    await sign_in(client, "alice")
    assert (await client.get("/prescriptions/drugs.json?q=metf")).status_code == 403


async def test_pharmacists_land_on_the_queue(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, "pharmacist.p")
    home = await client.get("/")
    assert home.headers["location"] == "/pharmacy"


async def test_the_pad_shows_the_clinical_check_of_the_draft(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)
    csrf = await sign_in(client, "dr.dia")
    lines = {
        "drug_code_1": "t-simvastatin-20",
        "dose_1": "40",
        "frequency_1": "qd",
        "days_1": "7",
        "quantity_1": "14",
        "drug_code_2": "t-amlodipine-5",
        "dose_2": "5",
        "dose_unit_2": "mg",
        "route_2": "oral",
        "frequency_2": "qd",
        "days_2": "7",
        "quantity_2": "7",
    }
    saved = await client.post(
        f"/consultations/{cid}/prescriptions", data={"csrf": csrf, **pad(world, **lines)}
    )
    assert saved.status_code == 303, saved.text
    page = await client.get(f"/consultations/{cid}")
    preview = re.search(r'id="rx-clinical"[^>]*>(.*?)</div>\s*</div>', page.text, re.S)
    assert preview and "本草稿的临床用药审核" in preview.group(1)
    assert "辛伐他汀与氨氯地平存在相互作用" in preview.group(1) and "ANSM" in preview.group(1)
    english = await client.get(f"/consultations/{cid}?lang=en")
    assert "exceeds the 20 mg/day cap" in english.text
    # Within the cap, the check says it found nothing.
    draft_id = re.search(r'name="prescription_id" value="(\d+)"', page.text).group(1)  # type: ignore[union-attr]
    within = {**lines, "dose_1": "20", "quantity_1": "7"}
    await client.post(
        f"/consultations/{cid}/prescriptions",
        data={"csrf": csrf, "prescription_id": draft_id, **pad(world, **within)},
    )
    page = await client.get(f"/consultations/{cid}")
    assert "The clinical check finds nothing to point out in this draft." in page.text  # still English


async def test_the_pad_checks_as_the_doctor_types(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)
    csrf = await sign_in(client, "dr.dia")
    typed = {
        "drug_code_1": "t-simvastatin-20",
        "dose_1": "40",
        "frequency_1": "qd",
        "days_1": "7",
        "drug_code_2": "t-amlodipine-5",
        "dose_2": "5",
        "dose_unit_2": "mg",
        "route_2": "oral",
        "frequency_2": "qd",
        "drug_code_3": "no-such-code",
        "dose_3": "abc",
    }
    r = await client.post(
        f"/consultations/{cid}/prescriptions/check", data={"csrf": csrf, **pad(world, **typed)}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    (finding,) = body["findings"]
    assert finding["severity"] == "moderate" and finding["label"] and "辛伐他汀与氨氯地平" in finding["text"]
    assert "ANSM" in finding["source"]
    # Nothing was saved: the pad still has no draft.
    page = await client.get(f"/consultations/{cid}")
    assert 'name="prescription_id" value=""' in page.text
    within = await client.post(
        f"/consultations/{cid}/prescriptions/check",
        data={"csrf": csrf, **pad(world, **{**typed, "dose_1": "20"})},
    )
    assert within.json()["findings"] == [] and within.json()["none"]
    # CSRF, and only the assigned doctor.
    assert (
        await client.post(f"/consultations/{cid}/prescriptions/check", data=pad(world))
    ).status_code == 403
    other = await sign_in(client, "dr.skin")
    r = await client.post(f"/consultations/{cid}/prescriptions/check", data={"csrf": other, **pad(world)})
    assert r.status_code == 404
