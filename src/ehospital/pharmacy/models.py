"""Stock lots, orders of approved prescriptions, payment notifications, dispensing, delivery."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ehospital.kit.models import Base, BigId, CreatedMixin, IdMixin, UTCDateTime


class OrderStatus(StrEnum):
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    DISPENSED = "dispensed"
    PACKED = "packed"
    WITH_COURIER = "with_courier"
    DELIVERED = "delivered"
    FAILED = "failed"
    RETURNED = "returned"
    CANCELLED = "cancelled"


ORDER_MOVES: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.AWAITING_PAYMENT: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.DISPENSED}),
    OrderStatus.DISPENSED: frozenset({OrderStatus.PACKED}),
    OrderStatus.PACKED: frozenset({OrderStatus.WITH_COURIER}),
    OrderStatus.WITH_COURIER: frozenset({OrderStatus.DELIVERED, OrderStatus.FAILED}),
    OrderStatus.FAILED: frozenset({OrderStatus.WITH_COURIER, OrderStatus.RETURNED}),
}


class StockLot(IdMixin, CreatedMixin, Base):
    """Units of one drug received by a pharmacy with one lot number and expiry date."""

    __tablename__ = "stock_lots"
    __table_args__ = (
        UniqueConstraint("pharmacy_id", "drug_id", "lot_number"),
        # The database itself refuses negative stock, whatever the code does.
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
    )

    pharmacy_id: Mapped[int] = mapped_column(BigId, ForeignKey("organisations.id"), index=True)
    drug_id: Mapped[int] = mapped_column(BigId, ForeignKey("drugs.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(40))
    expires_on: Mapped[date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer)


class Order(IdMixin, CreatedMixin, Base):
    """An approved prescription to be paid, dispensed and delivered by its pharmacy."""

    __tablename__ = "orders"

    prescription_id: Mapped[int] = mapped_column(BigId, ForeignKey("prescriptions.id"), unique=True)
    pharmacy_id: Mapped[int] = mapped_column(BigId, ForeignKey("organisations.id"), index=True)
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id"), index=True)
    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    status: Mapped[str] = mapped_column(String(20))
    amount_cents: Mapped[int] = mapped_column(Integer)
    payment_provider: Mapped[str | None] = mapped_column(String(32))
    payment_txn: Mapped[str | None] = mapped_column(String(64), unique=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dispensed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Money a gateway took for this order that must go back (a payment that arrived after the
    # order was cancelled, or a second payment); each such payment is an order event with its txn.
    refund_due_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class OrderLine(IdMixin, Base):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "position"),)

    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("orders.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    drug_id: Mapped[int] = mapped_column(BigId, ForeignKey("drugs.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)


class DispensedLot(IdMixin, Base):
    """Which lot each dispensed unit came from (recalls need this)."""

    __tablename__ = "dispensed_lots"

    order_line_id: Mapped[int] = mapped_column(BigId, ForeignKey("order_lines.id"), index=True)
    lot_id: Mapped[int] = mapped_column(BigId, ForeignKey("stock_lots.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)


class PaymentNotice(IdMixin, CreatedMixin, Base):
    """Every accepted provider callback; its nonce and transaction id can never be used again."""

    __tablename__ = "payment_notices"

    provider: Mapped[str] = mapped_column(String(32))
    txn_id: Mapped[str] = mapped_column(String(64), unique=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("orders.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)


class EventCode(StrEnum):
    """What the system wrote on the timeline, as a code pages word in their language."""

    APPROVED = "approved"
    PAID = "paid"
    DISPENSED = "dispensed"
    PRESCRIPTION_EXPIRED = "prescription_expired"
    PRESCRIPTION_WITHDRAWN = "prescription_withdrawn"
    PRESCRIPTION_VOID = "prescription_void"
    REFUND_DUE = "refund_due"


class OrderEvent(IdMixin, Base):
    """The order's timeline the patient follows.

    `code` says which system note this is (`EventCode`; `text` then holds its English wording
    for the API and `ehospital rx history`); without a code, `text` is what staff typed.
    `txn_id` is the payment transaction the event is about (paid, refund due).
    """

    __tablename__ = "order_events"

    order_id: Mapped[int] = mapped_column(BigId, ForeignKey("orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    text: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(32))
    txn_id: Mapped[str | None] = mapped_column(String(64))
