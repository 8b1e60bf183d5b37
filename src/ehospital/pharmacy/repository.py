"""Every query of stock, orders and payments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import Integer, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.kit.models import BigId, one_or_none
from ehospital.pharmacy.models import DispensedLot, Order, OrderEvent, OrderLine, PaymentNotice, StockLot

_LOT_QUANTITY_LOCKED = (
    select(StockLot.quantity).where(StockLot.id == bindparam("lot_id", type_=BigId)).with_for_update()
)
_DECREMENT = (
    update(StockLot)
    .where(
        StockLot.id == bindparam("lot_id", type_=BigId), StockLot.quantity >= bindparam("n", type_=Integer)
    )
    .values(quantity=StockLot.quantity - bindparam("n", type_=Integer))
    .execution_options(synchronize_session=False)
)


class PharmacyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: StockLot | Order | OrderLine | DispensedLot | PaymentNotice | OrderEvent) -> None:
        self.session.add(obj)

    async def order(self, order_id: int, *, lock: bool = False) -> Order | None:
        query = select(Order).where(Order.id == order_id)
        if lock:
            query = query.with_for_update().execution_options(populate_existing=True)
        return await one_or_none(self.session, query)

    async def order_of_prescription(self, prescription_id: int) -> Order | None:
        return await one_or_none(self.session, select(Order).where(Order.prescription_id == prescription_id))

    async def orders_of_account(self, account_id: int) -> Sequence[Order]:
        return (
            await self.session.scalars(
                select(Order).where(Order.account_id == account_id).order_by(Order.id.desc())
            )
        ).all()

    async def orders_of_pharmacy(self, pharmacy_id: int, statuses: Sequence[str]) -> Sequence[Order]:
        query = select(Order).where(Order.pharmacy_id == pharmacy_id, Order.status.in_(statuses))
        return (await self.session.scalars(query.order_by(Order.paid_at, Order.id))).all()

    async def lines(self, order_id: int) -> Sequence[OrderLine]:
        query = select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.position)
        return (await self.session.scalars(query)).all()

    async def events(self, order_id: int) -> Sequence[OrderEvent]:
        query = select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
        return (await self.session.scalars(query)).all()

    async def usable_lots(self, pharmacy_id: int, drug_id: int, today: date) -> Sequence[StockLot]:
        """Unexpired lots with stock, first expiring first."""
        return (
            await self.session.scalars(
                select(StockLot)
                .where(
                    StockLot.pharmacy_id == pharmacy_id,
                    StockLot.drug_id == drug_id,
                    StockLot.expires_on > today,
                    StockLot.quantity > 0,
                )
                .order_by(StockLot.expires_on, StockLot.id)
                # Fresh quantities: `take` updates rows behind the identity map's back.
                .execution_options(populate_existing=True)
            )
        ).all()

    async def lots(self, lot_ids: Sequence[int]) -> dict[int, StockLot]:
        found = await self.session.scalars(
            select(StockLot).where(StockLot.id.in_(lot_ids)).execution_options(populate_existing=True)
        )
        return {lot.id: lot for lot in found}

    async def take(self, lot_id: int, wanted: int, *, seen: int | None = None) -> int:
        """Take up to `wanted` units from a lot; returns how many were taken.

        Every decrement is a guarded UPDATE (quantity >= n), and a CHECK constraint backs it:
        stock cannot go negative. With `seen` (the quantity just read) the caller tries that
        first, one statement; if another order took units in between, the row is locked
        (PostgreSQL; SQLite holds the database's write lock) and read again, so two orders
        dispensed at the same moment see each other's result.
        """
        if seen is not None and (n := min(seen, wanted)) > 0 and await self._decrement(lot_id, n):
            return n
        left = await self.session.scalar(_LOT_QUANTITY_LOCKED, {"lot_id": lot_id})
        n = min(int(left or 0), wanted)
        return n if n > 0 and await self._decrement(lot_id, n) else 0

    async def _decrement(self, lot_id: int, n: int) -> bool:
        result = await self.session.execute(_DECREMENT, {"lot_id": lot_id, "n": n})
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def notice_seen(self, txn_id: str, nonce: str) -> bool:
        found = await self.session.scalar(
            select(PaymentNotice.id)
            .where((PaymentNotice.txn_id == txn_id) | (PaymentNotice.nonce == nonce))
            .limit(1)
        )
        return found is not None

    async def lots_used(self, line_ids: Sequence[int]) -> Sequence[tuple[int, str, date, int]]:
        """(order line, lot number, expiry, units) of what was dispensed."""
        rows = await self.session.execute(
            select(
                DispensedLot.order_line_id, StockLot.lot_number, StockLot.expires_on, DispensedLot.quantity
            )
            .join(StockLot, StockLot.id == DispensedLot.lot_id)
            .where(DispensedLot.order_line_id.in_(line_ids))
            .order_by(DispensedLot.id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]
