"""Orders on the pages: the patient pays and follows the timeline, the pharmacy dispenses and
records the delivery steps."""

from __future__ import annotations

import httpx

from tests.personas import World
from tests.test_orders import approved_order, stock
from tests.test_prescriptions import formulary
from tests.test_web_pages import sign_in

__all__ = ["formulary"]  # the fixture, imported for use here


async def test_pay_dispense_deliver_through_the_pages(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    assert (await stock(client, world, "t-metformin-500", "L-1", 200, 100)).status_code == 201
    order = await approved_order(client, world)
    oid = order["id"]

    # --- the patient sees the order on "My prescriptions" and pays ---------------------------------
    csrf = await sign_in(client, "alice")
    page = await client.get("/patient/prescriptions?lang=en")
    assert f'data-order="{oid}"' in page.text and "Awaiting payment" in page.text
    assert f'action="/patient/orders/{oid}/pay"' in page.text and "¥4.20" in page.text
    refused = await client.post(f"/patient/orders/{oid}/pay", data={"csrf": "0" * 64})
    assert refused.status_code == 403
    paid = await client.post(f"/patient/orders/{oid}/pay", data={"csrf": csrf})
    assert paid.status_code == 303 and paid.headers["location"] == f"/patient/orders/{oid}?notice=order_paid"
    page = await client.get(f"/patient/orders/{oid}?lang=en")
    assert 'data-order-status="paid"' in page.text and "/pay" not in page.text
    again = await client.post(f"/patient/orders/{oid}/pay", data={"csrf": csrf})
    assert again.status_code == 409 and "invalid_transition" in again.text

    # --- the pharmacist opens it by number, dispenses and delivers --------------------------------
    csrf = await sign_in(client, "pharmacist.p")
    found = await client.get(f"/pharmacy/orders?number={oid}")
    assert found.status_code == 303 and found.headers["location"] == f"/pharmacy/orders/{oid}"
    page = await client.get(f"/pharmacy/orders/{oid}?lang=en")
    assert page.status_code == 200 and 'id="order-dispense"' in page.text
    assert "metformin 500 mg" in page.text
    refused = await client.post(f"/pharmacy/orders/{oid}/dispense", data={})
    assert refused.status_code == 403
    done = await client.post(f"/pharmacy/orders/{oid}/dispense", data={"csrf": csrf})
    assert done.status_code == 303, done.text
    for step in ("packed", "with_courier", "delivered"):
        page = await client.get(f"/pharmacy/orders/{oid}")
        assert f'id="order-step-{step}"' in page.text
        moved = await client.post(
            f"/pharmacy/orders/{oid}/delivery", data={"csrf": csrf, "status": step, "text": f"{step}!"}
        )
        assert moved.status_code == 303, moved.text
    late = await client.post(f"/pharmacy/orders/{oid}/delivery", data={"csrf": csrf, "status": "packed"})
    assert late.status_code == 409 and "invalid_transition" in late.text
    bad = await client.post(f"/pharmacy/orders/{oid}/delivery", data={"csrf": csrf, "status": "lost"})
    assert bad.status_code == 422

    # --- the patient follows the timeline ------------------------------------------------------
    await sign_in(client, "alice")
    page = await client.get(f"/patient/orders/{oid}?lang=en")
    events = [
        "awaiting_payment",
        "paid",
        "dispensed",
        "packed",
        "with_courier",
        "delivered",
    ]
    assert [e for e in events if f'data-event="{e}"' in page.text] == events
    assert "with_courier!" in page.text and "Delivered" in page.text
    listed = await client.get("/patient/prescriptions")
    assert 'data-event="delivered"' in listed.text

    # --- another family sees nothing --------------------------------------------------------------
    csrf = await sign_in(client, "bob")
    assert (await client.get(f"/patient/orders/{oid}")).status_code == 404
    assert (await client.post(f"/patient/orders/{oid}/pay", data={"csrf": csrf})).status_code == 404


async def test_insufficient_stock_shows_the_message(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    assert (await stock(client, world, "t-metformin-500", "L-FEW", 200, 3)).status_code == 201
    order = await approved_order(client, world)
    oid = order["id"]
    csrf = await sign_in(client, "alice")
    assert (await client.post(f"/patient/orders/{oid}/pay", data={"csrf": csrf})).status_code == 303
    csrf = await sign_in(client, "pharmacist.p")
    refused = await client.post(f"/pharmacy/orders/{oid}/dispense?lang=en", data={"csrf": csrf})
    assert refused.status_code == 409
    assert "insufficient_stock" in refused.text and "line 1 lacks 11 units" in refused.text
    assert 'id="order-dispense"' in refused.text  # still paid: nothing was taken
    page = await client.get(f"/pharmacy/orders/{oid}?lang=zh")
    assert "已支付" in page.text


async def test_order_pages_by_role(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    order = await approved_order(client, world)
    await sign_in(client, "alice")
    assert (await client.get("/pharmacy/orders")).status_code == 403
    await sign_in(client, "pharmacist.p")
    assert (await client.get(f"/patient/orders/{order['id']}")).status_code == 403
    page = await client.get("/pharmacy/orders?lang=en")
    assert 'id="order-lookup-form"' in page.text and 'href="/pharmacy/orders"' in page.text
    assert (await client.get("/pharmacy/orders?number=abc")).status_code == 422
    assert (await client.get("/pharmacy/orders/999999")).status_code == 404


async def test_staff_see_the_orders_waiting(client: httpx.AsyncClient, world: World, formulary: None) -> None:
    assert (await stock(client, world, "t-metformin-500", "L-W", 90, 50)).status_code == 201
    order = await approved_order(client, world)
    await client.post(f"/api/v1/orders/{order['id']}/pay", headers=world.alice.headers)
    listed = (await client.get("/api/v1/pharmacy/orders", headers=world.pharmacist.headers)).json()
    assert [o["id"] for o in listed] == [order["id"]]
    assert (await client.get("/api/v1/pharmacy/orders", headers=world.alice.headers)).status_code == 403
    await sign_in(client, "pharmacist.p")
    page = await client.get("/pharmacy/orders")
    assert page.status_code == 200 and f'data-order="{order["id"]}"' in page.text
