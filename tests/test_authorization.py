"""Who may see what: every endpoint that returns patient data, with named personas.

Alice's family is the data at stake. Bob is another family; Dr Dia is the doctor her consultation
is assigned to; Dr Dia2 is his colleague in the same centre; Dr Skin works in another centre; the
pharmacist, the centre manager and the admin have no business reading her clinical record.
Whoever may not see a resource gets 404, exactly as if it did not exist.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.service import AuthService
from ehospital.config import Settings
from ehospital.consultations.models import Consultation, Message
from tests.personas import Persona, World, accepted_consultation, open_consultation, upload

OUTSIDERS = ["bob", "dr_dia2", "dr_skin", "dr_new", "pharmacist", "manager", "admin"]


def persona(world: World, name: str) -> Persona:
    found: Persona = getattr(world, name)
    return found


async def alice_case(client: httpx.AsyncClient, world: World) -> dict[str, Any]:
    """An accepted consultation of Alice with Dr Dia, with one message and its evidence."""
    consultation = await accepted_consultation(client, world)
    r = await client.post(
        f"/api/v1/consultations/{consultation['id']}/messages",
        headers=world.alice.headers,
        json={"body": "hi"},
    )
    assert r.status_code == 201
    full = (
        await client.get(f"/api/v1/consultations/{consultation['id']}", headers=world.alice.headers)
    ).json()
    return {
        "consultation": consultation["id"],
        "patient": full["patient"]["id"],
        "evidence": full["evidence"][0]["id"],
    }


def urls(case: dict[str, Any]) -> list[str]:
    return [
        f"/api/v1/patients/{case['patient']}",
        f"/api/v1/consultations/{case['consultation']}",
        f"/api/v1/consultations/{case['consultation']}/messages",
        f"/api/v1/attachments/{case['evidence']}",
    ]


async def test_owner_and_assigned_doctor_see_everything(client: httpx.AsyncClient, world: World) -> None:
    case = await alice_case(client, world)
    for who in (world.alice, world.dr_dia):
        for url in urls(case):
            r = await client.get(url, headers=who.headers)
            assert r.status_code == 200, (who.account.username, url, r.text)


@pytest.mark.parametrize("name", OUTSIDERS)
async def test_outsiders_get_404_for_every_patient_resource(
    client: httpx.AsyncClient, world: World, name: str
) -> None:
    case = await alice_case(client, world)
    for url in urls(case):
        r = await client.get(url, headers=persona(world, name).headers)
        assert r.status_code == 404, (name, url, r.status_code)
        assert r.json()["error"]["code"].endswith("not_found")


@pytest.mark.parametrize("name", OUTSIDERS)
async def test_outsiders_see_nothing_in_lists(client: httpx.AsyncClient, world: World, name: str) -> None:
    await alice_case(client, world)
    r = await client.get("/api/v1/consultations", headers=persona(world, name).headers)
    assert r.status_code == 200 and r.json() == []


async def test_a_family_list_contains_only_that_family(client: httpx.AsyncClient, world: World) -> None:
    alice = {p["name"] for p in (await client.get("/api/v1/patients", headers=world.alice.headers)).json()}
    bob = {p["name"] for p in (await client.get("/api/v1/patients", headers=world.bob.headers)).json()}
    assert alice == {"Alice", "Sam"} and bob == {"Bob"}


async def test_unauthenticated_requests_get_401(client: httpx.AsyncClient, world: World) -> None:
    case = await alice_case(client, world)
    for url in [*urls(case), "/api/v1/patients", "/api/v1/consultations", "/api/v1/consultations/queue"]:
        r = await client.get(url)
        assert r.status_code == 401, url
        r = await client.get(url, headers={"Authorization": "Bearer ehb_forged"})
        assert r.status_code == 401, url


async def test_doctor_sees_a_patient_only_once_assigned(client: httpx.AsyncClient, world: World) -> None:
    consultation = await open_consultation(client, world)
    patient_url = f"/api/v1/patients/{world.alice.family[0].id}"
    evidence_id = consultation["evidence"][0]["id"]
    # In the queue: Dr Dia sees the request without identity, not the record or the files.
    assert (await client.get(patient_url, headers=world.dr_dia.headers)).status_code == 404
    assert (
        await client.get(f"/api/v1/attachments/{evidence_id}", headers=world.dr_dia.headers)
    ).status_code == 404
    await client.post(f"/api/v1/consultations/{consultation['id']}/accept", headers=world.dr_dia.headers)
    assert (await client.get(patient_url, headers=world.dr_dia.headers)).status_code == 200
    assert (
        await client.get(f"/api/v1/attachments/{evidence_id}", headers=world.dr_dia.headers)
    ).status_code == 200
    # Sam, Alice's son, is not a patient of Dr Dia.
    sam_url = f"/api/v1/patients/{world.alice.family[1].id}"
    assert (await client.get(sam_url, headers=world.dr_dia.headers)).status_code == 404


async def test_another_family_cannot_write_into_the_consultation(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    case = await alice_case(client, world)
    before = await session.scalar(select(func.count()).select_from(Message))
    cid = case["consultation"]
    r = await client.post(
        f"/api/v1/consultations/{cid}/messages", headers=world.bob.headers, json={"body": "spam"}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "consultation_not_found"
    r = await client.post(f"/api/v1/consultations/{cid}/cancel", headers=world.bob.headers, json={})
    assert r.status_code == 404
    assert await session.scalar(select(func.count()).select_from(Message)) == before


async def test_doctor_of_another_centre_cannot_accept(
    client: httpx.AsyncClient, world: World, session: AsyncSession
) -> None:
    consultation = await open_consultation(client, world)
    r = await client.post(f"/api/v1/consultations/{consultation['id']}/accept", headers=world.dr_skin.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "consultation_not_found"
    stored = await session.get(Consultation, consultation["id"])
    assert stored is not None
    await session.refresh(stored)
    assert stored.status == "requested" and stored.doctor_id is None
    assert (await client.get("/api/v1/consultations/queue", headers=world.dr_skin.headers)).json() == []


async def test_patients_cannot_use_doctor_actions(client: httpx.AsyncClient, world: World) -> None:
    c = await accepted_consultation(client, world)
    r = await client.get("/api/v1/consultations/queue", headers=world.alice.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_doctor"
    r = await client.post(
        f"/api/v1/consultations/{c['id']}/diagnosis",
        headers=world.alice.headers,
        json={"code": "E11.9", "text": "T2DM"},
    )
    assert r.status_code == 403


async def test_a_colleague_cannot_act_on_a_consultation(client: httpx.AsyncClient, world: World) -> None:
    c = await accepted_consultation(client, world)
    for action, body in (
        ("diagnosis", {"code": "E11.9", "text": "T2DM"}),
        ("complete", {"summary": "done"}),
        ("terminate", {"reason": "xx", "referral_to": "yy"}),
        ("messages", {"body": "hello"}),
    ):
        r = await client.post(
            f"/api/v1/consultations/{c['id']}/{action}", headers=world.dr_dia2.headers, json=body
        )
        assert r.status_code == 404, action


async def test_uploads_are_private_until_attached(client: httpx.AsyncClient, world: World) -> None:
    upload_id = await upload(client, world.alice)
    assert (
        await client.get(f"/api/v1/attachments/{upload_id}", headers=world.alice.headers)
    ).status_code == 200
    assert (
        await client.get(f"/api/v1/attachments/{upload_id}", headers=world.bob.headers)
    ).status_code == 404
    # Bob cannot use Alice's upload as his evidence.
    r = await client.post(
        "/api/v1/consultations",
        headers=world.bob.headers,
        json={
            "patient_id": world.bob.family[0].id,
            "centre_id": world.diabetes.id,
            "visit_type": "follow_up",
            "complaint": "xx",
            "prior_diagnosis": "T2DM",
            "evidence_ids": [upload_id],
        },
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "evidence_not_found"


async def test_audit_endpoints_are_for_admins(client: httpx.AsyncClient, world: World) -> None:
    for name in ("alice", "dr_dia", "pharmacist", "manager"):
        assert (
            await client.get("/api/v1/audit/events", headers=persona(world, name).headers)
        ).status_code == 403
    assert (await client.get("/api/v1/audit/events", headers=world.admin.headers)).status_code == 200


async def test_an_unverified_doctor_sees_no_queue(client: httpx.AsyncClient, world: World) -> None:
    await open_consultation(client, world)
    r = await client.get("/api/v1/consultations/queue", headers=world.dr_new.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "doctor_not_verified"


async def test_a_doctor_whose_verification_is_withdrawn_loses_access(
    client: httpx.AsyncClient, world: World
) -> None:
    case = await alice_case(client, world)
    doctor_id = world.dr_dia.doctor_id
    r = await client.post(
        f"/api/v1/doctors/{doctor_id}/verify", headers=world.admin.headers, json={"verified": False}
    )
    assert r.status_code == 200 and r.json()["verified"] is False
    for url in urls(case):
        assert (await client.get(url, headers=world.dr_dia.headers)).status_code == 404, url
    r = await client.post(
        f"/api/v1/consultations/{case['consultation']}/messages",
        headers=world.dr_dia.headers,
        json={"body": "hi"},
    )
    assert r.status_code == 404
    r = await client.post(
        f"/api/v1/consultations/{case['consultation']}/diagnosis",
        headers=world.dr_dia.headers,
        json={"code": "E11.9", "text": "T2DM"},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "doctor_not_verified"


@pytest.mark.parametrize("name", ["pharmacist", "manager", "admin"])
async def test_staff_cannot_post_into_a_consultation(
    client: httpx.AsyncClient, world: World, name: str
) -> None:
    case = await alice_case(client, world)
    r = await client.post(
        f"/api/v1/consultations/{case['consultation']}/messages",
        headers=persona(world, name).headers,
        json={"body": "hello"},
    )
    assert r.status_code == 404


async def test_a_web_session_is_not_an_api_token(
    client: httpx.AsyncClient, world: World, session: AsyncSession, settings: Settings
) -> None:
    web = AuthService(session, settings).issue(world.alice.account, kind="session", address="x")
    r = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {web.token}"})
    assert r.status_code == 401
    client.cookies.set("ehospital_session", world.alice.token)  # a bearer token as the cookie
    assert (await client.get("/patient")).status_code == 303  # not signed in: sent to /login
