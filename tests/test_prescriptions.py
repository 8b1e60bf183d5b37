"""Writing, signing and verifying prescriptions; the regulatory rules at signing."""

from __future__ import annotations

import base64
from datetime import date
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.kit import resident_id
from ehospital.patients.models import Patient
from ehospital.prescriptions.models import Drug, Prescription, PrescriptionItem
from ehospital.prescriptions.signing import canonical_bytes, verify
from tests.personas import World, accepted_consultation

DRUGS = [
    ("t-metformin-500", "metformin", "二甲双胍", "tablet", "500", "mg", "oral", "A10BA02", "none", 30),
    ("t-amlodipine-5", "amlodipine", "氨氯地平", "tablet", "5", "mg", "oral", "C08CA01", "none", 80),
    ("t-amoxicillin-500", "amoxicillin", "阿莫西林", "capsule", "500", "mg", "oral", "J01CA04", "none", 50),
    ("t-adapalene-gel", "adapalene", "阿达帕林", "gel", "0.1", "%", "topical", "D10AD03", "none", 3500),
    ("t-morphine-10", "morphine", "吗啡", "tablet", "10", "mg", "oral", "N02AA01", "narcotic", 100),
    ("t-diazepam-2.5", "diazepam", "地西泮", "tablet", "2.5", "mg", "oral", "N05BA01", "psychotropic_2", 20),
    ("t-simvastatin-20", "simvastatin", "辛伐他汀", "tablet", "20", "mg", "oral", "C10AA01", "none", 40),
]


@pytest.fixture
async def formulary(session: AsyncSession) -> None:
    for code, en, zh, form, strength, unit, route, atc, control, price in DRUGS:
        session.add(
            Drug(
                code=code,
                generic_en=en,
                generic_zh=zh,
                form=form,
                strength=strength,
                unit=unit,
                route=route,
                atc=atc,
                rx_only=True,
                control=control,
                price_cents=price,
                category="other",
            )
        )
    await session.commit()


def item(code: str = "t-metformin-500", **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "drug_code": code,
        "dose": "500",
        "dose_unit": "mg",
        "route": "oral",
        "frequency": "bid",
        "days": 7,
        "quantity": 14,
        "instructions": "after meals",
    }
    body.update(kw)
    return body


async def diagnosed(client: httpx.AsyncClient, world: World) -> int:
    c = await accepted_consultation(client, world)
    r = await client.post(
        f"/api/v1/consultations/{c['id']}/diagnosis",
        headers=world.dr_dia.headers,
        json={"code": "E11.9", "text": "Type 2 diabetes"},
    )
    assert r.status_code == 200
    cid: int = c["id"]
    return cid


async def draft(client: httpx.AsyncClient, world: World, cid: int, **body: Any) -> httpx.Response:
    payload = {"pharmacy_id": world.pharmacy.id, "items": [item()], **body}
    return await client.post(
        f"/api/v1/consultations/{cid}/prescriptions", headers=world.dr_dia.headers, json=payload
    )


async def sign(client: httpx.AsyncClient, world: World, rx_id: int) -> httpx.Response:
    return await client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=world.dr_dia.headers)


async def test_write_sign_and_verify(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    cid = await diagnosed(client, world)
    r = await draft(client, world, cid)
    assert r.status_code == 201, r.text
    rx = r.json()
    assert rx["status"] == "draft" and rx["diagnosis_code"] == "E11.9" and rx["signature"] is None
    assert rx["items"][0]["drug"]["generic_zh"] == "二甲双胍"
    # The patient does not see drafts.
    assert (
        await client.get(f"/api/v1/prescriptions/{rx['id']}", headers=world.alice.headers)
    ).status_code == 404
    signed = await sign(client, world, rx["id"])
    assert signed.status_code == 200, signed.text
    body = signed.json()
    assert (
        body["status"] == "auto_checked"
        and body["signed_at"]
        and len(base64.b64decode(body["signature"])) == 64
    )
    for who in (world.alice, world.dr_dia):
        r = await client.get(f"/api/v1/prescriptions/{rx['id']}/verify", headers=who.headers)
        assert r.json()["valid"] is True and r.json()["key_fingerprint"] == body["key_fingerprint"]


async def test_the_signature_covers_the_data(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    cid = await diagnosed(client, world)
    rx_id = (await draft(client, world, cid)).json()["id"]
    await sign(client, world, rx_id)
    stored = await session.get(Prescription, rx_id)
    assert stored is not None and stored.canonical and stored.signature
    # Anyone with the public key can check the stored canonical form.
    from ehospital.prescriptions.models import DoctorKey

    key = await session.scalar(select(DoctorKey).where(DoctorKey.fingerprint == stored.key_fingerprint))
    assert key is not None and verify(key.public_key, stored.canonical.encode(), stored.signature)
    # Changing a signed item afterwards (bypassing the API) breaks verification.
    await session.execute(
        update(PrescriptionItem).where(PrescriptionItem.prescription_id == rx_id).values(quantity=140)
    )
    await session.commit()
    session.expunge_all()
    r = await client.get(f"/api/v1/prescriptions/{rx_id}/verify", headers=world.dr_dia.headers)
    assert r.json()["valid"] is False and "altered" in r.json()["reason"]


async def test_a_signed_prescription_never_changes(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)
    rx_id = (await draft(client, world, cid)).json()["id"]
    assert (await sign(client, world, rx_id)).status_code == 200
    r = await client.put(
        f"/api/v1/prescriptions/{rx_id}",
        headers=world.dr_dia.headers,
        json={"pharmacy_id": world.pharmacy.id, "items": [item()]},
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "prescription_signed"
    r = await sign(client, world, rx_id)
    assert r.status_code == 409 and r.json()["error"]["details"]["state"] == "auto_checked"


async def rule_names(client: httpx.AsyncClient, world: World, cid: int, **body: Any) -> list[str]:
    rx = await draft(client, world, cid, **body)
    assert rx.status_code == 201, rx.text
    r = await sign(client, world, rx.json()["id"])
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "prescription_rules_failed"
    failures = r.json()["error"]["details"]["failures"]
    assert all(f["message"] and f["message_zh"] for f in failures)
    return [f["rule"] for f in failures]


@pytest.mark.parametrize(
    ("body", "rules"),
    [
        ({"items": [item("t-morphine-10", dose="10", quantity=14)]}, ["special_control"]),
        ({"items": [item("t-diazepam-2.5", dose="2.5", frequency="qn", quantity=7)]}, ["special_control"]),
        ({"items": [item(days=10, quantity=20)]}, ["supply_days"]),
        (
            {"items": [item(days=28, quantity=56)], "chronic": True},
            ["extended_reason_required", "supply_days"],
        ),
        (
            {"items": [item(days=56, quantity=112)], "chronic": True, "extended_reason": "stable"},
            ["supply_days"],
        ),
        ({"items": [item(quantity=30)]}, ["quantity_inconsistent"]),
        ({"items": [item(dose="300")]}, ["dose_not_divisible"]),
        (
            {"items": [item("t-amoxicillin-500", dose="250", frequency="tid", quantity=11)]},
            ["dose_not_divisible"],
        ),
        ({"items": [item(route="topical")]}, ["route_mismatch"]),
        ({"items": [item(dose_unit="mL")]}, ["dose_unit"]),
        ({"items": [item()] * 6}, ["max_items"]),
    ],
)
async def test_rules_refuse_signing(
    client: httpx.AsyncClient, world: World, formulary: None, body: dict[str, Any], rules: list[str]
) -> None:
    cid = await diagnosed(client, world)
    assert await rule_names(client, world, cid, **body) == rules


async def test_chronic_and_long_prescriptions_with_a_reason(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    cid = await diagnosed(client, world)
    for days, flags in ((28, {"chronic": True}), (84, {"long_term": True})):
        rx = await draft(
            client,
            world,
            cid,
            items=[item(days=days, quantity=days * 2)],
            extended_reason="stable type 2 diabetes, HbA1c 6.8 %",
            **flags,
        )
        assert (await sign(client, world, rx.json()["id"])).status_code == 200


async def test_a_child_under_six_needs_the_guardian(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    young = date(date.today().year - 3, 1, 15)
    await session.execute(
        update(Patient)
        .where(Patient.id == world.alice.family[0].id)
        .values(birth_date=young, id_number=resident_id.make("310104", young, 1, "female"))
    )
    await session.commit()
    cid = await diagnosed(client, world)
    assert await rule_names(
        client, world, cid, items=[item("t-amoxicillin-500", frequency="tid", quantity=21)]
    ) == ["guardian_required"]
    rx = await draft(
        client,
        world,
        cid,
        items=[item("t-amoxicillin-500", frequency="tid", quantity=21)],
        guardian_present=True,
    )
    assert (await sign(client, world, rx.json()["id"])).status_code == 200


async def test_unknown_drugs_and_bad_items_write_nothing(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    cid = await diagnosed(client, world)
    before = await session.scalar(select(func.count()).select_from(Prescription))
    r = await draft(client, world, cid, items=[item("no-such-drug")])
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_drug"
    assert r.json()["error"]["details"]["codes"] == ["no-such-drug"]
    for bad in (
        item(dose="-1"),
        item(quantity=0),
        item(days=0),
        item(dose_unit="spoonful"),
        item(frequency="as directed"),
    ):
        r = await draft(client, world, cid, items=[bad])
        assert r.status_code == 422, bad
    assert await session.scalar(select(func.count()).select_from(Prescription)) == before


async def test_who_may_write_sign_and_read(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    cid = await diagnosed(client, world)
    for who in (world.dr_dia2, world.dr_skin, world.alice, world.pharmacist):
        r = await client.post(
            f"/api/v1/consultations/{cid}/prescriptions",
            headers=who.headers,
            json={"pharmacy_id": world.pharmacy.id, "items": [item()]},
        )
        assert r.status_code in (403, 404), who.account.username
    rx_id = (await draft(client, world, cid)).json()["id"]
    # Another doctor can neither sign nor see it.
    r = await client.post(f"/api/v1/prescriptions/{rx_id}/sign", headers=world.dr_dia2.headers)
    assert r.status_code == 404
    assert (
        await client.get(f"/api/v1/prescriptions/{rx_id}", headers=world.dr_dia2.headers)
    ).status_code == 404
    await sign(client, world, rx_id)
    assert (
        await client.get(f"/api/v1/prescriptions/{rx_id}", headers=world.alice.headers)
    ).status_code == 200
    assert (await client.get(f"/api/v1/prescriptions/{rx_id}", headers=world.bob.headers)).status_code == 404


async def test_a_prescription_needs_the_consultation_diagnosis(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    c = await accepted_consultation(client, world)
    r = await draft(client, world, c["id"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "diagnosis_required"


async def test_drug_search(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    for q in ("metformin", "二甲双胍", "A10BA02", "METFORMIN"):
        found = (await client.get(f"/api/v1/drugs?q={q}")).json()
        assert [d["code"] for d in found] == ["t-metformin-500"], q


def test_canonical_form_is_stable() -> None:
    a = canonical_bytes({"b": 1, "a": ["x", {"d": None, "c": True}], "z": "二甲双胍"})
    assert a == '{"a":["x",{"c":true,"d":null}],"b":1,"z":"二甲双胍"}'.encode()


async def test_the_shipped_formulary_loads_and_is_searchable(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    from ehospital.prescriptions.formulary import read_formulary, sync_formulary

    rows = read_formulary()
    assert len(rows) >= 200 and all("E" not in r.strength for r in rows)
    added = await sync_formulary(session)
    assert added == len(rows)
    assert await sync_formulary(session) == 0  # idempotent
    await session.commit()
    found = (await client.get("/api/v1/drugs?q=二甲双胍")).json()
    assert found and all(d["atc"] == "A10BA02" for d in found)
    assert any(d["strength"] == "500" and d["form"] == "tablet" for d in found)


async def test_admins_add_and_retire_drugs(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    body = {
        "code": "t-new-drug",
        "generic_en": "sitagliptin",
        "generic_zh": "西格列汀",
        "form": "tablet",
        "strength": "100",
        "unit": "mg",
        "route": "oral",
        "atc": "A10BH01",
        "price_cents": 500,
        "category": "diabetes",
    }
    assert (await client.post("/api/v1/drugs", headers=world.dr_dia.headers, json=body)).status_code == 403
    r = await client.post("/api/v1/drugs", headers=world.admin.headers, json=body)
    assert r.status_code == 201 and r.json()["strength"] == "100"
    assert (await client.post("/api/v1/drugs", headers=world.admin.headers, json=body)).status_code == 409
    bad = await client.post(
        "/api/v1/drugs", headers=world.admin.headers, json={**body, "code": "x2", "atc": "nope"}
    )
    assert bad.status_code == 422
    # Retired: no longer found, and a draft with it cannot be signed.
    cid = await diagnosed(client, world)
    rx = await draft(client, world, cid, items=[item("t-metformin-500")])
    r = await client.post("/api/v1/drugs/t-metformin-500/retire", headers=world.admin.headers)
    assert r.status_code == 200 and r.json()["retired"] is True
    assert (await client.get("/api/v1/drugs?q=metformin")).json() == []
    r = await sign(client, world, rx.json()["id"])
    assert r.status_code == 422 and [f["rule"] for f in r.json()["error"]["details"]["failures"]] == [
        "drug_retired"
    ]
    assert (await client.post("/api/v1/drugs/nope/retire", headers=world.admin.headers)).status_code == 404
