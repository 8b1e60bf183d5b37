"""Orders on pages: the patient pays and follows the delivery timeline; the pharmacy's staff and
pharmacists open an order by its number, dispense it and record its delivery steps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import ValidationError

from ehospital.kit.errors import DomainError
from ehospital.pharmacy.schemas import DeliveryIn
from ehospital.prescriptions.schemas import PrescriptionRead
from ehospital.web.common import PatientWeb, PharmacyWeb, PostedForm, Web
from ehospital.web.forms import EMPTY, FormState, failed, field_error, invalid, values_of
from ehospital.web.i18n import has
from ehospital.web.pages.rx_view import order_view, orders, reads
from ehospital.web.pages.shared import MAX_ID

router = APIRouter(include_in_schema=False)

Id = Annotated[int, Path(ge=1, le=MAX_ID)]


def order_failed(web: Web, form: str, exc: DomainError, values: dict[str, str]) -> FormState:
    """A refusal in the page language; order codes worded for orders (`order_error.<code>`)."""
    key = f"order_error.{exc.code}"
    if not has(key, web.lang):
        return failed(web.t, form, exc, values)
    params = {k: v for k, v in exc.details.items() if isinstance(v, str | int)}
    return FormState(form=form, values=values, error=web.t(key, **params), code=exc.code)


# --- the patient -------------------------------------------------------------------------------


async def _patient_page(
    web: Web, order_id: int, state: FormState = EMPTY, status_code: int = 200
) -> Response:
    order = await orders(web).get(web.me, order_id)  # 404 unless it is my family's
    service = reads(web)
    rx = await service.describe(await service.get(web.me, order.prescription_id))
    return web.render(
        "order.html",
        view=await order_view(web, order, rx),
        staff=False,
        state=state,
        status_code=status_code,
        back="/patient/prescriptions",
        here=f"/patient/orders/{order_id}",
    )


@router.get("/patient/orders/{order_id}")
async def my_order(order_id: Id, web: PatientWeb) -> Response:
    """One order of my family: amount, lines, the Pay button or the delivery timeline."""
    return await _patient_page(web, order_id)


@router.post("/patient/orders/{order_id}/pay")
async def pay(order_id: Id, web: PatientWeb, form: PostedForm) -> Response:
    """Pay through the local demo provider (its signed callback is verified like a real one)."""
    try:
        async with web.atomic():
            await orders(web).pay_locally(web.me, order_id)
    except DomainError as exc:
        return await _patient_page(web, order_id, order_failed(web, "order", exc, {}), exc.status_code)
    return web.redirect(f"/patient/orders/{order_id}?notice=order_paid")


# --- the pharmacy ------------------------------------------------------------------------------


@router.get("/pharmacy/orders")
async def order_lookup(web: PharmacyWeb, number: Annotated[str, Query(max_length=20)] = "") -> Response:
    """The pharmacy's orders to handle, and opening any order by its number."""
    value = number.strip().lstrip("#")
    if not number:
        work = await orders(web).work_list(web.me)
        return web.render("pharmacy_orders.html", state=EMPTY, work=work, here="/pharmacy/orders")
    if value.isascii() and value.isdigit() and 1 <= int(value) <= MAX_ID:
        return web.redirect(f"/pharmacy/orders/{int(value)}")
    state = field_error(web.t, "lookup", "number", "validation.number", {"number": number})
    return web.render("pharmacy_orders.html", state=state, work=[], status_code=422, here="/pharmacy/orders")


async def _staff_page(web: Web, order_id: int, state: FormState = EMPTY, status_code: int = 200) -> Response:
    order = await orders(web).get(web.me, order_id)  # 404 unless it is my pharmacy's
    service = reads(web)  # staff and pharmacists of the order's pharmacy may read its prescription
    rx: PrescriptionRead | None = await service.describe(await service.get(web.me, order.prescription_id))
    return web.render(
        "order.html",
        view=await order_view(web, order, rx),
        staff=True,
        state=state,
        status_code=status_code,
        back="/pharmacy/orders",
        here=f"/pharmacy/orders/{order_id}",
    )


@router.get("/pharmacy/orders/{order_id}")
async def staff_order(order_id: Id, web: PharmacyWeb) -> Response:
    return await _staff_page(web, order_id)


@router.post("/pharmacy/orders/{order_id}/dispense")
async def dispense(order_id: Id, web: PharmacyWeb, form: PostedForm) -> Response:
    """Take the stock (first expiring first); a shortage takes nothing and says which line."""
    try:
        async with web.atomic():
            await orders(web).dispense(web.me, order_id)
    except DomainError as exc:
        return await _staff_page(web, order_id, order_failed(web, "order", exc, {}), exc.status_code)
    return web.redirect(f"/pharmacy/orders/{order_id}?notice=order_dispensed")


@router.post("/pharmacy/orders/{order_id}/delivery")
async def delivery(order_id: Id, web: PharmacyWeb, form: PostedForm) -> Response:
    """One delivery step: packed → with courier → delivered (or failed → retried or returned)."""
    values = values_of(form, "status", "text")
    try:
        data = DeliveryIn.model_validate({"status": values["status"], "text": values["text"] or None})
    except ValidationError as exc:
        return await _staff_page(web, order_id, invalid(web.t, "order", exc, values), 422)
    try:
        async with web.atomic():
            await orders(web).deliver(web.me, order_id, data)
    except DomainError as exc:
        return await _staff_page(web, order_id, order_failed(web, "order", exc, values), exc.status_code)
    return web.redirect(f"/pharmacy/orders/{order_id}?notice=order_step_done")
