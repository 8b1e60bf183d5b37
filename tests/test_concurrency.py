"""Requests racing each other, each in its own real transaction (no rollback fixture here).

On PostgreSQL these run truly in parallel on separate connections; on SQLite the single writer
serialises them. The rules must hold either way.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.errors import LoginFailed, LoginThrottled
from ehospital.auth.service import AuthService
from ehospital.consultations.models import Attachment, Consultation
from ehospital.consultations.schemas import ConsultationCreate
from ehospital.consultations.service import ConsultationService
from ehospital.db import create_sessionmaker, session_scope
from ehospital.directory.models import Doctor
from ehospital.kit.context import Actor
from ehospital.kit.errors import DomainError
from ehospital.kit.storage import LocalFileStore
from tests.conftest import Database, fresh_database
from tests.personas import PASSWORD, World, build_world, png_bytes


@pytest.fixture(scope="module")
async def database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Database]:
    """These tests commit for real: their own database, so other modules never see their rows."""
    async for db in fresh_database(backend, tmp_path_factory):
        yield db


async def race(database: Database, n: int, job: Callable[[AsyncSession, int], Awaitable[Any]]) -> list[Any]:
    """Run `job` n times at once, each in its own session and transaction; returns results or errors."""
    factory = create_sessionmaker(database.engine)

    async def one(i: int) -> Any:
        try:
            async with session_scope(factory) as session:
                return await job(session, i)
        except DomainError as exc:
            return exc

    return await asyncio.gather(*(one(i) for i in range(n)))


async def committed_world(database: Database) -> World:
    async with session_scope(create_sessionmaker(database.engine)) as session:
        return await build_world(session, database.settings, tag=f"-{uuid.uuid4().hex[:6]}")


def actor_of(world_persona: Any, *, doctor_centre: int | None = None) -> Actor:
    from ehospital.auth.models import Role

    account = world_persona.account
    doctor = world_persona.doctor
    return Actor(
        account_id=account.id,
        role=Role(account.role),
        username=account.username,
        display_name=account.display_name,
        doctor_id=doctor.id if doctor else None,
        doctor_centre_id=doctor.centre_id if doctor else None,
        organisation_id=account.organisation_id,
        doctor_verified=bool(doctor and doctor.verified_at),
    )


async def test_parallel_wrong_passwords_are_counted_one_by_one(database: Database) -> None:
    world = await committed_world(database)
    username = world.alice.account.username

    async def attempt(session: AsyncSession, i: int) -> Any:
        # Distinct addresses: only the per-account limit (5) applies.
        return await AuthService(session, database.settings).login(username, "wrong!", address=f"10.9.0.{i}")

    results = await race(database, 12, attempt)
    assert sum(isinstance(r, LoginFailed) for r in results) == 5
    assert sum(isinstance(r, LoginThrottled) for r in results) == 7
    throttled = await race(
        database,
        1,
        lambda s, i: AuthService(s, database.settings).login(username, PASSWORD, address="10.9.1.1"),
    )
    assert isinstance(throttled[0], LoginThrottled)


async def test_parallel_opens_make_one_consultation(database: Database, tmp_path: Any) -> None:
    world = await committed_world(database)
    alice = actor_of(world.alice)
    files = LocalFileStore(tmp_path)
    uploads: list[int] = []
    async with session_scope(create_sessionmaker(database.engine)) as session:
        service = ConsultationService(session, database.settings, files)
        for _ in range(4):
            upload = await service.upload(
                alice, filename="r.png", declared_type="image/png", data=png_bytes(), purpose="evidence"
            )
            uploads.append(upload.id)

    async def open_one(session: AsyncSession, i: int) -> Any:
        data = ConsultationCreate(
            patient_id=world.alice.family[0].id,
            centre_id=world.diabetes.id,
            visit_type="follow_up",
            complaint="high glucose",
            prior_diagnosis="T2DM",
            evidence_ids=[uploads[i]],
        )
        return await ConsultationService(session, database.settings, files).open(alice, data)

    results = await race(database, 4, open_one)
    opened = [r for r in results if isinstance(r, Consultation)]
    refused = [r for r in results if isinstance(r, DomainError)]
    assert len(opened) == 1, results
    assert {e.code for e in refused} <= {"open_consultation_exists"}
    async with session_scope(create_sessionmaker(database.engine)) as session:
        open_count = await session.scalar(
            select(func.count())
            .select_from(Consultation)
            .where(Consultation.patient_id == world.alice.family[0].id)
        )
        attached = await session.scalar(
            select(func.count()).select_from(Attachment).where(Attachment.consultation_id == opened[0].id)
        )
    assert (open_count, attached) == (1, 1)


async def test_one_upload_cannot_serve_two_consultations(database: Database, tmp_path: Any) -> None:
    world = await committed_world(database)
    alice = actor_of(world.alice)
    files = LocalFileStore(tmp_path)
    async with session_scope(create_sessionmaker(database.engine)) as session:
        upload = await ConsultationService(session, database.settings, files).upload(
            alice, filename="r.png", declared_type="image/png", data=png_bytes(), purpose="evidence"
        )

    async def open_one(session: AsyncSession, i: int) -> Any:
        data = ConsultationCreate(
            patient_id=world.alice.family[i].id,
            centre_id=world.diabetes.id,
            visit_type="follow_up",
            complaint="high glucose",
            prior_diagnosis="T2DM",
            evidence_ids=[upload.id],
        )
        return await ConsultationService(session, database.settings, files).open(alice, data)

    results = await race(database, 2, open_one)  # Alice and her son, the same evidence
    assert sum(isinstance(r, Consultation) for r in results) == 1, results
    assert [r.code for r in results if isinstance(r, DomainError)] == ["evidence_not_found"]


async def test_a_doctor_at_capacity_accepts_no_more(database: Database, tmp_path: Any) -> None:
    world = await committed_world(database)
    files = LocalFileStore(tmp_path)
    factory = create_sessionmaker(database.engine)
    patients = [world.alice.family[0], world.alice.family[1], world.bob.family[0]]
    owners = [world.alice, world.alice, world.bob]
    ids = []
    for patient, owner in zip(patients, owners, strict=True):
        async with session_scope(factory) as session:
            service = ConsultationService(session, database.settings, files)
            who = actor_of(owner)
            upload = await service.upload(
                who, filename="r.png", declared_type="image/png", data=png_bytes(), purpose="evidence"
            )
            consultation = await service.open(
                who,
                ConsultationCreate(
                    patient_id=patient.id,
                    centre_id=world.diabetes.id,
                    visit_type="follow_up",
                    complaint="high glucose",
                    prior_diagnosis="T2DM",
                    evidence_ids=[upload.id],
                ),
            )
            ids.append(consultation.id)
    async with session_scope(factory) as session:
        await session.execute(
            update(Doctor).where(Doctor.id == world.dr_dia.doctor_id).values(max_concurrent=2)
        )
    doctor = actor_of(world.dr_dia)

    async def accept(session: AsyncSession, i: int) -> Any:
        return await ConsultationService(session, database.settings, files).accept(doctor, ids[i])

    results = await race(database, 3, accept)
    assert sum(isinstance(r, Consultation) for r in results) == 2, results
    assert [r.code for r in results if isinstance(r, DomainError)] == ["doctor_at_capacity"]


async def test_parallel_dispensing_never_takes_stock_below_zero(database: Database, tmp_path: Any) -> None:
    """Three paid orders of 14 tablets each race for a lot of 30: two are dispensed, one is refused."""
    from datetime import date, timedelta
    from decimal import Decimal

    from ehospital.auth.models import Role
    from ehospital.consultations.schemas import DiagnosisIn
    from ehospital.pharmacy.models import Order, StockLot
    from ehospital.pharmacy.payments import HmacProvider
    from ehospital.pharmacy.service import OrderService
    from ehospital.prescriptions.models import Drug
    from ehospital.prescriptions.schemas import ItemIn, PrescriptionIn, ReviewIn
    from ehospital.prescriptions.service import PrescriptionService
    from ehospital.prescriptions.signing import KeyStore

    world = await committed_world(database)
    factory = create_sessionmaker(database.engine)
    files, keys = LocalFileStore(tmp_path / "files"), KeyStore(tmp_path / "keys")
    provider = HmacProvider("local", b"s")
    code = f"race-metformin-{uuid.uuid4().hex[:6]}"
    async with session_scope(factory) as session:
        drug = Drug(
            code=code,
            generic_en="metformin",
            generic_zh="二甲双胍",
            form="tablet",
            strength="500",
            unit="mg",
            route="oral",
            atc="A10BA02",
            rx_only=True,
            control="none",
            price_cents=10,
            category="diabetes",
        )
        session.add(drug)
        await session.flush()
        session.add(
            StockLot(
                pharmacy_id=world.pharmacy.id,
                drug_id=drug.id,
                lot_number="RACE",
                expires_on=date.today() + timedelta(days=90),
                quantity=30,
            )
        )
    pharmacist = actor_of(world.pharmacist)
    doctor = actor_of(world.dr_dia)
    order_ids = []
    for patient, owner in (
        (world.alice.family[0], world.alice),
        (world.alice.family[1], world.alice),
        (world.bob.family[0], world.bob),
    ):
        who = actor_of(owner)
        async with session_scope(factory) as session:
            consultations = ConsultationService(session, database.settings, files)
            upload = await consultations.upload(
                who, filename="r.png", declared_type="image/png", data=png_bytes(), purpose="evidence"
            )
            c = await consultations.open(
                who,
                ConsultationCreate(
                    patient_id=patient.id,
                    centre_id=world.diabetes.id,
                    visit_type="follow_up",
                    complaint="glucose",
                    prior_diagnosis="T2DM",
                    evidence_ids=[upload.id],
                ),
            )
            await consultations.accept(doctor, c.id)
            await consultations.diagnose(doctor, c.id, DiagnosisIn(code="E11.9", text="T2DM"))
            rx_service = PrescriptionService(session, keys)
            rx = await rx_service.create(
                doctor,
                c.id,
                PrescriptionIn(
                    pharmacy_id=world.pharmacy.id,
                    items=[
                        ItemIn(
                            drug_code=code,
                            dose=Decimal(500),
                            dose_unit="mg",
                            route="oral",
                            frequency="bid",
                            days=7,
                            quantity=14,
                        )
                    ],
                ),
            )
            await rx_service.sign(doctor, rx.id)
            await rx_service.review(pharmacist, rx.id, ReviewIn(decision="approve"))
            order = await session.scalar(select(Order).where(Order.prescription_id == rx.id))
            assert order is not None
            body, signature = provider.callback(order.id, order.amount_cents)
            await OrderService(session, {"local": provider}).payment_callback("local", body, signature)
            order_ids.append(order.id)
    assert pharmacist.role is Role.PHARMACIST

    async def dispense(session: AsyncSession, i: int) -> Any:
        return await OrderService(session, {"local": provider}).dispense(pharmacist, order_ids[i])

    results = await race(database, 3, dispense)
    assert sum(isinstance(r, Order) for r in results) == 2, results
    assert [r.code for r in results if isinstance(r, DomainError)] == ["insufficient_stock"]
    async with session_scope(factory) as session:
        left = await session.scalar(
            select(StockLot.quantity).where(StockLot.lot_number == "RACE", StockLot.drug_id == drug.id)
        )
    assert left == 2
