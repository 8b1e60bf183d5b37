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
