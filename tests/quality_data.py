"""Consultations with known timestamps for the quality dashboard's tests (API and pages)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.consultations.models import Consultation, Message
from ehospital.directory.models import Centre
from ehospital.patients.models import Patient
from ehospital.pharmacy.models import EventCode, Order, OrderEvent, PaymentNotice
from ehospital.prescriptions.models import Prescription
from tests.personas import Persona, World

CST = timezone(timedelta(hours=8))
FIRST, LAST = "2026-03-02", "2026-03-03"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of March 2026 in China time."""
    return datetime(2026, 3, day, hour, minute, tzinfo=CST)


async def consult(
    session: AsyncSession,
    *,
    patient: Patient,
    centre: Centre,
    requested: datetime,
    status: str,
    doctor: Persona | None = None,
    accepted_after: int | None = None,
    ended_after: int | None = None,
    messages: Sequence[tuple[int, str, str]] = (),
) -> Consultation:
    """A consultation requested at `requested`; times after it in minutes; messages are
    (minutes, sender role, kind)."""

    def later(minutes: int | None) -> datetime | None:
        return None if minutes is None else requested + timedelta(minutes=minutes)

    c = Consultation(
        patient_id=patient.id,
        account_id=patient.account_id,
        centre_id=centre.id,
        doctor_id=doctor.doctor_id if doctor else None,
        status=status,
        complaint="glucose above target",
        prior_diagnosis="Type 2 diabetes",
        price_cents=5000,
        expires_at=requested + timedelta(minutes=30),
        accepted_at=later(accepted_after),
        ended_at=later(ended_after),
        created_at=requested,
        last_seq=len(messages),
    )
    session.add(c)
    await session.flush()
    for seq, (minutes, role, kind) in enumerate(messages, start=1):
        sender = {"doctor": doctor.account.id if doctor else None, "patient": patient.account_id}.get(role)
        session.add(
            Message(
                consultation_id=c.id,
                seq=seq,
                sender_id=sender,
                sender_role=role,
                kind=kind,
                body="…",
                created_at=requested + timedelta(minutes=minutes),
            )
        )
    await session.flush()
    return c


async def refund_due(
    session: AsyncSession,
    world: World,
    c: Consultation,
    doctor: Persona,
    when: datetime,
    cents: int,
    txn: str,
) -> None:
    """A pharmacy order of the consultation, cancelled, whose payment arrived afterwards."""
    rx = Prescription(
        consultation_id=c.id,
        patient_id=c.patient_id,
        doctor_id=doctor.doctor_id,
        status="cancelled",
        diagnosis_code="E11.9",
        diagnosis_text="Type 2 diabetes",
        pharmacy_id=world.pharmacy.id,
    )
    session.add(rx)
    await session.flush()
    order = Order(
        prescription_id=rx.id,
        pharmacy_id=world.pharmacy.id,
        account_id=c.account_id,
        patient_id=c.patient_id,
        status="cancelled",
        amount_cents=cents,
        refund_due_cents=cents,
    )
    session.add(order)
    await session.flush()
    session.add(
        PaymentNotice(provider="local", txn_id=txn, nonce=f"n-{txn}", order_id=order.id, amount_cents=cents)
    )
    session.add(
        OrderEvent(order_id=order.id, at=when, status="cancelled", code=EventCode.REFUND_DUE, txn_id=txn)
    )
    await session.flush()


async def quality_story(session: AsyncSession, world: World) -> dict[str, Consultation]:
    """Two days of the diabetes centre (and one skin consultation) with known outcomes.

    2 March (China time), diabetes: six requests. Dr Dia answers c1 after 5 minutes (after a system
    line and the patient's own message, which do not count) and c2 after 15 (an image), both
    completed; Dr Dia2 answers c3 after 45 minutes and is still talking; c4 expired; c5 cancelled;
    c6 comes at 23:59 and waits. 3 March: c7 at 00:01 (UTC: still 2 March) answered after
    60 minutes, completed. c0 was requested on 1 March (outside the period) but completed on
    2 March. A refund of ¥42.00 fell due on 3 March for c1's order, and one of ¥9.99 in skin.
    """
    alice, sam = world.alice.family
    bob = world.bob.family[0]
    dia, skin = world.diabetes, world.skin
    done = "completed"
    cs = {
        "c0": await consult(
            session,
            patient=bob,
            centre=dia,
            requested=at(1, 23),
            status=done,
            doctor=world.dr_dia,
            accepted_after=5,
            ended_after=90,
            messages=[(5, "system", "event"), (20, "doctor", "text")],
        ),
        "c1": await consult(
            session,
            patient=alice,
            centre=dia,
            requested=at(2, 10),
            status=done,
            doctor=world.dr_dia,
            accepted_after=2,
            ended_after=30,
            messages=[
                (1, "patient", "text"),
                (2, "system", "event"),
                (5, "doctor", "text"),
                (6, "doctor", "text"),
            ],
        ),
        "c2": await consult(
            session,
            patient=sam,
            centre=dia,
            requested=at(2, 10),
            status=done,
            doctor=world.dr_dia,
            accepted_after=14,
            ended_after=40,
            messages=[(14, "system", "event"), (15, "doctor", "image")],
        ),
        "c3": await consult(
            session,
            patient=alice,
            centre=dia,
            requested=at(2, 11),
            status="in_progress",
            doctor=world.dr_dia2,
            accepted_after=40,
            messages=[(40, "system", "event"), (45, "doctor", "text")],
        ),
        "c4": await consult(
            session, patient=bob, centre=dia, requested=at(2, 12), status="expired", ended_after=30
        ),
        "c5": await consult(
            session,
            patient=bob,
            centre=dia,
            requested=at(2, 13),
            status="cancelled",
            ended_after=3,
            messages=[(3, "system", "event")],
        ),
        "c6": await consult(session, patient=sam, centre=dia, requested=at(2, 23, 59), status="requested"),
        "c7": await consult(
            session,
            patient=bob,
            centre=dia,
            requested=at(3, 0, 1),
            status=done,
            doctor=world.dr_dia2,
            accepted_after=50,
            ended_after=120,
            messages=[(50, "system", "event"), (60, "doctor", "text")],
        ),
        "c8": await consult(
            session,
            patient=bob,
            centre=skin,
            requested=at(2, 9),
            status=done,
            doctor=world.dr_skin,
            accepted_after=8,
            ended_after=20,
            messages=[(10, "doctor", "text")],
        ),
    }
    await refund_due(session, world, cs["c1"], world.dr_dia, at(3, 9), 4200, "txn-dia")
    await refund_due(session, world, cs["c8"], world.dr_skin, at(2, 16), 999, "txn-skin")
    await session.commit()
    return cs
