"""After signing: the automatic check, the pharmacist's review, the doctor's answer, revision,
withdrawal, expiry — and every move the state machine forbids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.auth.models import Account, Role
from ehospital.auth.service import AuthService
from ehospital.config import Settings
from ehospital.directory.models import Organisation
from ehospital.kit.models import utcnow
from ehospital.prescriptions.models import Prescription
from ehospital.prescriptions.service import PrescriptionService, expiry_of
from ehospital.prescriptions.signing import KeyStore
from tests.personas import World
from tests.test_prescriptions import diagnosed, draft, formulary, item, sign

__all__ = ["formulary"]  # the fixture, imported for use here


async def signed(client: httpx.AsyncClient, world: World, **body: Any) -> dict[str, Any]:
    cid = await diagnosed(client, world)
    rx = (await draft(client, world, cid, **body)).json()
    r = await sign(client, world, rx["id"])
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def review(
    client: httpx.AsyncClient, world: World, rx_id: int, decision: str, reason: str | None = None
) -> httpx.Response:
    body: dict[str, Any] = {"decision": decision}
    if reason:
        body["reason"] = reason
    return await client.post(
        f"/api/v1/prescriptions/{rx_id}/review", headers=world.pharmacist.headers, json=body
    )


async def test_signing_runs_the_automatic_check_and_queues_for_the_pharmacy(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    rx = await signed(
        client,
        world,
        items=[item(days=28, quantity=56), item(dose="1000", quantity=28)],
        chronic=True,
        extended_reason="stable, HbA1c 7.0 %",
    )
    assert rx["status"] == "auto_checked"
    rules = {f["rule"]: f["severity"] for f in rx["findings"]}
    assert rules == {"duplicate_ingredient": "major", "extended_supply": "minor"}
    assert all(f["source"] for f in rx["findings"])
    queue = (await client.get("/api/v1/pharmacy/reviews", headers=world.pharmacist.headers)).json()
    assert [q["id"] for q in queue] == [rx["id"]] and queue[0]["severity_rank"] == 3
    # Not a pharmacist: no queue.
    r = await client.get("/api/v1/pharmacy/reviews", headers=world.dr_dia.headers)
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_pharmacist"


async def test_the_automatic_check_runs_the_vetting_engine(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    over = [
        item("t-simvastatin-20", dose="40", frequency="qd", quantity=14),
        item("t-amlodipine-5", dose="5", frequency="qd", quantity=7),
    ]
    rx = await signed(client, world, items=over)
    (clinical,) = [f for f in rx["findings"] if f["rule"].startswith("vetting.")]
    assert clinical["rule"] == "vetting.interaction" and clinical["severity"] == "moderate"
    assert "exceeds the 20 mg/day cap" in clinical["message"] and "辛伐他汀" in clinical["message_zh"]
    assert clinical["source"].startswith("ANSM, Thésaurus des interactions médicamenteuses")
    evidence = json.loads(clinical["evidence"])
    assert evidence["drugs"] == ["simvastatin", "amlodipine"] and evidence["decision"] == "review"
    # Within the thesaurus's cap the pair is not raised.
    capped = [item("t-simvastatin-20", dose="20", frequency="qd", quantity=7), over[1]]
    draft_within = (await draft(client, world, rx["consultation_id"], items=capped)).json()
    within = (await sign(client, world, draft_within["id"])).json()
    assert not [f for f in within["findings"] if f["rule"].startswith("vetting.")]


async def test_approve(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    rx = await signed(client, world)
    r = await review(client, world, rx["id"], "approve")
    assert r.status_code == 200 and r.json()["status"] == "approved"
    assert (await client.get("/api/v1/pharmacy/reviews", headers=world.pharmacist.headers)).json() == []
    # The consultation's chat says so (a structured line both sides get live).
    lines = (
        await client.get(
            f"/api/v1/consultations/{rx['consultation_id']}/messages", headers=world.alice.headers
        )
    ).json()
    assert lines[-1]["kind"] == "event" and lines[-1]["body"] == f"prescription {rx['id']} approved"


async def test_reject_and_return_need_a_reason(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    rx = await signed(client, world)
    for decision in ("reject", "return"):
        r = await review(client, world, rx["id"], decision)
        assert r.status_code == 422 and r.json()["error"]["code"] == "reason_required"
    r = await review(client, world, rx["id"], "reject", "metformin contraindicated: eGFR 25")
    assert r.json()["status"] == "rejected"
    lines = (
        await client.get(
            f"/api/v1/consultations/{rx['consultation_id']}/messages", headers=world.dr_dia.headers
        )
    ).json()
    assert lines[-1]["body"] == f"prescription {rx['id']} rejected"


async def test_return_answer_revise_and_sign_again(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    rx = await signed(client, world)
    assert (await review(client, world, rx["id"], "return", "is the renal function known?")).json()[
        "status"
    ] == "returned"
    r = await client.post(
        f"/api/v1/prescriptions/{rx['id']}/answer",
        headers=world.dr_dia.headers,
        json={"text": "eGFR 85 last month"},
    )
    assert r.json()["status"] == "auto_checked"
    assert (await review(client, world, rx["id"], "return", "please lower the dose")).json()[
        "status"
    ] == "returned"
    new = await client.post(f"/api/v1/prescriptions/{rx['id']}/revise", headers=world.dr_dia.headers)
    assert new.status_code == 201
    v2 = new.json()
    assert (v2["version"], v2["lineage_id"], v2["status"]) == (2, rx["lineage_id"], "draft")
    r = await client.put(
        f"/api/v1/prescriptions/{v2['id']}",
        headers=world.dr_dia.headers,
        json={"pharmacy_id": world.pharmacy.id, "items": [item(dose="250", quantity=7)]},
    )
    assert r.status_code == 200, r.text
    assert (await sign(client, world, v2["id"])).json()["status"] == "auto_checked"
    old = (await client.get(f"/api/v1/prescriptions/{rx['id']}", headers=world.dr_dia.headers)).json()
    assert old["status"] == "superseded"


async def test_one_revision_at_a_time_and_no_answer_beside_it(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    rx = await signed(client, world)
    await review(client, world, rx["id"], "return", "please lower the dose")
    doctor = world.dr_dia.headers
    v2 = (await client.post(f"/api/v1/prescriptions/{rx['id']}/revise", headers=doctor)).json()
    # While version 2 is drafted, version 1 can neither be revised again nor answered (that
    # would put two live versions in review).
    for path, body in (("revise", None), ("answer", {"text": "eGFR 85 last month"})):
        r = await client.post(f"/api/v1/prescriptions/{rx['id']}/{path}", headers=doctor, json=body)
        assert r.status_code == 409, r.text
        error = r.json()["error"]
        assert error["code"] == "revision_in_progress" and error["details"]["draft_id"] == v2["id"]
    assert (await client.get(f"/api/v1/prescriptions/{rx['id']}", headers=doctor)).json()[
        "status"
    ] == "returned"
    # The draft discarded, the doctor may answer instead, or revise again (version 3).
    r = await client.post(
        f"/api/v1/prescriptions/{v2['id']}/withdraw", headers=doctor, json={"text": "drafted by mistake"}
    )
    assert r.json()["status"] == "withdrawn"
    v3 = await client.post(f"/api/v1/prescriptions/{rx['id']}/revise", headers=doctor)
    assert v3.status_code == 201 and v3.json()["version"] == 3, v3.text


async def test_no_revision_once_the_consultation_is_closed(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    rx = await signed(client, world)
    await review(client, world, rx["id"], "return", "please lower the dose")
    cid, doctor = rx["consultation_id"], world.dr_dia.headers
    r = await client.post(
        f"/api/v1/consultations/{cid}/messages", headers=doctor, json={"body": "Keep the current dose."}
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/api/v1/consultations/{cid}/complete",
        headers=doctor,
        json={"summary": "stable, review in 3 months"},
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"/api/v1/prescriptions/{rx['id']}/revise", headers=world.dr_dia.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "consultation_closed"
    # Signing what is no longer a draft names the move refused.
    r = await sign(client, world, rx["id"])
    assert r.status_code == 409
    assert r.json()["error"]["details"] == {"state": "returned", "requested": "sign"}


async def test_withdraw(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    rx = await signed(client, world)
    r = await client.post(
        f"/api/v1/prescriptions/{rx['id']}/withdraw",
        headers=world.dr_dia.headers,
        json={"text": "patient prefers to see us in person"},
    )
    assert r.json()["status"] == "withdrawn"


async def test_a_pharmacist_of_another_pharmacy_cannot_review(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession, settings: Settings
) -> None:
    rx = await signed(client, world)
    other = Organisation(kind="pharmacy", name_en="Other", name_zh="其他")
    session.add(other)
    await session.flush()
    account = Account(
        username="pharm.other",
        password_hash="x",
        role=Role.PHARMACIST,
        display_name="O",
        organisation_id=other.id,
    )
    session.add(account)
    await session.flush()
    token = AuthService(session, settings).issue(account, kind="bearer", address="x").token
    await session.commit()
    r = await client.post(
        f"/api/v1/prescriptions/{rx['id']}/review",
        headers={"Authorization": f"Bearer {token}"},
        json={"decision": "approve"},
    )
    assert r.status_code == 404
    assert (
        await client.get("/api/v1/pharmacy/reviews", headers={"Authorization": f"Bearer {token}"})
    ).json() == []


async def test_every_illegal_transition_is_409_with_the_state(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    """Walk a prescription through its states and try every action that is not allowed there."""
    cid = await diagnosed(client, world)
    rx_id = (await draft(client, world, cid)).json()["id"]
    doctor, pharmacist = world.dr_dia.headers, world.pharmacist.headers
    actions: dict[str, tuple[dict[str, str], str, dict[str, Any] | None]] = {
        "sign": (doctor, "sign", None),
        "answer": (doctor, "answer", {"text": "answer"}),
        "revise": (doctor, "revise", None),
        "approve": (pharmacist, "review", {"decision": "approve"}),
        "reject": (pharmacist, "review", {"decision": "reject", "reason": "no"}),
        "return": (pharmacist, "review", {"decision": "return", "reason": "why?"}),
    }
    allowed = {
        "draft": {"sign"},  # a pharmacist does not see drafts at all (404 below)
        "auto_checked": {"approve", "reject", "return"},
        "approved": set(),
        "rejected": set(),
    }

    async def attempt(name: str) -> httpx.Response:
        headers, path, body = actions[name]
        return await client.post(f"/api/v1/prescriptions/{rx_id}/{path}", headers=headers, json=body)

    for state, ok in allowed.items():
        if state == "approved":
            assert (await attempt("approve")).status_code == 200
        for name in actions:
            if name in ok:
                continue
            r = await attempt(name)
            expected = 404 if state == "draft" and actions[name][0] is pharmacist else 409
            assert r.status_code == expected, (state, name, r.text)
            if expected == 409:
                assert r.json()["error"]["details"]["state"] == state, (state, name)
        if state == "draft":
            assert (await attempt("sign")).status_code == 200
        if state == "approved":
            rx_id = (await draft(client, world, cid)).json()["id"]  # a second one, to reject
            assert (await sign(client, world, rx_id)).status_code == 200
            assert (await attempt("reject")).status_code == 200


async def test_validity_and_expiry(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession, tmp_path: Any
) -> None:
    # Valid to the end of the day of issue in China, or three days if the doctor noted so.
    late = datetime(2026, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 in Beijing
    assert expiry_of(late, 1) == datetime(2026, 3, 1, 15, 59, 59, tzinfo=UTC)
    assert expiry_of(late, 3) == datetime(2026, 3, 3, 15, 59, 59, tzinfo=UTC)
    rx = await signed(client, world)
    await session.execute(
        update(Prescription)
        .where(Prescription.id == rx["id"])
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
    assert await PrescriptionService(session, KeyStore(tmp_path)).expire_due() == 1
    await session.commit()
    r = await review(client, world, rx["id"], "approve")
    assert r.status_code == 409 and r.json()["error"]["details"]["state"] == "expired"
