"""Orders on pages: the patient pays and follows the delivery timeline; the pharmacy's staff and
pharmacists open an order by its number, dispense it and record its delivery steps."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from pydantic import ValidationError

from ehospital.kit.errors import DomainError
from ehospital.pharmacy.schemas import DeliveryIn, DispenseIn, LineLots
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
    if "reason" in params:
        params["reason"] = web.t.label("lot_unusable", params["reason"])
    message = web.t(key, **params)
    # A refusal about one line's lot also marks that line's lot selector.
    field = f"lot_{params.get('position')}"
    fields = {field: message} if "lot_id" in params and field in values else {}
    return FormState(form=form, values=values, fields=fields, error=message, code=exc.code)


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
    view = await order_view(web, order, rx)
    if view["can_dispense"]:
        labels = {row["line"].position: row["label"] for row in view["lines"]}
        view["lot_choices"] = lot_choices(web, await orders(web).usable_lots(web.me, order_id), labels)
    return web.render(
        "order.html",
        view=view,
        staff=True,
        state=state,
        status_code=status_code,
        back="/pharmacy/orders",
        here=f"/pharmacy/orders/{order_id}",
    )


def lot_choices(web: Web, lines: list[LineLots], labels: dict[int, str]) -> list[dict[str, Any]]:
    """Per line, the lots that can give all its units on their own (first expiring first);
    "automatic" (first expiring first, across lots) stays the default."""
    return [
        {
            "position": line.position,
            "label": web.t(
                "order.lot_for_line",
                position=line.position,
                drug=labels.get(line.position, ""),
                quantity=line.quantity,
            ),
            "options": [
                (
                    str(lot.id),
                    web.t(
                        "order.lot_option",
                        number=lot.lot_number,
                        date=lot.expires_on.isoformat(),
                        quantity=lot.quantity,
                    ),
                )
                for lot in line.lots
                if lot.quantity >= line.quantity
            ],
        }
        for line in lines
    ]


@router.get("/pharmacy/orders/{order_id}")
async def staff_order(order_id: Id, web: PharmacyWeb) -> Response:
    return await _staff_page(web, order_id)


@router.post("/pharmacy/orders/{order_id}/dispense")
async def dispense(order_id: Id, web: PharmacyWeb, form: PostedForm) -> Response:
    """Take the stock: each line from the lot chosen for it, or first expiring first when left on
    automatic; a refusal (shortage, unusable lot) takes nothing and says which line."""
    service = orders(web)
    lines = await service.usable_lots(web.me, order_id)  # 404 unless it is my pharmacy's
    values = values_of(form, *(f"lot_{line.position}" for line in lines))
    picked = [(line, values[f"lot_{line.position}"]) for line in lines if values[f"lot_{line.position}"]]
    try:
        data = DispenseIn.model_validate(
            {
                "lots": [
                    {
                        "position": line.position,
                        "lot_id": int(value) if value.isascii() and value.isdigit() else value,
                        "quantity": line.quantity,
                    }
                    for line, value in picked
                ]
            }
        )
    except ValidationError as exc:

        def locate(loc: tuple[int | str, ...]) -> str:
            index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            return f"lot_{picked[index][0].position}" if picked else "form"

        return await _staff_page(web, order_id, invalid(web.t, "order", exc, values, locate=locate), 422)
    try:
        async with web.atomic():
            await service.dispense(web.me, order_id, data.lots, automatic_rest=True)
    except DomainError as exc:
        return await _staff_page(web, order_id, order_failed(web, "order", exc, values), exc.status_code)
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
