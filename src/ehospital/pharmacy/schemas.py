"""Order, stock and delivery payloads."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from ehospital.kit.schemas import DbId, Input, Output


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
    text: str | None


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
    lines: list[OrderLineRead]
    events: list[OrderEventRead]
