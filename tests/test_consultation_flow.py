"""A whole follow-up consultation through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.personas import World, accepted_consultation, open_consultation, upload


async def test_whole_consultation(client: httpx.AsyncClient, world: World) -> None:
    opened = await open_consultation(client, world)
    assert opened["status"] == "requested"
    assert opened["price_cents"] == 5000
    assert len(opened["evidence"]) == 1

    queue = (await client.get("/api/v1/consultations/queue", headers=world.dr_dia.headers)).json()
    assert [item["id"] for item in queue] == [opened["id"]]
    assert queue[0]["patient_initial"] == "A*"  # no identity before accepting
    assert "name" not in queue[0]

    cid = opened["id"]
    accepted = await client.post(f"/api/v1/consultations/{cid}/accept", headers=world.dr_dia.headers)
    assert accepted.json()["status"] == "accepted"
    assert accepted.json()["doctor_id"] == world.dr_dia.doctor_id

    r = await client.post(
        f"/api/v1/consultations/{cid}/messages", headers=world.alice.headers, json={"body": "hello"}
    )
    assert r.status_code == 201
    image = await upload(client, world.dr_dia, purpose="message")
    r = await client.post(
        f"/api/v1/consultations/{cid}/messages",
        headers=world.dr_dia.headers,
        json={"body": "see this chart", "attachment_id": image},
    )
    assert r.status_code == 201 and r.json()["kind"] == "image"
    assert (await client.get(f"/api/v1/consultations/{cid}", headers=world.alice.headers)).json()[
        "status"
    ] == "in_progress"
    assert (await client.get(f"/api/v1/attachments/{image}", headers=world.alice.headers)).status_code == 200

    r = await client.post(
        f"/api/v1/consultations/{cid}/diagnosis",
        headers=world.dr_dia.headers,
        json={"code": "E11.9", "text": "Type 2 diabetes without complications"},
    )
    assert r.status_code == 200 and r.json()["diagnosis_code"] == "E11.9"
    r = await client.post(
        f"/api/v1/consultations/{cid}/complete", headers=world.dr_dia.headers, json={"summary": "ok"}
    )
    assert r.status_code == 200 and r.json()["status"] == "completed"

    messages = (await client.get(f"/api/v1/consultations/{cid}/messages", headers=world.alice.headers)).json()
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert [m["sender_role"] for m in messages] == ["system", "patient", "doctor", "system", "system"]
    later = (
        await client.get(f"/api/v1/consultations/{cid}/messages?after_seq=3", headers=world.alice.headers)
    ).json()
    assert [m["seq"] for m in later] == [4, 5]

    r = await client.post(
        f"/api/v1/consultations/{cid}/messages", headers=world.alice.headers, json={"body": "x"}
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "consultation_closed"


async def test_named_doctor_and_terminate_with_referral(client: httpx.AsyncClient, world: World) -> None:
    opened = await open_consultation(client, world, doctor=world.dr_dia2)
    assert opened["doctor_id"] == world.dr_dia2.doctor_id
    # Addressed to a named doctor: not in the centre's queue, not acceptable by a colleague.
    assert (await client.get("/api/v1/consultations/queue", headers=world.dr_dia.headers)).json() == []
    r = await client.post(f"/api/v1/consultations/{opened['id']}/accept", headers=world.dr_dia.headers)
    assert r.status_code == 404
    r = await client.post(f"/api/v1/consultations/{opened['id']}/accept", headers=world.dr_dia2.headers)
    assert r.status_code == 200
    r = await client.post(
        f"/api/v1/consultations/{opened['id']}/terminate",
        headers=world.dr_dia2.headers,
        json={"reason": "suspected diabetic ketoacidosis", "referral_to": "Emergency department"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "terminated" and body["referral_to"] == "Emergency department"


async def test_cancel_by_patient(client: httpx.AsyncClient, world: World) -> None:
    opened = await open_consultation(client, world)
    r = await client.post(
        f"/api/v1/consultations/{opened['id']}/cancel", headers=world.alice.headers, json={}
    )
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.post(f"/api/v1/consultations/{opened['id']}/accept", headers=world.dr_dia.headers)
    assert r.status_code == 404  # no longer in the queue


async def test_complete_needs_diagnosis_and_a_reply(client: httpx.AsyncClient, world: World) -> None:
    c = await accepted_consultation(client, world)
    url = f"/api/v1/consultations/{c['id']}"
    r = await client.post(f"{url}/complete", headers=world.dr_dia.headers, json={"summary": "done"})
    assert r.json()["error"]["code"] == "diagnosis_required"
    await client.post(
        f"{url}/diagnosis", headers=world.dr_dia.headers, json={"code": "E11.9", "text": "T2DM"}
    )
    r = await client.post(f"{url}/complete", headers=world.dr_dia.headers, json={"summary": "done"})
    assert r.json()["error"]["code"] == "doctor_reply_required"


async def test_two_doctors_cannot_both_accept(client: httpx.AsyncClient, world: World) -> None:
    opened = await open_consultation(client, world)
    first = await client.post(f"/api/v1/consultations/{opened['id']}/accept", headers=world.dr_dia.headers)
    second = await client.post(f"/api/v1/consultations/{opened['id']}/accept", headers=world.dr_dia2.headers)
    assert first.status_code == 200
    assert second.status_code == 404  # it left the queue
