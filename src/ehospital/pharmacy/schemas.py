"""Order, stock and delivery payloads."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from ehospital.kit.schemas import MAX_SEQ, DbId, Input, Output


class StockIn(Input):
    drug_code: str = Field(min_length=1, max_length=80)
    lot_number: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")
    expires_on: date
    quantity: int = Field(ge=1, le=1_000_000)
    pharmacy_id: DbId | None = Field(default=None, description="Admins only; staff receive for their own")


class StockRead(Output):
    id: int
    pharmacy_id: int
    drug_id: int
    lot_number: str
    expires_on: date
    quantity: int


class DeliveryIn(Input):
    status: Literal["packed", "with_courier", "delivered", "failed", "returned"]
    text: str | None = Field(default=None, max_length=500)


class LotChoice(Input):
    position: int = Field(ge=1, le=MAX_SEQ, description="The order line's position")
    lot_id: DbId = Field(description="A stock lot of the order's pharmacy, for that line's drug")
    quantity: int = Field(ge=1, le=1_000_000)


class DispenseIn(Input):
    """The lots staff chose; every line must then be covered exactly. Empty: first expiring first."""

    lots: list[LotChoice] = Field(default_factory=list, max_length=100)


class LotOnHand(Output):
    id: int
    lot_number: str
    expires_on: date
    quantity: int


class LineLots(Output):
    position: int
    drug_id: int
    quantity: int
    lots: list[LotOnHand] = Field(description="Unexpired lots with stock, first expiring first")


class LotUse(Output):
    lot_number: str
    expires_on: date
    quantity: int


class OrderLineRead(Output):
    position: int
    drug_id: int
    quantity: int
    unit_price_cents: int
    lots: list[LotUse] = Field(default_factory=list, description="Where the dispensed units came from")


class OrderEventRead(Output):
    at: datetime
    status: str
    text: str | None = Field(description="A system note in English (see `code`), or what staff typed")
    code: str | None = Field(
        description="Which system note: approved, paid, dispensed, prescription_expired, "
        "prescription_withdrawn, prescription_void, refund_due; null for a note staff typed"
    )
    txn_id: str | None = Field(description="The payment transaction the event is about")


class OrderRead(Output):
    id: int
    prescription_id: int
    pharmacy_id: int
    status: str
    amount_cents: int
    payment_provider: str | None
    paid_at: datetime | None
    dispensed_at: datetime | None
    delivered_at: datetime | None
    refund_due_cents: int = Field(
        description="Money taken by a payment that arrived when the order could no longer be paid"
    )
    lines: list[OrderLineRead]
    events: list[OrderEventRead]
