"""How prescriptions look on pages: the doctor's pad (with the rules it still breaks, inline) and
the signed prescriptions of a consultation. No routes here; the consultation page and the
prescription pages both use it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ehospital.directory.models import OrganisationKind
from ehospital.directory.service import DirectoryService
from ehospital.kit.errors import NotFound
from ehospital.pharmacy.models import Order, OrderStatus
from ehospital.pharmacy.service import OrderService
from ehospital.prescriptions.models import Prescription, RxStatus
from ehospital.prescriptions.rules import MAX_ITEMS
from ehospital.prescriptions.schemas import DOSE_UNITS, FREQUENCY_CODES, ROUTES, DrugRead, PrescriptionRead
from ehospital.prescriptions.service import PrescriptionService
from ehospital.web.common import Web
from ehospital.web.forms import EMPTY, FormState
from ehospital.web.i18n import Translator

LINES = tuple(range(1, MAX_ITEMS + 1))
ITEM_FIELDS = ("drug_code", "dose", "dose_unit", "route", "frequency", "days", "quantity", "instructions")
FLAG_FIELDS = ("chronic", "long_term", "guardian_present")
HEADER_FIELDS = ("prescription_id", "pharmacy_id", "extended_reason", "validity_days", "note", *FLAG_FIELDS)
PAD_FIELDS = (*HEADER_FIELDS, *(f"{k}_{n}" for n in LINES for k in ITEM_FIELDS))
# A returned or waiting prescription can still be taken back by its doctor.
WITHDRAWABLE = (RxStatus.AUTO_CHECKED, RxStatus.RETURNED)
LINE_DEFAULTS = {"dose_unit": "mg", "route": "oral"}
# Prescriptions that have an order (approval opens it).
WITH_ORDER = (RxStatus.APPROVED, RxStatus.PAID, RxStatus.DISPENSED, RxStatus.DELIVERED)
# The delivery steps staff may take next from each order status (ORDER_MOVES, less payment).
NEXT_STEPS: dict[str, tuple[str, ...]] = {
    OrderStatus.DISPENSED: (OrderStatus.PACKED,),
    OrderStatus.PACKED: (OrderStatus.WITH_COURIER,),
    OrderStatus.WITH_COURIER: (OrderStatus.DELIVERED, OrderStatus.FAILED),
    OrderStatus.FAILED: (OrderStatus.WITH_COURIER, OrderStatus.RETURNED),
}


def plain_number(value: str) -> str:
    """A stored decimal as people write it: "5E+2" (Decimal.normalize's form) becomes "500"."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return value
    text = f"{number:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def reads(web: Web) -> PrescriptionService:
    return PrescriptionService(web.session, web.runtime.keys)


def orders(web: Web) -> OrderService:
    return OrderService(web.session, web.runtime.payments)


def drug_label(t: Translator, drug: DrugRead) -> str:
    name = drug.generic_zh if t.lang == "zh" else drug.generic_en
    return f"{name} {drug.strength} {drug.unit} · {t.label('drug_form', drug.form)}"


def failure_text(t: Translator, failure: Mapping[str, Any]) -> str:
    """A rule failure in the page language (the service words each in English and Chinese)."""
    return str(failure.get("message_zh") if t.lang == "zh" else failure.get("message")) or str(
        failure.get("rule", "")
    )


async def pharmacies(web: Web) -> list[tuple[int, str]]:
    found = await DirectoryService(web.session).organisations()
    return [
        (o.id, o.name_zh if web.lang == "zh" else o.name_en)
        for o in found
        if o.kind == OrganisationKind.PHARMACY
    ]


def rx_view(web: Web, rx: PrescriptionRead, question: str | None = None) -> dict[str, Any]:
    """One prescription as lists and review pages show it."""
    t = web.t
    return {
        "rx": rx,
        "items": [
            {"item": i, "label": drug_label(t, i.drug), "dose": plain_number(i.dose)} for i in rx.items
        ],
        "question": question,
        "can_answer": rx.status == RxStatus.RETURNED,
        "can_withdraw": rx.status in WITHDRAWABLE,
        "order": None,
    }


async def order_view(web: Web, order: Order, rx: PrescriptionRead | None) -> dict[str, Any]:
    """An order with its lines (drug names when the prescription is readable), timeline and the
    actions its status allows."""
    read = await orders(web).describe(order)
    names = {i.position: drug_label(web.t, i.drug) for i in rx.items} if rx is not None else {}
    return {
        "o": read,
        "lines": [
            {"line": line, "label": names.get(line.position) or web.t("order.drug_id", id=line.drug_id)}
            for line in read.lines
        ],
        "can_pay": read.status == OrderStatus.AWAITING_PAYMENT,
        "can_dispense": read.status == OrderStatus.PAID,
        "steps": NEXT_STEPS.get(read.status, ()),
    }


async def described(web: Web, found: Sequence[Prescription]) -> list[dict[str, Any]]:
    service = reads(web)
    views = []
    for prescription in found:
        question = None
        if prescription.status == RxStatus.RETURNED:
            question = await service.latest_text(prescription, "review_return")
        rx = await service.describe(prescription)
        view = rx_view(web, rx, question)
        if web.me.is_patient and prescription.status in WITH_ORDER:
            try:
                order = await orders(web).of_prescription(web.me, prescription.id)
            except NotFound:
                order = None
            if order is not None:
                view["order"] = await order_view(web, order, rx)
        views.append(view)
    return views


def _blank_lines() -> list[dict[str, str]]:
    return [dict(LINE_DEFAULTS) for _ in LINES]


async def pad_view(
    web: Web,
    drafts: Sequence[Prescription],
    state: FormState = EMPTY,
    pick: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """The prescription pad: the doctor's latest draft (or a blank one), or what was just posted
    if it was refused; the rules the saved draft still breaks are put next to their lines."""
    t = web.t
    service = reads(web)
    header: dict[str, str] = {"validity_days": "1"}
    lines = _blank_lines()
    labels = ["" for _ in LINES]
    general: list[str] = []
    by_line: dict[int, list[str]] = {}
    clinical: list[dict[str, str]] = []
    draft = drafts[-1] if drafts else None
    if state.form == "rx":
        header = {k: state.value(k) for k in HEADER_FIELDS}
        lines = [{k: state.value(f"{k}_{n}") for k in ITEM_FIELDS} for n in LINES]
    elif draft is not None:
        rx = await service.describe(draft)
        header = {
            "prescription_id": str(rx.id),
            "pharmacy_id": str(rx.pharmacy_id),
            "extended_reason": rx.extended_reason or "",
            "validity_days": str(rx.validity_days),
            "note": rx.note or "",
            **{k: "1" if getattr(rx, k) else "" for k in FLAG_FIELDS},
        }
        for item in rx.items[: len(LINES)]:
            lines[item.position - 1] = {
                "drug_code": item.drug.code,
                "dose": plain_number(item.dose),
                "dose_unit": item.dose_unit,
                "route": item.route,
                "frequency": item.frequency,
                "days": str(item.days),
                "quantity": str(item.quantity),
                "instructions": item.instructions,
            }
            labels[item.position - 1] = drug_label(t, item.drug)
        clinical = [
            {
                "severity": str(f.severity),
                "text": f.message_zh if web.lang == "zh" and f.message_zh else f.message,
                "source": f.source,
            }
            for f in await service.clinical_preview(web.me, draft.id)
        ]
        for failure in await service.check(web.me, draft.id):
            text = failure_text(t, failure.as_dict())
            if failure.item and 1 <= failure.item <= len(LINES):
                by_line.setdefault(failure.item, []).append(text)
            else:
                general.append(text)
    if pick is not None and 1 <= pick[0] <= len(LINES):
        lines[pick[0] - 1]["drug_code"] = pick[1]
        labels[pick[0] - 1] = ""
    if state.form == "rx" and state.code == "unknown_drug":
        unknown = set(state.values.get("unknown_codes", "").split("\n"))
        for n in LINES:
            if lines[n - 1].get("drug_code") in unknown:
                state.fields.setdefault(f"drug_code_{n}", t("rx.unknown_drug"))
    shown = [
        n
        for n in LINES
        if lines[n - 1].get("drug_code") or by_line.get(n) or any(k.endswith(f"_{n}") for k in state.fields)
    ]
    # Filled lines and the next empty one are open; the rest wait behind "more lines".
    first_hidden = max(shown, default=0) + 2
    return {
        "draft_id": draft.id if draft is not None and state.form != "rx" else None,
        "first_hidden": first_hidden if first_hidden <= len(LINES) else None,
        "open_more": False,
        "failing": bool(general or by_line),
        "unit_options": [(u, t.label("unit", u)) for u in DOSE_UNITS],
        "route_options": [(r, t.label("route", r)) for r in ROUTES],
        "frequency_options": [(q, t.label("freq", q)) for q in FREQUENCY_CODES],
        "header": header,
        "lines": [
            {
                "n": n,
                "values": lines[n - 1],
                "label": labels[n - 1],
                "failures": by_line.get(n, []),
            }
            for n in LINES
        ],
        "general_failures": general,
        "clinical": clinical,
        "pharmacies": await pharmacies(web),
    }
