"""The doctor's pages after the pharmacist's review: answering a returned prescription, revising
it (a new draft version whose signature supersedes the old one), withdrawing it — and everyone
who may not."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.models import AuditEvent
from ehospital.prescriptions.models import Prescription, RxEvent
from tests.personas import World
from tests.test_prescriptions import diagnosed, formulary
from tests.test_web_pages import sign_in
from tests.test_web_prescriptions import pad, rx_ids

__all__ = ["formulary"]  # the fixture, imported for use here

QUESTION = "肾功能（eGFR）是否已知？"


async def signed_on_pages(client: httpx.AsyncClient, world: World) -> tuple[int, int]:
    """A consultation, and a prescription Dr Dia drafted and signed on its page (now waiting for
    the pharmacist); Dr Dia is left signed in."""
    cid = await diagnosed(client, world)
    csrf = await sign_in(client, "dr.dia")
    saved = await client.post(f"/consultations/{cid}/prescriptions", data={"csrf": csrf, **pad(world)})
    assert saved.status_code == 303, saved.text
    rx_id = pad_draft(await client.get(f"/consultations/{cid}"))
    assert rx_id is not None
    signed = await client.post(f"/prescriptions/{rx_id}/sign", data={"csrf": csrf})
    assert signed.status_code == 303, signed.text
    return cid, rx_id


async def return_on_page(client: httpx.AsyncClient, rx_id: int, question: str = QUESTION) -> None:
    """The pharmacist returns the prescription with a question on the review page."""
    pcsrf = await sign_in(client, "pharmacist.p")
    returned = await client.post(
        f"/pharmacy/prescriptions/{rx_id}/review",
        data={"csrf": pcsrf, "decision": "return", "reason": question},
    )
    assert returned.status_code == 303, returned.text
    assert returned.headers["location"] == "/pharmacy?notice=review_return_done"


async def return_by_api(
    client: httpx.AsyncClient, world: World, rx_id: int, question: str = QUESTION
) -> None:
    returned = await client.post(
        f"/api/v1/prescriptions/{rx_id}/review",
        headers=world.pharmacist.headers,
        json={"decision": "return", "reason": question},
    )
    assert returned.status_code == 200, returned.text
    assert returned.json()["status"] == "returned"


def pad_draft(page: httpx.Response) -> int | None:
    """The draft open on the pad (None for a blank pad)."""
    found = re.search(r'name="prescription_id" value="(\d*)"', page.text)
    assert found, "no prescription pad on the page"
    return int(found.group(1)) if found.group(1) else None


def card(page: httpx.Response, rx_id: int) -> str:
    """The HTML of one prescription's card on a page."""
    found = re.search(rf'<article class="rx-card" id="rx-{rx_id}".*?</article>', page.text, re.S)
    assert found, f"no card of prescription {rx_id}"
    return found.group(0)


CONTROLS = ("rx-answer-{}", "rx-revise-{}", "rx-withdraw-{}")


def controls(html: str, rx_id: int) -> set[str]:
    """Which of the doctor's controls (answer, revise, withdraw) a card offers."""
    return {c.split("-")[1] for c in CONTROLS if f'id="{c.format(rx_id)}"' in html}


async def api_read(client: httpx.AsyncClient, world: World, rx_id: int) -> dict[str, object]:
    r = await client.get(f"/api/v1/prescriptions/{rx_id}", headers=world.dr_dia.headers)
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


async def snapshot(session: AsyncSession, cid: int) -> tuple[list[tuple[int, int, str]], int]:
    """Every prescription of a consultation (id, version, status) and how many events they have."""
    rows = await session.execute(
        select(Prescription.id, Prescription.version, Prescription.status)
        .where(Prescription.consultation_id == cid)
        .order_by(Prescription.id)
    )
    found = [(r.id, r.version, r.status) for r in rows]
    events = await session.scalar(
        select(func.count()).select_from(RxEvent).where(RxEvent.prescription_id.in_([f[0] for f in found]))
    )
    return found, events or 0


async def queue(client: httpx.AsyncClient) -> list[int]:
    """The pharmacist's review queue (signs the pharmacist in)."""
    await sign_in(client, "pharmacist.p")
    page = await client.get("/pharmacy")
    assert page.status_code == 200
    return rx_ids(page)


# --- answer -------------------------------------------------------------------------------------


async def test_returned_question_is_answered_and_goes_back_to_the_queue(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    cid, rx_id = await signed_on_pages(client, world)
    await return_on_page(client, rx_id)
    assert rx_id not in rx_ids(await client.get("/pharmacy"))
    # While it waits for the doctor the pharmacist sees the question, and no decision to take.
    review = await client.get(f"/pharmacy/prescriptions/{rx_id}")
    assert review.status_code == 200 and QUESTION in review.text
    assert 'id="review-form"' not in review.text

    # --- the doctor's page: the question and the three ways on ------------------------------------
    csrf = await sign_in(client, "dr.dia")
    page = await client.get(f"/consultations/{cid}")
    zh = card(page, rx_id)
    assert 'data-status="returned"' in zh and "药师退回" in zh
    assert f"药师提问：</strong> {QUESTION}" in zh
    assert controls(zh, rx_id) == {"answer", "revise", "withdraw"}
    assert "您的回复" in zh and "回复并重新提交" in zh and "修改处方（新版本）" in zh and "撤回处方" in zh
    en = card(await client.get(f"/consultations/{cid}?lang=en"), rx_id)
    assert "Returned with a question" in en and f"Pharmacist&#39;s question:</strong> {QUESTION}" in en
    assert "Your answer" in en and "Answer and send back" in en and "Revise (new version)" in en
    assert "Withdraw the prescription" in en

    # --- an empty or too short answer: the field says why, nothing is written ----------------------
    before = await snapshot(session, cid)
    empty = await client.post(f"/prescriptions/{rx_id}/answer?lang=zh", data={"csrf": csrf, "text": "  "})
    assert empty.status_code == 422
    assert f'<p class="field-error" id="answer-{rx_id}-text-error">此项为必填项。</p>' in empty.text
    assert "请修改下方标出的内容。" in card(empty, rx_id)
    short = await client.post(f"/prescriptions/{rx_id}/answer?lang=en", data={"csrf": csrf, "text": "x"})
    assert short.status_code == 422
    assert f'id="answer-{rx_id}-text-error">Enter at least 2 characters.</p>' in short.text
    assert 'value="x"' not in short.text and ">x</textarea>" in short.text  # the text is kept
    assert await snapshot(session, cid) == before

    # --- answered: back in review, the question gone from the doctor's card ------------------------
    answered = await client.post(
        f"/prescriptions/{rx_id}/answer?lang=zh", data={"csrf": csrf, "text": "上月 eGFR 85，肾功能正常"}
    )
    assert answered.status_code == 303, answered.text
    assert answered.headers["location"] == f"/consultations/{cid}?notice=rx_answer_done#rx-{rx_id}"
    page = await client.get(answered.headers["location"])
    assert "回复已发送，处方已返回药师审核队列。" in page.text
    zh = card(page, rx_id)
    assert 'data-status="auto_checked"' in zh and "待药师审核" in zh and QUESTION not in zh
    assert controls(zh, rx_id) == {"withdraw"}  # until the pharmacist decides
    page = await client.get(f"/consultations/{cid}?notice=rx_answer_done&lang=en")
    assert "Your answer was sent; the prescription is back in the pharmacist&#39;s queue." in page.text
    assert (await api_read(client, world, rx_id))["status"] == "auto_checked"

    # --- the pharmacist: in the queue again, with the question and the answer ----------------------
    assert rx_id in await queue(client)
    review = await client.get(f"/pharmacy/prescriptions/{rx_id}?lang=zh")
    assert QUESTION in review.text and "医生回复：</strong> 上月 eGFR 85，肾功能正常" in review.text
    assert 'id="review-form"' in review.text
    review = await client.get(f"/pharmacy/prescriptions/{rx_id}?lang=en")
    assert "Doctor&#39;s answer:</strong> 上月 eGFR 85" in review.text


# --- revise -------------------------------------------------------------------------------------


async def test_revised_version_2_replaces_the_returned_one_when_signed(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    cid, rx_id = await signed_on_pages(client, world)
    await return_by_api(client, world, rx_id, "7 days is more than she needs: 5?")
    csrf = await sign_in(client, "dr.dia")

    # --- revise: version 2 opens on the pad, a copy of version 1 -----------------------------------
    revised = await client.post(f"/prescriptions/{rx_id}/revise", data={"csrf": csrf})
    assert revised.status_code == 303, revised.text
    assert revised.headers["location"] == f"/consultations/{cid}?notice=rx_revised#rx-pad"
    page = await client.get(revised.headers["location"])
    assert "已在处方单上打开新版本：修改后请重新签名。" in page.text
    new_id = pad_draft(page)
    assert new_id is not None and new_id != rx_id
    assert f"正在编辑草稿 {new_id} 号 · 第 2 版" in page.text
    assert (
        'name="drug_code_1" value="t-metformin-500"' in page.text and 'name="days_1" value="7"' in page.text
    )
    new = card(page, new_id)
    assert 'data-status="draft"' in new and "第 2 版" in new
    old = card(page, rx_id)
    assert 'data-status="returned"' in old
    # Version 1 now points at the draft; answering or revising it again is no longer offered.
    assert f"第 2 版（处方 {new_id} 号）已在处方单上打开，签名后将替代本版本。" in old
    assert controls(old, rx_id) == {"withdraw"}
    read = await api_read(client, world, new_id)
    assert (read["status"], read["version"], read["lineage_id"]) == ("draft", 2, rx_id)
    page = await client.get(f"/consultations/{cid}?lang=en")
    assert f"editing draft No. {new_id} · version 2" in page.text
    assert f"Version 2 (No. {new_id}) is open on the prescription pad; signing it replaces this version." in (
        card(page, rx_id)
    )

    # A second click (or a stale tab) opens the same draft: no second version 2, no conflict.
    before = await snapshot(session, cid)
    again = await client.post(f"/prescriptions/{rx_id}/revise?lang=zh", data={"csrf": csrf})
    assert again.status_code == 303 and again.headers["location"] == revised.headers["location"]
    assert await snapshot(session, cid) == before

    # --- the doctor changes version 2 (5 days) and signs it -----------------------------------------
    saved = await client.post(
        f"/consultations/{cid}/prescriptions",
        data={"csrf": csrf, "prescription_id": str(new_id), **pad(world, days_1=5, quantity_1=10)},
    )
    assert saved.status_code == 303, saved.text
    signed = await client.post(f"/prescriptions/{new_id}/sign", data={"csrf": csrf})
    assert signed.status_code == 303, signed.text
    page = await client.get(signed.headers["location"])
    old, new = card(page, rx_id), card(page, new_id)
    assert 'data-status="superseded"' in old and "已被新版本替代" in old
    assert controls(old, rx_id) == set() and "rx-revision" not in old
    assert 'data-status="auto_checked"' in new and "第 2 版" in new
    assert controls(new, new_id) == {"withdraw"}
    assert pad_draft(page) is None  # the pad is blank again
    old = card(await client.get(f"/consultations/{cid}?lang=en"), rx_id)
    assert "Replaced by a new version" in old
    assert (await api_read(client, world, rx_id))["status"] == "superseded"
    assert (await api_read(client, world, new_id))["status"] == "auto_checked"

    # --- the pharmacist: version 2 waits, version 1 is done ----------------------------------------
    waiting = await queue(client)
    assert new_id in waiting and rx_id not in waiting
    listed = await client.get("/pharmacy?lang=zh")
    row = re.search(rf'<tr data-prescription="{new_id}">.*?</tr>', listed.text, re.S)
    assert row and "第 2 版" in row.group(0)
    review = await client.get(f"/pharmacy/prescriptions/{rx_id}")
    assert review.status_code == 200 and 'data-status="superseded"' in review.text
    assert 'id="review-form"' not in review.text
    review = await client.get(f"/pharmacy/prescriptions/{new_id}")
    assert 'id="review-form"' in review.text


# --- withdraw -----------------------------------------------------------------------------------


@pytest.mark.parametrize("returned", [False, True], ids=["waiting", "returned"])
async def test_withdrawing_needs_a_reason_and_takes_it_off_the_queue(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession, returned: bool
) -> None:
    cid, rx_id = await signed_on_pages(client, world)
    if returned:
        await return_by_api(client, world, rx_id)
        assert rx_id not in await queue(client)
    else:
        assert rx_id in await queue(client)
    csrf = await sign_in(client, "dr.dia")
    assert "withdraw" in controls(card(await client.get(f"/consultations/{cid}"), rx_id), rx_id)

    # --- no reason: the localised form error, the form left open, nothing written ------------------
    before = await snapshot(session, cid)
    empty = await client.post(f"/prescriptions/{rx_id}/withdraw", data={"csrf": csrf, "text": ""})
    assert empty.status_code == 422
    zh = card(empty, rx_id)
    assert '<details class="rx-withdraw" open>' in zh and "请修改下方标出的内容。" in zh
    assert f'<p class="field-error" id="withdraw-{rx_id}-text-error">此项为必填项。</p>' in zh
    english = await client.post(f"/prescriptions/{rx_id}/withdraw?lang=en", data={"csrf": csrf})
    assert english.status_code == 422
    assert f'id="withdraw-{rx_id}-text-error">This field is required.</p>' in english.text
    assert await snapshot(session, cid) == before

    # --- with a reason: withdrawn, every control gone ----------------------------------------------
    withdrawn = await client.post(
        f"/prescriptions/{rx_id}/withdraw?lang=zh", data={"csrf": csrf, "text": "患者决定到线下医院就诊"}
    )
    assert withdrawn.status_code == 303, withdrawn.text
    assert withdrawn.headers["location"] == f"/consultations/{cid}?notice=rx_withdraw_done#rx-{rx_id}"
    page = await client.get(withdrawn.headers["location"])
    assert "处方已撤回。" in page.text
    zh = card(page, rx_id)
    assert 'data-status="withdrawn"' in zh and "已撤回" in zh and controls(zh, rx_id) == set()
    assert QUESTION not in zh
    page = await client.get(f"/consultations/{cid}?notice=rx_withdraw_done&lang=en")
    assert "The prescription was withdrawn." in page.text and "Withdrawn" in card(page, rx_id)
    assert (await api_read(client, world, rx_id))["status"] == "withdrawn"

    # --- withdrawing again (a stale page): the refusal shows on the card, not a 500 -----------------
    stale = await client.post(
        f"/prescriptions/{rx_id}/withdraw?lang=zh", data={"csrf": csrf, "text": "再次撤回"}
    )
    assert stale.status_code == 409
    zh = card(stale, rx_id)
    assert "处方当前状态下不能进行此操作。" in zh and "invalid_transition" in zh

    # --- the pharmacist: gone from the queue, nothing to decide -------------------------------------
    assert rx_id not in await queue(client)
    review = await client.get(f"/pharmacy/prescriptions/{rx_id}")
    assert review.status_code == 200 and 'data-status="withdrawn"' in review.text
    assert 'id="review-form"' not in review.text


# --- who may not ----------------------------------------------------------------------------------

ACTIONS = [
    ("answer", {"text": "eGFR 85"}),
    ("revise", {}),
    ("withdraw", {"text": "not needed"}),
    ("answer", {"text": ""}),  # refused as not theirs before the form is checked
    ("withdraw", {"text": ""}),
]


async def test_colleagues_get_404_and_patients_are_refused(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    cid, rx_id = await signed_on_pages(client, world)
    await return_by_api(client, world, rx_id)
    before = await snapshot(session, cid)

    # A colleague in the same centre, and a doctor of another: the prescription does not exist.
    for doctor, persona in (("dr.dia2", world.dr_dia2), ("dr.skin", world.dr_skin)):
        csrf = await sign_in(client, doctor)
        for action, data in ACTIONS:
            r = await client.post(f"/prescriptions/{rx_id}/{action}?lang=zh", data={"csrf": csrf, **data})
            assert r.status_code == 404, (doctor, action, r.text)
            assert "处方不存在，或您无权查看。" in r.text and QUESTION not in r.text
        # Each probe is on the record.
        denied = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.actor_id == persona.account.id, AuditEvent.action == "denied")
        )
        assert denied == len(ACTIONS)

    # The patient (and the pharmacist) are not doctors: these pages are not theirs.
    for username in ("alice", "pharmacist.p"):
        csrf = await sign_in(client, username)
        for action, data in ACTIONS:
            r = await client.post(f"/prescriptions/{rx_id}/{action}?lang=en", data={"csrf": csrf, **data})
            assert r.status_code == 403, (username, action, r.text)
            assert "This page is for another kind of account." in r.text

    # Dr Dia without the form token.
    await sign_in(client, "dr.dia")
    for action, data in ACTIONS[:3]:
        assert (await client.post(f"/prescriptions/{rx_id}/{action}", data=data)).status_code == 403

    assert await snapshot(session, cid) == before
    assert (await api_read(client, world, rx_id))["status"] == "returned"


# --- the wrong moment -----------------------------------------------------------------------------


async def test_answer_or_revise_of_a_prescription_not_returned_is_a_409_on_the_page(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    cid, rx_id = await signed_on_pages(client, world)  # waiting for the pharmacist
    csrf = await sign_in(client, "dr.dia")
    before = await snapshot(session, cid)
    for action, data in (("answer", {"text": "eGFR 85"}), ("revise", {})):
        zh = await client.post(f"/prescriptions/{rx_id}/{action}?lang=zh", data={"csrf": csrf, **data})
        assert zh.status_code == 409, zh.text
        assert 'id="rx-pad"' in zh.text  # the consultation page, not an error page
        shown = card(zh, rx_id)
        assert 'role="alert"><strong>处方当前状态下不能进行此操作。</strong>' in shown
        assert "invalid_transition" in shown
        en = await client.post(f"/prescriptions/{rx_id}/{action}?lang=en", data={"csrf": csrf, **data})
        assert en.status_code == 409
        assert "This is not possible in the prescription&#39;s current state." in card(en, rx_id)
    assert await snapshot(session, cid) == before

    # After a revision is signed, the superseded version can be neither answered nor revised.
    await return_by_api(client, world, rx_id)
    csrf = await sign_in(client, "dr.dia")
    revised = await client.post(f"/prescriptions/{rx_id}/revise", data={"csrf": csrf})
    new_id = pad_draft(await client.get(revised.headers["location"]))
    assert (await client.post(f"/prescriptions/{new_id}/sign", data={"csrf": csrf})).status_code == 303
    before = await snapshot(session, cid)
    for action, data in (("answer", {"text": "eGFR 85"}), ("revise", {}), ("withdraw", {"text": "x2"})):
        r = await client.post(f"/prescriptions/{rx_id}/{action}?lang=zh", data={"csrf": csrf, **data})
        assert r.status_code == 409, (action, r.text)
        assert "处方当前状态下不能进行此操作。" in card(r, rx_id)
    assert await snapshot(session, cid) == before


async def test_a_closed_consultation_offers_no_revision(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    """Once the consultation is completed a new version could not be signed, so the card offers
    only the answer and withdrawal; a draft left behind cannot be signed either, and the page
    says why although it no longer shows the pad."""
    cid, rx_id = await signed_on_pages(client, world)
    csrf = await sign_in(client, "dr.dia")
    saved = await client.post(f"/consultations/{cid}/prescriptions", data={"csrf": csrf, **pad(world)})
    assert saved.status_code == 303
    left = pad_draft(await client.get(f"/consultations/{cid}"))
    assert left is not None
    replied = await client.post(
        f"/api/v1/consultations/{cid}/messages", headers=world.dr_dia.headers, json={"body": "见处方"}
    )
    assert replied.status_code == 201, replied.text
    done = await client.post(
        f"/api/v1/consultations/{cid}/complete", headers=world.dr_dia.headers, json={"summary": "随访"}
    )
    assert done.status_code == 200, done.text
    await return_by_api(client, world, rx_id)
    csrf = await sign_in(client, "dr.dia")
    page = await client.get(f"/consultations/{cid}")
    assert 'id="rx-pad"' not in page.text
    assert controls(card(page, rx_id), rx_id) == {"answer", "withdraw"}
    answered = await client.post(f"/prescriptions/{rx_id}/answer", data={"csrf": csrf, "text": "eGFR 85"})
    assert answered.status_code == 303
    assert (await api_read(client, world, rx_id))["status"] == "auto_checked"

    refused = await client.post(f"/prescriptions/{left}/sign?lang=zh", data={"csrf": csrf})
    assert refused.status_code == 409
    assert (
        "本次问诊已结束，不能再发送消息或开具处方。" in refused.text and "consultation_closed" in refused.text
    )
    refused = await client.post(f"/prescriptions/{left}/sign?lang=en", data={"csrf": csrf})
    assert "no more messages or prescriptions can be written in it." in refused.text
    assert (await api_read(client, world, left))["status"] == "draft"
