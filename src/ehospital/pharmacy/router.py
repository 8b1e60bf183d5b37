"""Orders, payment callbacks, stock, dispensing and delivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, status

from ehospital.deps import CurrentActor, RuntimeDep, SessionDep
from ehospital.kit.schemas import IdPath
from ehospital.pharmacy.schemas import DeliveryIn, DispenseIn, LineLots, OrderRead, StockIn, StockRead
from ehospital.pharmacy.service import OrderService

router = APIRouter(prefix="/api/v1", tags=["pharmacy"])


def _service(session: SessionDep, runtime: RuntimeDep) -> OrderService:
    return OrderService(session, runtime.payments)


@router.get("/orders", response_model=list[OrderRead])
async def my_orders(actor: CurrentActor, session: SessionDep, runtime: RuntimeDep) -> list[OrderRead]:
    """Your family's orders, newest first (patients)."""
    service = _service(session, runtime)
    return [await service.describe(o) for o in await service.mine(actor)]


@router.get("/prescriptions/{prescription_id}/order", response_model=OrderRead)
async def order_of_prescription(
    prescription_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> OrderRead:
    """The order an approved prescription became (its patient account, or its pharmacy's staff)."""
    service = _service(session, runtime)
    return await service.describe(await service.of_prescription(actor, prescription_id))


@router.get("/pharmacy/orders", response_model=list[OrderRead])
async def pharmacy_orders(actor: CurrentActor, session: SessionDep, runtime: RuntimeDep) -> list[OrderRead]:
    """Your pharmacy's orders to dispense or move on, oldest paid first (pharmacy staff)."""
    service = _service(session, runtime)
    return [await service.describe(o) for o in await service.work_list(actor)]


@router.get("/orders/{order_id}", response_model=OrderRead)
async def get_order(
    order_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> OrderRead:
    """An order with its timeline (its patient account, or its pharmacy's staff)."""
    service = _service(session, runtime)
    return await service.describe(await service.get(actor, order_id))


@router.post("/orders/{order_id}/pay", response_model=OrderRead)
async def pay_order(
    order_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> OrderRead:
    """Pay with the local demo provider (its signed callback is processed like a real one)."""
    service = _service(session, runtime)
    return await service.describe(await service.pay_locally(actor, order_id))


@router.post("/payments/{provider}/callback", response_model=OrderRead)
async def payment_callback(
    provider: str,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    x_signature: Annotated[str, Header(max_length=200)] = "",
) -> OrderRead:
    """A payment provider's notice, authenticated by `X-Signature: sha256=<HMAC of the body>`.

    A genuine notice for an order that can no longer be paid (cancelled, or already paid) is
    acknowledged with 200 so the gateway stops retrying: the order keeps its status and
    `refund_due_cents` says how much is owed back (a `refund_due` event names the transaction).
    """
    body = await request.body()
    service = _service(session, runtime)
    return await service.describe(await service.payment_callback(provider, body[:10_000], x_signature))


@router.get("/orders/{order_id}/lots", response_model=list[LineLots])
async def order_lots(
    order_id: IdPath, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> list[LineLots]:
    """Per order line, the lots it can be dispensed from, first expiring first (its pharmacy's staff)."""
    return await _service(session, runtime).usable_lots(actor, order_id)


@router.post("/orders/{order_id}/dispense", response_model=OrderRead)
async def dispense_order(
    order_id: IdPath,
    actor: CurrentActor,
    session: SessionDep,
    runtime: RuntimeDep,
    data: DispenseIn | None = None,
) -> OrderRead:
    """Dispense a paid order (pharmacy staff): from the lots in the body, which must cover every
    line exactly, or with no body from the first-expiring unexpired lots."""
    service = _service(session, runtime)
    chosen = data.lots if data is not None else []
    return await service.describe(await service.dispense(actor, order_id, chosen))


@router.post("/orders/{order_id}/delivery", response_model=OrderRead)
async def update_delivery(
    order_id: IdPath, data: DeliveryIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> OrderRead:
    """Record a delivery step: packed, with courier, delivered, failed, returned (pharmacy staff)."""
    service = _service(session, runtime)
    return await service.describe(await service.deliver(actor, order_id, data))


@router.post("/pharmacy/stock", response_model=StockRead, status_code=status.HTTP_201_CREATED)
async def receive_stock(
    data: StockIn, actor: CurrentActor, session: SessionDep, runtime: RuntimeDep
) -> StockRead:
    """Receive a lot into your pharmacy's stock (pharmacy staff, or an admin naming the pharmacy)."""
    return StockRead.model_validate(await _service(session, runtime).receive_stock(actor, data))
