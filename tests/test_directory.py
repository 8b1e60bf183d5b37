"""Centres, clinics, doctors and rosters."""

from __future__ import annotations

import httpx

from tests.personas import World


async def test_centres_list_with_clinics_is_public(client: httpx.AsyncClient, world: World) -> None:
    centres = (await client.get("/api/v1/centres")).json()
    by_code = {c["code"]: c for c in centres}
    assert [c["code"] for c in by_code["t-skin"]["clinics"]] == ["acne"]


async def test_admin_manages_centres_and_clinics(client: httpx.AsyncClient, world: World) -> None:
    body = {"organisation_id": world.hospital.id, "code": "t-kidney", "name_en": "Kidney", "name_zh": "肾病"}
    assert (await client.post("/api/v1/centres", headers=world.dr_dia.headers, json=body)).status_code == 403
    r = await client.post("/api/v1/centres", headers=world.admin.headers, json=body)
    assert r.status_code == 201
    centre_id = r.json()["id"]
    again = await client.post("/api/v1/centres", headers=world.admin.headers, json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "duplicate_code"
    r = await client.post(
        f"/api/v1/centres/{centre_id}/clinics",
        headers=world.admin.headers,
        json={"code": "ckd", "name_en": "CKD", "name_zh": "慢性肾病"},
    )
    assert r.status_code == 201
    r = await client.patch(
        f"/api/v1/clinics/{r.json()['id']}", headers=world.admin.headers, json={"is_active": False}
    )
    assert r.json()["is_active"] is False
    r = await client.patch(
        f"/api/v1/centres/{centre_id}", headers=world.admin.headers, json={"is_active": False}
    )
    assert r.status_code == 200
    assert "t-kidney" not in [c["code"] for c in (await client.get("/api/v1/centres")).json()]


async def test_a_pharmacy_cannot_host_a_centre(client: httpx.AsyncClient, world: World) -> None:
    body = {"organisation_id": world.pharmacy.id, "code": "t-x", "name_en": "X", "name_zh": "X"}
    r = await client.post("/api/v1/centres", headers=world.admin.headers, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "organisation_not_found"


async def test_doctors_of_a_centre_with_roster(client: httpx.AsyncClient, world: World) -> None:
    doctor_id = world.dr_dia.doctor_id
    roster = [
        {"weekday": 0, "starts": "08:30", "ends": "12:00"},
        {"weekday": 0, "starts": "14:00", "ends": "17:30"},
        {"weekday": 5, "starts": "19:00", "ends": "21:00"},
    ]
    r = await client.put(f"/api/v1/doctors/{doctor_id}/roster", headers=world.dr_dia.headers, json=roster)
    assert r.status_code == 200 and len(r.json()["roster"]) == 3
    listed = (await client.get(f"/api/v1/doctors?centre_id={world.diabetes.id}")).json()
    assert {d["name"] for d in listed} == {"dr.dia", "dr.dia2"}  # dr.new is not verified
    one = (await client.get(f"/api/v1/doctors/{doctor_id}")).json()
    assert one["roster"][0] == {"weekday": 0, "starts": "08:30:00", "ends": "12:00:00"}
    assert (await client.get(f"/api/v1/doctors/{world.dr_new.doctor_id}")).status_code == 404


async def test_roster_rules(client: httpx.AsyncClient, world: World) -> None:
    doctor_id = world.dr_dia.doctor_id
    overlapping = [
        {"weekday": 1, "starts": "08:00", "ends": "12:00"},
        {"weekday": 1, "starts": "11:00", "ends": "13:00"},
    ]
    r = await client.put(
        f"/api/v1/doctors/{doctor_id}/roster", headers=world.dr_dia.headers, json=overlapping
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "roster_overlap"
    backwards = [{"weekday": 1, "starts": "12:00", "ends": "08:00"}]
    r = await client.put(f"/api/v1/doctors/{doctor_id}/roster", headers=world.dr_dia.headers, json=backwards)
    assert r.status_code == 422
    good = [{"weekday": 2, "starts": "08:00", "ends": "12:00"}]
    # The centre's manager may set it; a colleague and another centre's doctor may not.
    assert (
        await client.put(f"/api/v1/doctors/{doctor_id}/roster", headers=world.manager.headers, json=good)
    ).status_code == 200
    r = await client.put(f"/api/v1/doctors/{doctor_id}/roster", headers=world.dr_dia2.headers, json=good)
    assert r.status_code == 403 and r.json()["error"]["code"] == "roster_forbidden"
