"""Named personas and a small hospital for tests that read like prose."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.models import Account, Role
from ehospital.auth.passwords import hash_password
from ehospital.auth.service import AuthService
from ehospital.config import Settings
from ehospital.directory.models import Centre, Clinic, Doctor, DoctorTitle, Organisation, Pharmacist
from ehospital.kit import resident_id
from ehospital.kit.models import utcnow
from ehospital.patients.models import Patient

PASSWORD = "correct horse battery"


@dataclass
class Persona:
    account: Account
    token: str
    doctor: Doctor | None = None
    family: list[Patient] = field(default_factory=list)

    @property
    def doctor_id(self) -> int:
        assert self.doctor is not None, f"{self.account.username} is not a doctor"
        return self.doctor.id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    hospital: Organisation
    pharmacy: Organisation
    diabetes: Centre
    skin: Centre
    t2d: Clinic
    acne: Clinic
    alice: Persona  # patient account: herself and her son
    bob: Persona  # another family: an outsider to Alice's data
    dr_dia: Persona  # verified diabetes doctor
    dr_dia2: Persona  # a colleague in the same centre
    dr_skin: Persona  # verified doctor of another centre
    dr_new: Persona  # registered, not verified
    pharmacist: Persona
    manager: Persona
    admin: Persona


class Builder:
    def __init__(self, session: AsyncSession, settings: Settings, tag: str = "") -> None:
        self.tag = tag  # appended to every unique name, for worlds that are committed
        self.session = session
        self.auth = AuthService(session, settings)
        self.hash = hash_password(PASSWORD)
        self.n = 0

    async def account(self, username: str, role: Role, **extra: Any) -> Account:
        account = Account(
            username=username + self.tag,
            password_hash=self.hash,
            role=role,
            display_name=username.title(),
            **extra,
        )
        self.session.add(account)
        await self.session.flush()
        return account

    def persona(self, account: Account, **extra: Any) -> Persona:
        issued = self.auth.issue(account, kind="bearer", address="198.51.100.1")
        return Persona(account=account, token=issued.token, **extra)

    async def patient(self, username: str, members: list[tuple[str, str, date, str]]) -> Persona:
        account = await self.account(username, Role.PATIENT)
        family = []
        for name, relationship, born, sex in members:
            self.n += 1
            number = resident_id.make("310104", born, self.n, "male" if sex == "male" else "female")
            patient = Patient(
                account_id=account.id,
                name=name,
                id_number=number,
                sex=sex,
                birth_date=born,
                relationship=relationship,
            )
            self.session.add(patient)
            family.append(patient)
        await self.session.flush()
        return self.persona(account, family=family)

    async def doctor(
        self, username: str, centre: Centre, clinic: Clinic | None, *, verified: bool
    ) -> Persona:
        account = await self.account(username, Role.DOCTOR)
        self.n += 1
        doctor = Doctor(
            account_id=account.id,
            name=username,
            licence_number=f"LIC{self.n:08d}{username[-3:]}{self.tag}",
            title=DoctorTitle.ATTENDING,
            institution="Test Hospital",
            centre_id=centre.id,
            clinic_id=clinic.id if clinic else None,
            price_cents=5000,
            verified_at=utcnow() if verified else None,
            max_concurrent=5,
        )
        self.session.add(doctor)
        await self.session.flush()
        return self.persona(account, doctor=doctor)


async def build_world(session: AsyncSession, settings: Settings, tag: str = "") -> World:
    b = Builder(session, settings, tag)
    hospital = Organisation(kind="hospital", name_en="Test Hospital", name_zh="测试医院")
    pharmacy = Organisation(kind="pharmacy", name_en="Test Pharmacy", name_zh="测试药房")
    session.add_all([hospital, pharmacy])
    await session.flush()
    diabetes = Centre(
        organisation_id=hospital.id,
        code="t-diabetes" + tag,
        name_en="Diabetes",
        name_zh="糖尿病",
        description_en="",
        description_zh="",
    )
    skin = Centre(
        organisation_id=hospital.id,
        code="t-skin" + tag,
        name_en="Skin",
        name_zh="皮肤",
        description_en="",
        description_zh="",
    )
    session.add_all([diabetes, skin])
    await session.flush()
    t2d = Clinic(centre_id=diabetes.id, code="t2d", name_en="Type 2", name_zh="2型")
    acne = Clinic(centre_id=skin.id, code="acne", name_en="Acne", name_zh="痤疮")
    session.add_all([t2d, acne])
    await session.flush()
    pharmacist_account = await b.account("pharmacist.p", Role.PHARMACIST, organisation_id=pharmacy.id)
    session.add(
        Pharmacist(
            account_id=pharmacist_account.id,
            name="P",
            licence_number="YS-T-1" + tag,
            organisation_id=pharmacy.id,
        )
    )
    return World(
        hospital=hospital,
        pharmacy=pharmacy,
        diabetes=diabetes,
        skin=skin,
        t2d=t2d,
        acne=acne,
        alice=await b.patient(
            "alice",
            [("Alice", "self", date(1980, 5, 17), "female"), ("Sam", "child", date(2015, 2, 3), "male")],
        ),
        bob=await b.patient("bob", [("Bob", "self", date(1975, 1, 9), "male")]),
        dr_dia=await b.doctor("dr.dia", diabetes, t2d, verified=True),
        dr_dia2=await b.doctor("dr.dia2", diabetes, None, verified=True),
        dr_skin=await b.doctor("dr.skin", skin, acne, verified=True),
        dr_new=await b.doctor("dr.new", diabetes, None, verified=False),
        pharmacist=b.persona(pharmacist_account),
        manager=b.persona(await b.account("manager.m", Role.CENTRE_MANAGER, centre_id=diabetes.id)),
        admin=b.persona(await b.account("admin.a", Role.ADMIN)),
    )


def png_bytes(size: tuple[int, int] = (32, 32), color: str = "red", fmt: str = "PNG", **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt, **save)
    return buf.getvalue()


async def upload(client: httpx.AsyncClient, who: Persona, purpose: str = "evidence") -> int:
    response = await client.post(
        f"/api/v1/uploads?purpose={purpose}",
        headers=who.headers,
        files={"file": ("report.png", png_bytes(), "image/png")},
    )
    assert response.status_code == 201, response.text
    upload_id: int = response.json()["id"]
    return upload_id


async def open_consultation(
    client: httpx.AsyncClient,
    world: World,
    *,
    who: Persona | None = None,
    patient: Patient | None = None,
    doctor: Persona | None = None,
    centre: Centre | None = None,
) -> dict[str, Any]:
    who = who or world.alice
    patient = patient or who.family[0]
    evidence = await upload(client, who)
    body = {
        "patient_id": patient.id,
        "centre_id": (centre or world.diabetes).id,
        "visit_type": "follow_up",
        "complaint": "glucose above target for two weeks",
        "prior_diagnosis": "Type 2 diabetes",
        "evidence_ids": [evidence],
    }
    if doctor is not None and doctor.doctor is not None:
        body["doctor_id"] = doctor.doctor.id
    response = await client.post("/api/v1/consultations", headers=who.headers, json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def accepted_consultation(client: httpx.AsyncClient, world: World) -> dict[str, Any]:
    consultation = await open_consultation(client, world)
    response = await client.post(
        f"/api/v1/consultations/{consultation['id']}/accept", headers=world.dr_dia.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
