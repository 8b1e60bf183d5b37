"""Real-name family members."""

from __future__ import annotations

from datetime import date

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.kit import resident_id
from ehospital.patients.models import Patient
from tests.personas import World


def member(**overrides: object) -> dict[str, object]:
    born = date(1990, 7, 1)
    body: dict[str, object] = {
        "name": "Grandma",
        "id_number": resident_id.make("320102", born, 5, "female"),
        "sex": "female",
        "birth_date": born.isoformat(),
        "relationship": "grandparent",
    }
    body.update(overrides)
    return body


async def count_patients(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.count()).select_from(Patient)) or 0)


async def test_add_and_list_family(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("/api/v1/patients", headers=world.alice.headers, json=member())
    assert r.status_code == 201
    body = r.json()
    assert body["id_number_masked"].startswith("320") and "*" in body["id_number_masked"]
    assert "id_number" not in body
    family = (await client.get("/api/v1/patients", headers=world.alice.headers)).json()
    assert [p["name"] for p in family] == ["Alice", "Sam", "Grandma"]


async def test_invalid_id_number_is_refused_and_nothing_written(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    before = await count_patients(session)
    good = str(member()["id_number"])
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    r = await client.post("/api/v1/patients", headers=world.alice.headers, json=member(id_number=bad))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_id_number"
    assert r.json()["error"]["details"]["reason"] == "checksum"
    assert await count_patients(session) == before


async def test_birth_date_and_sex_are_cross_checked(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("/api/v1/patients", headers=world.alice.headers, json=member(sex="male"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "id_number_mismatch"
    assert r.json()["error"]["details"]["derived"] == {"sex": "female"}
    r = await client.post(
        "/api/v1/patients", headers=world.alice.headers, json=member(birth_date="1990-07-02")
    )
    assert r.json()["error"]["details"]["derived"] == {"birth_date": "1990-07-01"}


async def test_duplicates_and_a_second_self_are_refused(client: httpx.AsyncClient, world: World) -> None:
    assert (
        await client.post("/api/v1/patients", headers=world.alice.headers, json=member())
    ).status_code == 201
    r = await client.post("/api/v1/patients", headers=world.alice.headers, json=member(name="Again"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_patient"
    born = date(1970, 1, 1)
    r = await client.post(
        "/api/v1/patients",
        headers=world.alice.headers,
        json=member(
            id_number=resident_id.make("320102", born, 9, "male"),
            sex="male",
            birth_date=born.isoformat(),
            relationship="self",
        ),
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "self_exists"


async def test_archive_keeps_the_record(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    sam = world.alice.family[1]
    before = await count_patients(session)
    r = await client.post(f"/api/v1/patients/{sam.id}/archive", headers=world.alice.headers)
    assert r.status_code == 200
    family = (await client.get("/api/v1/patients", headers=world.alice.headers)).json()
    assert [p["name"] for p in family] == ["Alice"]
    assert await count_patients(session) == before  # no hard delete


async def test_only_patient_accounts_have_families(client: httpx.AsyncClient, world: World) -> None:
    r = await client.post("/api/v1/patients", headers=world.dr_dia.headers, json=member())
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_patient_account"
