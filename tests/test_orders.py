"""Approved prescriptions become orders: verified payment callbacks, FEFO dispensing, delivery."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.pharmacy.models import StockLot
from ehospital.pharmacy.payments import HmacProvider
from ehospital.prescriptions.models import Drug
from ehospital.prescriptions.service import PrescriptionService
from ehospital.prescriptions.signing import KeyStore
from tests.personas import World
from tests.test_prescription_review import review, signed
from tests.test_prescriptions import formulary

__all__ = ["formulary"]
PROVIDER = HmacProvider("local", b"test-secret")  # the secret the test app is configured with


async def stock(
    client: httpx.AsyncClient, world: World, code: str, lot: str, days: int, qty: int
) -> httpx.Response:
    return await client.post(
        "/api/v1/pharmacy/stock",
        headers=world.pharmacist.headers,
        json={
            "drug_code": code,
            "lot_number": lot,
            "expires_on": (date.today() + timedelta(days=days)).isoformat(),
            "quantity": qty,
        },
    )


async def approved_order(client: httpx.AsyncClient, world: World, **body: Any) -> dict[str, Any]:
    rx = await signed(client, world, **body)
    assert (await review(client, world, rx["id"], "approve")).status_code == 200
    orders = (await client.get("/api/v1/orders", headers=world.alice.headers)).json()
    order: dict[str, Any] = next(o for o in orders if o["prescription_id"] == rx["id"])
    return order


async def test_the_whole_loop_to_delivery(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    assert (await stock(client, world, "t-metformin-500", "L-LATE", 400, 100)).status_code == 201
    assert (await stock(client, world, "t-metformin-500", "L-SOON", 30, 10)).status_code == 201
    order = await approved_order(client, world)
    assert order["status"] == "awaiting_payment" and order["amount_cents"] == 14 * 30
    paid = await client.post(f"/api/v1/orders/{order['id']}/pay", headers=world.alice.headers)
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    rx = (
        await client.get(f"/api/v1/prescriptions/{order['prescription_id']}", headers=world.alice.headers)
    ).json()
    assert rx["status"] == "paid"
    r = await client.post(f"/api/v1/orders/{order['id']}/dispense", headers=world.pharmacist.headers)
    assert r.status_code == 200 and r.json()["status"] == "dispensed"
    lots = {
        lot.lot_number: lot.quantity
        for lot in await session.scalars(select(StockLot).where(StockLot.pharmacy_id == world.pharmacy.id))
    }
    assert lots == {"L-SOON": 0, "L-LATE": 96}  # first expiring first: 10 from the soon lot, 4 more
    used = r.json()["lines"][0]["lots"]
    assert [(u["lot_number"], u["quantity"]) for u in used] == [("L-SOON", 10), ("L-LATE", 4)]
    for step in ("packed", "with_courier", "delivered"):
        r = await client.post(
            f"/api/v1/orders/{order['id']}/delivery", headers=world.pharmacist.headers, json={"status": step}
        )
        assert r.status_code == 200 and r.json()["status"] == step
    final = (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()
    assert [e["status"] for e in final["events"]] == [
        "awaiting_payment",
        "paid",
        "dispensed",
        "packed",
        "with_courier",
        "delivered",
    ]
    rx = (
        await client.get(f"/api/v1/prescriptions/{order['prescription_id']}", headers=world.alice.headers)
    ).json()
    assert rx["status"] == "delivered"
    story = await PrescriptionService(session, KeyStore(Path("/nonexistent"))).history(
        order["prescription_id"]
    )
    rx_steps = [(step["who"], step["action"], step["to"]) for step in story if "prescription_id" in step]
    assert rx_steps == [
        ("dr.dia", "sign", "signed"),
        ("dr.dia", "auto_check", "auto_checked"),
        ("pharmacist.p", "review_approve", "approved"),
        ("system", "paid", "paid"),
        ("pharmacist.p", "dispense", "dispensed"),
        ("pharmacist.p", "deliver", "delivered"),
    ]
    assert [step["to"] for step in story if "order_id" in step][-1] == "delivered"


async def test_an_expired_lot_is_never_used_and_shortage_writes_nothing(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    # The API refuses expired lots; one received earlier that has since expired is put in directly.
    drug_id = await session.scalar(select(Drug.id).where(Drug.code == "t-metformin-500"))
    assert drug_id is not None
    session.add(
        StockLot(
            pharmacy_id=world.pharmacy.id,
            drug_id=drug_id,
            lot_number="L-EXPIRED",
            expires_on=date.today() - timedelta(days=1),
            quantity=100,
        )
    )
    await session.commit()
    assert (await stock(client, world, "t-metformin-500", "L-SMALL", 60, 5)).status_code == 201
    order = await approved_order(client, world)
    await client.post(f"/api/v1/orders/{order['id']}/pay", headers=world.alice.headers)
    r = await client.post(f"/api/v1/orders/{order['id']}/dispense", headers=world.pharmacist.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "insufficient_stock"
    assert r.json()["error"]["details"]["missing"] == 9
    session.expunge_all()
    lots = {
        lot.lot_number: lot.quantity
        for lot in await session.scalars(select(StockLot).where(StockLot.pharmacy_id == world.pharmacy.id))
    }
    assert lots == {"L-EXPIRED": 100, "L-SMALL": 5}  # nothing taken
    again = (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()
    assert again["status"] == "paid"


def callback(order: dict[str, Any], **changes: Any) -> tuple[bytes, str]:
    data = {
        "order_id": order["id"],
        "amount_cents": order["amount_cents"],
        "txn_id": "t-1",
        "nonce": "n-1",
        "timestamp": int(time.time()),
    }
    data.update(changes)
    body = json.dumps(data).encode()
    return body, PROVIDER.sign(body)


@pytest.mark.parametrize(
    ("changes", "forge", "status", "code"),
    [
        ({}, True, 401, "bad_signature"),
        ({"amount_cents": 1}, False, 422, "amount_mismatch"),
        ({"timestamp": int(time.time()) - 3600}, False, 422, "stale_callback"),
    ],
)
async def test_bad_payment_callbacks_are_refused(
    client: httpx.AsyncClient,
    world: World,
    formulary: None,
    changes: dict[str, Any],
    forge: bool,
    status: int,
    code: str,
) -> None:
    order = await approved_order(client, world)
    body, signature = callback(order, **changes)
    if forge:
        signature = HmacProvider("local", b"someone else").sign(body)
    r = await client.post("/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature})
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()[
        "status"
    ] == "awaiting_payment"


async def test_a_replayed_callback_is_refused(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    order = await approved_order(client, world)
    body, signature = callback(order)
    first = await client.post(
        "/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature}
    )
    assert first.status_code == 200 and first.json()["status"] == "paid"
    again = await client.post(
        "/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "replayed_callback"
    r = await client.post(
        "/api/v1/payments/local/callback",
        content=b"{nonsense",
        headers={"X-Signature": PROVIDER.sign(b"{nonsense")},
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_callback"


async def test_who_may_touch_an_order(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    order = await approved_order(client, world)
    assert (await client.get(f"/api/v1/orders/{order['id']}", headers=world.bob.headers)).status_code == 404
    assert (
        await client.post(f"/api/v1/orders/{order['id']}/pay", headers=world.bob.headers)
    ).status_code == 404
    r = await client.post(f"/api/v1/orders/{order['id']}/dispense", headers=world.dr_dia.headers)
    assert r.status_code == 403
    # Unpaid orders cannot be dispensed; a delivery step out of order is 409 with the state.
    r = await client.post(f"/api/v1/orders/{order['id']}/dispense", headers=world.pharmacist.headers)
    assert r.status_code == 409 and r.json()["error"]["details"]["state"] == "awaiting_payment"
    r = await client.post(
        f"/api/v1/orders/{order['id']}/delivery",
        headers=world.pharmacist.headers,
        json={"status": "delivered"},
    )
    assert r.status_code == 409


async def test_stock_input_is_checked(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    assert (await stock(client, world, "no-such", "L1", 30, 5)).json()["error"]["code"] == "unknown_drug"
    assert (await stock(client, world, "t-metformin-500", "L1", 0, 5)).json()["error"][
        "code"
    ] == "lot_expired"
    assert (await stock(client, world, "t-metformin-500", "L1", 30, -5)).status_code == 422
    r = await client.post(
        "/api/v1/pharmacy/stock",
        headers=world.alice.headers,
        json={"drug_code": "t-metformin-500", "lot_number": "L", "expires_on": "2030-01-01", "quantity": 1},
    )
    assert r.status_code == 403


async def test_the_order_of_a_prescription(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    order = await approved_order(client, world)
    url = f"/api/v1/prescriptions/{order['prescription_id']}/order"
    assert (await client.get(url, headers=world.alice.headers)).json()["id"] == order["id"]
    assert (await client.get(url, headers=world.pharmacist.headers)).json()["id"] == order["id"]
    assert (await client.get(url, headers=world.bob.headers)).status_code == 404


async def test_an_expired_prescription_cancels_its_unpaid_order(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession, tmp_path: Path
) -> None:
    from sqlalchemy import update

    from ehospital.kit.models import utcnow
    from ehospital.prescriptions.models import Prescription

    order = await approved_order(client, world)
    await session.execute(
        update(Prescription)
        .where(Prescription.id == order["prescription_id"])
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
    assert await PrescriptionService(session, KeyStore(tmp_path)).expire_due() == 1
    await session.commit()
    after = (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()
    assert after["status"] == "cancelled"
    r = await client.post(f"/api/v1/orders/{order['id']}/pay", headers=world.alice.headers)
    assert r.status_code == 409 and r.json()["error"]["details"]["state"] == "cancelled"


# --- staff choose the lots ---------------------------------------------------------------------


async def paid_order(client: httpx.AsyncClient, world: World) -> dict[str, Any]:
    order = await approved_order(client, world)
    r = await client.post(f"/api/v1/orders/{order['id']}/pay", headers=world.alice.headers)
    assert r.status_code == 200, r.text
    paid: dict[str, Any] = r.json()
    return paid


async def stock_of(session: AsyncSession, world: World) -> dict[str, int]:
    session.expunge_all()
    found = await session.scalars(select(StockLot).where(StockLot.pharmacy_id == world.pharmacy.id))
    return {lot.lot_number: lot.quantity for lot in found}


async def test_staff_choose_the_lots_and_see_the_usable_ones(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    late = (await stock(client, world, "t-metformin-500", "L-LATE", 400, 100)).json()["id"]
    soon = (await stock(client, world, "t-metformin-500", "L-SOON", 30, 10)).json()["id"]
    order = await paid_order(client, world)
    url = f"/api/v1/orders/{order['id']}/lots"
    r = await client.get(url, headers=world.pharmacist.headers)
    assert r.status_code == 200, r.text
    [line] = r.json()
    assert (line["position"], line["quantity"]) == (1, 14)
    assert [(lot["id"], lot["lot_number"], lot["quantity"]) for lot in line["lots"]] == [
        (soon, "L-SOON", 10),
        (late, "L-LATE", 100),
    ]  # first expiring first
    for outsider in (world.alice, world.dr_dia, world.admin):
        assert (await client.get(url, headers=outsider.headers)).status_code == 404

    body = {
        "lots": [
            {"position": 1, "lot_id": late, "quantity": 10},
            {"position": 1, "lot_id": soon, "quantity": 4},
        ]
    }
    r = await client.post(
        f"/api/v1/orders/{order['id']}/dispense", headers=world.pharmacist.headers, json=body
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dispensed"
    assert [(u["lot_number"], u["quantity"]) for u in r.json()["lines"][0]["lots"]] == [
        ("L-LATE", 10),
        ("L-SOON", 4),
    ]
    assert await stock_of(session, world) == {"L-LATE": 90, "L-SOON": 6}


async def test_an_empty_choice_is_first_expiring_first(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    await stock(client, world, "t-metformin-500", "L-LATE", 400, 100)
    await stock(client, world, "t-metformin-500", "L-SOON", 30, 10)
    order = await paid_order(client, world)
    r = await client.post(
        f"/api/v1/orders/{order['id']}/dispense", headers=world.pharmacist.headers, json={"lots": []}
    )
    assert r.status_code == 200, r.text
    assert await stock_of(session, world) == {"L-LATE": 96, "L-SOON": 0}


async def _lot(session: AsyncSession, pharmacy_id: int, code: str, number: str, days: int, qty: int) -> int:
    drug_id = await session.scalar(select(Drug.id).where(Drug.code == code))
    assert drug_id is not None
    lot = StockLot(
        pharmacy_id=pharmacy_id,
        drug_id=drug_id,
        lot_number=number,
        expires_on=date.today() + timedelta(days=days),
        quantity=qty,
    )
    session.add(lot)
    await session.flush()
    return lot.id


@pytest.mark.parametrize(
    ("case", "status", "code", "details"),
    [
        ("expired", 422, "lot_not_usable", {"reason": "expired", "position": 1}),
        ("other_pharmacy", 422, "lot_not_usable", {"reason": "not_in_this_pharmacy"}),
        ("wrong_drug", 422, "lot_not_usable", {"reason": "wrong_drug"}),
        ("short", 422, "lots_do_not_cover_order", {"position": 1, "expected": 14, "chosen": 13}),
        ("over", 422, "lots_do_not_cover_order", {"position": 1, "expected": 14, "chosen": 15}),
        ("over_stock", 409, "insufficient_stock", {"position": 1, "missing": 9}),
        ("no_line", 422, "no_such_line", {"position": 2}),
        ("twice", 422, "duplicate_lot_choice", {"position": 1}),
        ("unknown_field", 422, "validation_error", {}),
        ("bad_id", 422, "validation_error", {}),
    ],
)
async def test_a_refused_choice_of_lots_takes_nothing(
    client: httpx.AsyncClient,
    world: World,
    formulary: None,
    session: AsyncSession,
    case: str,
    status: int,
    code: str,
    details: dict[str, Any],
) -> None:
    from ehospital.directory.models import Organisation
    from ehospital.pharmacy.models import DispensedLot

    other = Organisation(kind="pharmacy", name_en="Other Pharmacy", name_zh="别家药房")
    session.add(other)
    await session.flush()
    lots = {
        "good": await _lot(session, world.pharmacy.id, "t-metformin-500", "L-GOOD", 200, 100),
        "small": await _lot(session, world.pharmacy.id, "t-metformin-500", "L-SMALL", 100, 5),
        "expired": await _lot(session, world.pharmacy.id, "t-metformin-500", "L-OLD", -1, 100),
        "other_pharmacy": await _lot(session, other.id, "t-metformin-500", "L-ELSEWHERE", 200, 100),
        "wrong_drug": await _lot(session, world.pharmacy.id, "t-amlodipine-5", "L-AMLO", 200, 100),
    }
    await session.commit()
    order = await paid_order(client, world)
    before = await stock_of(session, world)
    good = lots["good"]
    chosen: dict[str, Any] = {
        "expired": [{"position": 1, "lot_id": lots["expired"], "quantity": 14}],
        "other_pharmacy": [{"position": 1, "lot_id": lots["other_pharmacy"], "quantity": 14}],
        "wrong_drug": [{"position": 1, "lot_id": lots["wrong_drug"], "quantity": 14}],
        "short": [{"position": 1, "lot_id": good, "quantity": 13}],
        "over": [{"position": 1, "lot_id": good, "quantity": 15}],
        "over_stock": [{"position": 1, "lot_id": lots["small"], "quantity": 14}],
        "no_line": [
            {"position": 1, "lot_id": good, "quantity": 14},
            {"position": 2, "lot_id": good, "quantity": 1},
        ],
        "twice": [
            {"position": 1, "lot_id": good, "quantity": 7},
            {"position": 1, "lot_id": good, "quantity": 7},
        ],
        "unknown_field": [{"position": 1, "lot_id": good, "quantity": 14, "lot_number": "L-GOOD"}],
        "bad_id": [{"position": 1, "lot_id": 2**63, "quantity": 14}],
    }
    r = await client.post(
        f"/api/v1/orders/{order['id']}/dispense",
        headers=world.pharmacist.headers,
        json={"lots": chosen[case]},
    )
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    if details:
        assert details.items() <= error["details"].items()
    if code == "lot_not_usable":
        assert error["details"]["lot_id"] == chosen[case][0]["lot_id"]
    assert await stock_of(session, world) == before  # nothing taken
    assert await session.scalar(select(DispensedLot.id).limit(1)) is None
    again = (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()
    assert again["status"] == "paid" and [e["status"] for e in again["events"]] == [
        "awaiting_payment",
        "paid",
    ]
    # The same order then dispenses from a good lot.
    r = await client.post(
        f"/api/v1/orders/{order['id']}/dispense",
        headers=world.pharmacist.headers,
        json={"lots": [{"position": 1, "lot_id": good, "quantity": 14}]},
    )
    assert r.status_code == 200, r.text
    assert (await stock_of(session, world))["L-GOOD"] == 86


async def test_timeline_events_carry_codes_and_the_transaction(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    await stock(client, world, "t-metformin-500", "L-1", 200, 100)
    order = await paid_order(client, world)
    await client.post(f"/api/v1/orders/{order['id']}/dispense", headers=world.pharmacist.headers)
    await client.post(
        f"/api/v1/orders/{order['id']}/delivery",
        headers=world.pharmacist.headers,
        json={"status": "packed", "text": "box 7"},
    )
    events = (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()["events"]
    assert [(e["status"], e["code"]) for e in events] == [
        ("awaiting_payment", "approved"),
        ("paid", "paid"),
        ("dispensed", "dispensed"),
        ("packed", None),
    ]
    assert events[1]["txn_id"] and events[1]["txn_id"] in events[1]["text"]
    assert events[3]["text"] == "box 7" and events[3]["txn_id"] is None


# --- money that arrives too late --------------------------------------------------------------


async def cancelled_order(
    client: httpx.AsyncClient, world: World, session: AsyncSession, tmp_path: Path
) -> dict[str, Any]:
    from sqlalchemy import update

    from ehospital.kit.models import utcnow
    from ehospital.prescriptions.models import Prescription

    order = await approved_order(client, world)
    await session.execute(
        update(Prescription)
        .where(Prescription.id == order["prescription_id"])
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    await session.commit()
    assert await PrescriptionService(session, KeyStore(tmp_path)).expire_due() == 1
    await session.commit()
    return order


async def test_a_payment_for_a_cancelled_order_is_kept_and_marked_for_refund(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession, tmp_path: Path
) -> None:
    from ehospital.audit.models import AuditEvent
    from ehospital.pharmacy.models import PaymentNotice

    order = await cancelled_order(client, world, session, tmp_path)
    body, signature = callback(order, txn_id="t-late", nonce="n-late")
    r = await client.post("/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature})
    # Acknowledged (a gateway retries anything else), the order stays cancelled, the refund is due.
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["status"] == "cancelled" and answer["refund_due_cents"] == order["amount_cents"]
    assert answer["paid_at"] is None
    assert [(e["status"], e["code"], e["txn_id"]) for e in answer["events"]] == [
        ("awaiting_payment", "approved", None),
        ("cancelled", "prescription_expired", None),
        ("cancelled", "refund_due", "t-late"),
    ]
    notice = await session.scalar(select(PaymentNotice).where(PaymentNotice.txn_id == "t-late"))
    assert notice is not None and notice.amount_cents == order["amount_cents"]
    audited = await session.scalar(
        select(AuditEvent).where(
            AuditEvent.action == "refund_due", AuditEvent.resource_id == str(order["id"])
        )
    )
    assert audited is not None
    # Replay protection still holds: the same notice again is refused and owes nothing more.
    again = await client.post(
        "/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature}
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "replayed_callback"
    after = (await client.get(f"/api/v1/orders/{order['id']}", headers=world.alice.headers)).json()
    assert after["status"] == "cancelled" and after["refund_due_cents"] == order["amount_cents"]
    rx = (
        await client.get(f"/api/v1/prescriptions/{order['prescription_id']}", headers=world.alice.headers)
    ).json()
    assert rx["status"] == "expired"


async def test_a_second_payment_of_a_paid_order_is_marked_for_refund(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    order = await paid_order(client, world)
    body, signature = callback(order, txn_id="t-twice", nonce="n-twice")
    r = await client.post("/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "paid" and r.json()["refund_due_cents"] == order["amount_cents"]
    assert r.json()["events"][-1]["code"] == "refund_due"
