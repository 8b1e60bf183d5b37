"""Orders on the pages: the patient pays and follows the timeline, the pharmacy dispenses and
records the delivery steps."""

from __future__ import annotations

import html
import re
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.pharmacy.models import EventCode
from ehospital.web import i18n
from tests.personas import World
from tests.test_orders import _lot, approved_order, callback, cancelled_order, paid_order, stock, stock_of
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


def visible_text(page: str) -> str:
    """What a reader sees: the page without its tags and attributes."""
    return html.unescape(re.sub(r"<[^>]*>", " ", page))


def options_of(page: str, name: str) -> list[tuple[str, bool]]:
    """The (value, selected) options of the select called `name`."""
    match = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S)
    assert match, f"no select {name}"
    return [(v, bool(sel)) for v, sel in re.findall(r'<option value="([^"]*)"( selected)?>', match.group(1))]


async def test_staff_choose_the_lot_of_each_line(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    soon = (await stock(client, world, "t-metformin-500", "L-SOON", 30, 20)).json()["id"]
    late = (await stock(client, world, "t-metformin-500", "L-LATE", 400, 100)).json()["id"]
    tiny = (await stock(client, world, "t-metformin-500", "L-TINY", 10, 3)).json()["id"]
    order = await paid_order(client, world)
    oid = order["id"]
    csrf = await sign_in(client, "pharmacist.p")
    page = await client.get(f"/pharmacy/orders/{oid}?lang=en")
    # Automatic (first expiring first) comes first, so it is the default; a lot that cannot give
    # all 14 units alone (L-TINY) is not offered.
    assert options_of(page.text, "lot_1") == [("", False), (str(soon), False), (str(late), False)]
    assert "L-TINY" not in page.text and tiny not in (soon, late)
    assert "Automatic (first expiring first)" in page.text and "Lot L-LATE" in page.text
    zh = await client.get(f"/pharmacy/orders/{oid}?lang=zh")
    assert "自动（先到期先出）" in zh.text and "批号 L-LATE" in zh.text
    done = await client.post(f"/pharmacy/orders/{oid}/dispense", data={"csrf": csrf, "lot_1": str(late)})
    assert done.status_code == 303, done.text
    assert await stock_of(session, world) == {"L-SOON": 20, "L-LATE": 86, "L-TINY": 3}
    page = await client.get(f"/pharmacy/orders/{oid}")
    assert 'name="lot_1"' not in page.text and "L-LATE" in page.text  # dispensed: the lots used are listed


async def test_automatic_stays_first_expiring_first(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    await stock(client, world, "t-metformin-500", "L-SOON", 30, 10)
    await stock(client, world, "t-metformin-500", "L-LATE", 400, 100)
    order = await paid_order(client, world)
    csrf = await sign_in(client, "pharmacist.p")
    done = await client.post(f"/pharmacy/orders/{order['id']}/dispense", data={"csrf": csrf, "lot_1": ""})
    assert done.status_code == 303, done.text
    assert await stock_of(session, world) == {"L-SOON": 0, "L-LATE": 96}


async def test_an_unusable_lot_is_refused_on_the_page(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession
) -> None:
    from ehospital.directory.models import Organisation

    other = Organisation(kind="pharmacy", name_en="Other Pharmacy", name_zh="别家药房")
    session.add(other)
    await session.flush()
    expired = await _lot(session, world.pharmacy.id, "t-metformin-500", "L-OLD", -1, 100)
    elsewhere = await _lot(session, other.id, "t-metformin-500", "L-ELSEWHERE", 200, 100)
    small = await _lot(session, world.pharmacy.id, "t-metformin-500", "L-SMALL", 100, 5)
    await session.commit()
    order = await paid_order(client, world)
    oid = order["id"]
    before = await stock_of(session, world)
    csrf = await sign_in(client, "pharmacist.p")
    await client.get(f"/pharmacy/orders/{oid}?lang=en")
    refused = await client.post(
        f"/pharmacy/orders/{oid}/dispense", data={"csrf": csrf, "lot_1": str(expired)}
    )
    assert refused.status_code == 422 and "lot_not_usable" in refused.text
    assert f"Lot #{expired} cannot be used for line 1: it has expired" in html.unescape(refused.text)
    assert 'aria-invalid="true"' in refused.text and 'id="order-dispense"' in refused.text
    refused = await client.post(
        f"/pharmacy/orders/{oid}/dispense?lang=zh", data={"csrf": csrf, "lot_1": str(elsewhere)}
    )
    assert refused.status_code == 422 and "该批次不在本药房库存中" in refused.text
    refused = await client.post(f"/pharmacy/orders/{oid}/dispense", data={"csrf": csrf, "lot_1": str(small)})
    assert refused.status_code == 409 and "insufficient_stock" in refused.text
    bad = await client.post(f"/pharmacy/orders/{oid}/dispense", data={"csrf": csrf, "lot_1": "L-OLD"})
    assert bad.status_code == 422 and "validation_error" in bad.text
    assert await stock_of(session, world) == before  # nothing was taken
    page = await client.get(f"/pharmacy/orders/{oid}")
    assert 'data-order-status="paid"' in page.text


async def test_the_timeline_speaks_the_page_language(
    client: httpx.AsyncClient, world: World, formulary: None
) -> None:
    await stock(client, world, "t-metformin-500", "L-1", 200, 100)
    order = await paid_order(client, world)
    oid = order["id"]
    await client.post(f"/api/v1/orders/{oid}/dispense", headers=world.pharmacist.headers)
    await client.post(
        f"/api/v1/orders/{oid}/delivery",
        headers=world.pharmacist.headers,
        json={"status": "packed", "text": "第 7 箱 box 7"},
    )
    events = (await client.get(f"/api/v1/orders/{oid}", headers=world.alice.headers)).json()["events"]
    system_notes = [e["text"] for e in events if e["code"]]
    assert len(system_notes) == 3 and all(system_notes)
    txn = events[1]["txn_id"]
    await sign_in(client, "alice")
    for url in (f"/patient/orders/{oid}?lang=zh", "/patient/prescriptions?lang=zh"):
        page = visible_text((await client.get(url)).text)
        for note in system_notes:
            assert note not in page, note  # no English system note on a Chinese page
        assert "药师已审核通过" in page and f"已收到付款（交易号 {txn}）" in page and "已从库存出库" in page
        assert "第 7 箱 box 7" in page  # what staff typed, as typed
    page = html.unescape((await client.get(f"/patient/orders/{oid}?lang=en")).text)
    assert f"payment received (transaction {txn})" in page


def test_every_timeline_code_is_worded() -> None:
    for lang in i18n.LANGS:
        assert {f"order_event.{c}" for c in EventCode} <= set(i18n.CATALOGS[lang])


async def test_a_late_payment_shows_the_refund_due(
    client: httpx.AsyncClient, world: World, formulary: None, session: AsyncSession, tmp_path: Path
) -> None:
    order = await cancelled_order(client, world, session, tmp_path)
    body, signature = callback(order, txn_id="t-late", nonce="n-late")
    r = await client.post("/api/v1/payments/local/callback", content=body, headers={"X-Signature": signature})
    assert r.status_code == 200, r.text
    await sign_in(client, "alice")
    page = (await client.get(f"/patient/orders/{order['id']}?lang=zh")).text
    assert 'data-order-status="cancelled"' in page and 'id="order-refund-due"' in page
    page = visible_text(page)
    assert "待退款 ¥4.20" in " ".join(page.split())
    assert "处方在支付前已过期" in page and "交易号 t-late" in page and "prescription expired" not in page
