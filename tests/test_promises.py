"""Response-time promises: the stored first-answer deadline, the sweep that finds a late answer,
the offer to other doctors, cancellation with a full refund, refunds on expiry, and the
patient's place in the queue with an estimated wait."""

from __future__ import annotations

from datetime import time, timedelta

import httpx
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.config import Settings
from ehospital.consultations.models import Consultation
from ehospital.consultations.service import HOSPITAL_ZONE, ConsultationService
from ehospital.directory.models import RosterSlot
from ehospital.kit.models import utcnow
from ehospital.kit.storage import LocalFileStore
from tests.personas import World, accepted_consultation, open_consultation


def _service(session: AsyncSession, settings: Settings) -> ConsultationService:
    return ConsultationService(session, settings, LocalFileStore(settings.upload_dir))


async def _overdue(session: AsyncSession, consultation_id: int, **values: object) -> None:
    await session.execute(
        update(Consultation)
        .where(Consultation.id == consultation_id)
        .values(first_response_due_at=utcnow() - timedelta(minutes=1), **values)
    )
    await session.commit()


async def test_the_first_answer_deadline_is_stored_from_the_centres_promise(
    client: httpx.AsyncClient, world: World
) -> None:
    c = await open_consultation(client, world)
    created = c["created_at"]
    due = c["first_response_due_at"]
    assert due is not None and c["late_at"] is None and c["refund_cents"] is None
    from datetime import datetime

    gap = datetime.fromisoformat(due) - datetime.fromisoformat(created)
    assert abs(gap - timedelta(minutes=world.diabetes.first_response_minutes)) < timedelta(seconds=2)


async def test_a_late_first_answer_is_offered_to_other_doctors_and_may_be_taken_over(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    c = await accepted_consultation(client, world)  # accepted by dr_dia, who says nothing
    cid = c["id"]
    before = (await client.get("/api/v1/consultations/queue", headers=world.dr_dia2.headers)).json()
    assert cid not in [q["id"] for q in before]
    await _overdue(session, cid)
    service = _service(session, settings)
    assert await service.sweep_late() == [cid]
    await session.commit()
    assert await service.sweep_late() == []  # marked once
    await session.commit()

    read = (await client.get(f"/api/v1/consultations/{cid}", headers=world.alice.headers)).json()
    assert read["late_at"] is not None and read["status"] == "accepted"
    lines = (await client.get(f"/api/v1/consultations/{cid}/messages", headers=world.alice.headers)).json()
    assert lines[-1]["body"] == "the first answer is late"
    wait = (await client.get(f"/api/v1/consultations/{cid}/wait", headers=world.alice.headers)).json()
    assert wait["late"] is True and wait["can_cancel_for_refund"] is True

    # Offered to the colleague, not back to the doctor who did not answer.
    offered = (await client.get("/api/v1/consultations/queue", headers=world.dr_dia2.headers)).json()
    assert [q["late"] for q in offered if q["id"] == cid] == [True]
    own = (await client.get("/api/v1/consultations/queue", headers=world.dr_dia.headers)).json()
    assert cid not in [q["id"] for q in own]
    other_centre = await client.post(f"/api/v1/consultations/{cid}/accept", headers=world.dr_skin.headers)
    assert other_centre.status_code == 404
    taken = await client.post(f"/api/v1/consultations/{cid}/accept", headers=world.dr_dia2.headers)
    assert taken.status_code == 200, taken.text
    assert taken.json()["doctor_id"] == world.dr_dia2.doctor_id
    # The new doctor has a fresh deadline; it is no longer on offer, not even to the first doctor.
    again = await client.post(f"/api/v1/consultations/{cid}/accept", headers=world.dr_dia.headers)
    assert again.status_code == 404
    assert cid not in [
        q["id"]
        for q in (await client.get("/api/v1/consultations/queue", headers=world.dr_dia.headers)).json()
    ]
    # The first doctor no longer sees it; the new one answers and the promise is kept from then on.
    gone = await client.get(f"/api/v1/consultations/{cid}", headers=world.dr_dia.headers)
    assert gone.status_code == 404
    answered = await client.post(
        f"/api/v1/consultations/{cid}/messages",
        headers=world.dr_dia2.headers,
        json={"body": "我来看一下您的血糖记录"},
    )
    assert answered.status_code == 201
    read = (await client.get(f"/api/v1/consultations/{cid}", headers=world.alice.headers)).json()
    assert read["first_response_at"] is not None and read["status"] == "in_progress"
    lines = (await client.get(f"/api/v1/consultations/{cid}/messages", headers=world.alice.headers)).json()
    assert any(m["body"].startswith("taken over by ") for m in lines)
    wait = (await client.get(f"/api/v1/consultations/{cid}/wait", headers=world.alice.headers)).json()
    assert wait["late"] is False and wait["can_cancel_for_refund"] is False
    assert read["late_at"] is None


async def test_an_answer_in_time_is_never_late(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    c = await accepted_consultation(client, world)
    r = await client.post(
        f"/api/v1/consultations/{c['id']}/messages", headers=world.dr_dia.headers, json={"body": "您好"}
    )
    assert r.status_code == 201
    await _overdue(session, c["id"])
    assert await _service(session, settings).sweep_late() == []


async def test_cancelling_before_an_answer_refunds_in_full(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    c = await accepted_consultation(client, world)
    await _overdue(session, c["id"])
    await _service(session, settings).sweep_late()
    await session.commit()
    r = await client.post(f"/api/v1/consultations/{c['id']}/cancel", headers=world.alice.headers, json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "cancelled"
    assert body["refund_cents"] == c["price_cents"] and body["refund_reason"] == "late_first_response"
    assert body["refunded_at"] is not None
    # The centre's quality dashboard counts the refund on the day it was made.
    board = (await client.get("/api/v1/quality/dashboard", headers=world.admin.headers)).json()
    assert board["totals"]["refunds"] >= 1 and board["totals"]["refund_cents"] >= c["price_cents"]


async def test_an_expired_request_is_refunded_automatically(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    c = await open_consultation(client, world)
    await session.execute(
        update(Consultation)
        .where(Consultation.id == c["id"])
        .values(expires_at=utcnow() - timedelta(minutes=1))
    )
    await session.commit()
    assert await _service(session, settings).expire_due() == 1
    await session.commit()
    body = (await client.get(f"/api/v1/consultations/{c['id']}", headers=world.alice.headers)).json()
    assert body["status"] == "expired"
    assert (body["refund_cents"], body["refund_reason"]) == (c["price_cents"], "expired")


async def test_the_patient_sees_the_place_in_the_queue_and_an_estimate(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    first = await open_consultation(client, world)
    second = await open_consultation(client, world, who=world.bob)
    # Nobody on the roster now: no estimate, but the place is known.
    await session.execute(delete(RosterSlot))
    await session.commit()
    w1 = (await client.get(f"/api/v1/consultations/{first['id']}/wait", headers=world.alice.headers)).json()
    w2 = (await client.get(f"/api/v1/consultations/{second['id']}/wait", headers=world.bob.headers)).json()
    assert (w1["position"], w2["position"]) == (1, 2)
    assert w2["doctors_on_duty"] == 0 and w2["estimated_wait_minutes"] is None
    # Both diabetes doctors on duty around the clock today: an estimate appears.
    today = utcnow().astimezone(HOSPITAL_ZONE).weekday()
    for persona in (world.dr_dia, world.dr_dia2):
        session.add(
            RosterSlot(doctor_id=persona.doctor_id, weekday=today, starts=time(0, 0), ends=time(23, 59, 59))
        )
    await session.commit()
    w2 = (await client.get(f"/api/v1/consultations/{second['id']}/wait", headers=world.bob.headers)).json()
    assert w2["doctors_on_duty"] == 2 and w2["estimated_wait_minutes"] >= 1
    # Someone else's consultation: not found.
    other = await client.get(f"/api/v1/consultations/{second['id']}/wait", headers=world.alice.headers)
    assert other.status_code == 404
    # Once accepted, there is no place in the queue any more.
    await client.post(f"/api/v1/consultations/{first['id']}/accept", headers=world.dr_dia.headers)
    w1 = (await client.get(f"/api/v1/consultations/{first['id']}/wait", headers=world.alice.headers)).json()
    assert w1["position"] is None and w1["status"] == "accepted"


async def _codes(client: httpx.AsyncClient, headers: dict[str, str], cid: int) -> list[str]:
    found = (await client.get("/api/v1/notifications", headers=headers)).json()
    return [n["code"] for n in found if n["subject_id"] == cid]


async def test_on_duty_doctors_are_told_of_new_and_late_consultations(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    await session.execute(delete(RosterSlot))
    today = utcnow().astimezone(HOSPITAL_ZONE).weekday()
    for persona in (world.dr_dia, world.dr_dia2):
        session.add(
            RosterSlot(doctor_id=persona.doctor_id, weekday=today, starts=time(0, 0), ends=time(23, 59, 59))
        )
    await session.commit()
    c = await open_consultation(client, world)
    cid = c["id"]
    assert await _codes(client, world.dr_dia.headers, cid) == ["consultation_waiting"]
    assert await _codes(client, world.dr_dia2.headers, cid) == ["consultation_waiting"]
    assert await _codes(client, world.dr_skin.headers, cid) == []  # another centre
    accepted = await client.post(f"/api/v1/consultations/{cid}/accept", headers=world.dr_dia.headers)
    assert accepted.status_code == 200
    await _overdue(session, cid)
    await _service(session, settings).sweep_late()
    await session.commit()
    # Offered to the colleague only, not to the doctor who did not answer.
    assert await _codes(client, world.dr_dia2.headers, cid) == ["consultation_late", "consultation_waiting"]
    assert await _codes(client, world.dr_dia.headers, cid) == ["consultation_waiting"]


async def test_a_late_request_addressed_to_one_doctor_is_offered_to_the_others(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    c = await open_consultation(client, world, doctor=world.dr_dia)
    cid = c["id"]
    queue = (await client.get("/api/v1/consultations/queue", headers=world.dr_dia2.headers)).json()
    assert cid not in [q["id"] for q in queue]
    await _overdue(session, cid)
    await _service(session, settings).sweep_late()
    await session.commit()
    queue = (await client.get("/api/v1/consultations/queue", headers=world.dr_dia2.headers)).json()
    assert [q["late"] for q in queue if q["id"] == cid] == [True]
    taken = await client.post(f"/api/v1/consultations/{cid}/accept", headers=world.dr_dia2.headers)
    assert taken.status_code == 200, taken.text
    assert taken.json()["status"] == "accepted" and taken.json()["doctor_id"] == world.dr_dia2.doctor_id


async def test_an_administrator_sets_a_centres_promise(client: httpx.AsyncClient, world: World) -> None:
    r = await client.patch(
        f"/api/v1/centres/{world.diabetes.id}",
        headers=world.admin.headers,
        json={"first_response_minutes": 30},
    )
    assert r.status_code == 200 and r.json()["first_response_minutes"] == 30
    c = await open_consultation(client, world)
    from datetime import datetime

    gap = datetime.fromisoformat(c["first_response_due_at"]) - datetime.fromisoformat(c["created_at"])
    assert abs(gap - timedelta(minutes=30)) < timedelta(seconds=2)
    for bad in (0, 1441, "soon"):
        refused = await client.patch(
            f"/api/v1/centres/{world.diabetes.id}",
            headers=world.admin.headers,
            json={"first_response_minutes": bad},
        )
        assert refused.status_code == 422
    doctor = await client.patch(
        f"/api/v1/centres/{world.diabetes.id}",
        headers=world.dr_dia.headers,
        json={"first_response_minutes": 1},
    )
    assert doctor.status_code == 403


async def test_a_consultation_past_its_close_promise_is_marked_and_the_doctor_reminded(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    from datetime import datetime

    c = await accepted_consultation(client, world)
    cid = c["id"]
    gap = datetime.fromisoformat(c["close_due_at"]) - datetime.fromisoformat(c["accepted_at"])
    assert abs(gap - timedelta(hours=world.diabetes.close_within_hours)) < timedelta(seconds=2)
    service = _service(session, settings)
    assert await service.sweep_overdue() == []  # not due yet
    await session.execute(
        update(Consultation)
        .where(Consultation.id == cid)
        .values(close_due_at=utcnow() - timedelta(minutes=1))
    )
    await session.commit()
    assert await service.sweep_overdue() == [cid]
    await session.commit()
    assert await service.sweep_overdue() == []  # marked once
    read = (await client.get(f"/api/v1/consultations/{cid}", headers=world.alice.headers)).json()
    assert read["overdue_at"] is not None and read["status"] == "accepted"  # nothing closed on its own
    lines = (await client.get(f"/api/v1/consultations/{cid}/messages", headers=world.alice.headers)).json()
    assert lines[-1]["body"] == "the consultation is past its close promise"
    assert await _codes(client, world.dr_dia.headers, cid) == ["consultation_overdue"]
    # A completed consultation is never overdue.
    await client.post(
        f"/api/v1/consultations/{cid}/messages", headers=world.dr_dia.headers, json={"body": "血糖控制尚可"}
    )
    await client.post(
        f"/api/v1/consultations/{cid}/diagnosis",
        headers=world.dr_dia.headers,
        json={"code": "E11.9", "text": "2型糖尿病"},
    )
    completed = await client.post(
        f"/api/v1/consultations/{cid}/complete",
        headers=world.dr_dia.headers,
        json={"summary": "继续二甲双胍"},
    )
    assert completed.status_code == 200, completed.text
    patched = await client.patch(
        f"/api/v1/centres/{world.diabetes.id}", headers=world.admin.headers, json={"close_within_hours": 48}
    )
    assert patched.status_code == 200 and patched.json()["close_within_hours"] == 48
