"""Orders of approved prescriptions: payment (verified callbacks), FEFO dispensing, delivery."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from ehospital.audit.service import record
from ehospital.auth.models import Role
from ehospital.kit.context import SYSTEM, Actor
from ehospital.kit.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unauthenticated,
    Unprocessable,
    require_move,
)
from ehospital.kit.models import utcnow
from ehospital.pharmacy.models import (
    ORDER_MOVES,
    DispensedLot,
    EventCode,
    Order,
    OrderEvent,
    OrderLine,
    OrderStatus,
    PaymentNotice,
    StockLot,
)
from ehospital.pharmacy.payments import HmacProvider, parse_callback
from ehospital.pharmacy.repository import PharmacyRepository
from ehospital.pharmacy.schemas import (
    DeliveryIn,
    LineLots,
    LotChoice,
    LotOnHand,
    LotUse,
    OrderEventRead,
    OrderLineRead,
    OrderRead,
    StockIn,
)
from ehospital.prescriptions.models import Drug, Prescription, PrescriptionItem, RxStatus
from ehospital.prescriptions.repository import PrescriptionRepository

CALLBACK_MAX_AGE_SECONDS = 300


def _not_found() -> NotFound:
    return NotFound("no such order", code="order_not_found")


class OrderService:
    def __init__(self, session: AsyncSession, providers: dict[str, HmacProvider]) -> None:
        self.session = session
        self.providers = providers
        self.repo = PharmacyRepository(session)
        self.rx = PrescriptionRepository(session)
        # Read once per request: an order locked in this transaction, and an order's lines.
        self._locked: dict[int, Order] = {}
        self._lines: dict[int, Sequence[OrderLine]] = {}

    async def _locked_order(self, order_id: int) -> Order | None:
        """The order's row, locked for the rest of the transaction (read once)."""
        order = self._locked.get(order_id)
        if order is None:
            order = await self.repo.order(order_id, lock=True)
            if order is not None:
                self._locked[order_id] = order
        return order

    async def lines(self, order: Order) -> Sequence[OrderLine]:
        found = self._lines.get(order.id)
        if found is None:
            found = self._lines[order.id] = await self.repo.lines(order.id)
        return found

    # --- orders -----------------------------------------------------------------------------
    async def open_for(
        self,
        prescription: Prescription,
        account_id: int,
        lines: tuple[Sequence[PrescriptionItem], dict[int, Drug]],
    ) -> Order:
        """The order of a prescription the pharmacist just approved (its items and their drugs
        as the caller read them), priced from the formulary."""
        items, drugs = lines
        order = Order(
            prescription_id=prescription.id,
            pharmacy_id=prescription.pharmacy_id,
            account_id=account_id,
            patient_id=prescription.patient_id,
            status=OrderStatus.AWAITING_PAYMENT,
            amount_cents=sum(i.quantity * drugs[i.drug_id].price_cents for i in items),
        )
        self.repo.add(order)
        await self.session.flush()
        for i in items:
            self.repo.add(
                OrderLine(
                    order_id=order.id,
                    position=i.position,
                    drug_id=i.drug_id,
                    quantity=i.quantity,
                    unit_price_cents=drugs[i.drug_id].price_cents,
                )
            )
        self._event(
            order, OrderStatus.AWAITING_PAYMENT, None, "approved by the pharmacist", code=EventCode.APPROVED
        )
        return order

    def _move(
        self,
        actor: Actor,
        order: Order,
        to: OrderStatus,
        text: str | None = None,
        *,
        code: EventCode | None = None,
        txn_id: str | None = None,
    ) -> None:
        require_move(ORDER_MOVES, OrderStatus(order.status), to, "an order")
        order.status = to
        self._event(order, to, actor.account_id or None, text, code=code, txn_id=txn_id)
        record(self.session, actor, str(to), "order", order.id, patient_id=order.patient_id)

    def _event(
        self,
        order: Order,
        status: OrderStatus,
        actor_id: int | None,
        text: str | None,
        *,
        code: EventCode | None = None,
        txn_id: str | None = None,
    ) -> None:
        """A timeline entry: a system note has a `code` (pages word it; `text` is its English
        wording), a note staff typed has none."""
        self.repo.add(
            OrderEvent(
                order_id=order.id,
                at=utcnow(),
                status=str(status),
                actor_id=actor_id,
                text=text,
                code=None if code is None else str(code),
                txn_id=txn_id,
            )
        )

    async def _prescription_to(self, actor: Actor, order: Order, to: RxStatus, action: str) -> None:
        from ehospital.prescriptions.service import advance

        prescription = await self.rx.prescription(order.prescription_id)
        assert prescription is not None
        advance(self.session, actor, prescription, to, action)

    async def cancel_unpaid(self, prescription_id: int, reason: str) -> None:
        """Cancel the order of a prescription that can no longer be dispensed."""
        order = await self.repo.order_of_prescription(prescription_id)
        if order is not None and order.status == OrderStatus.AWAITING_PAYMENT:
            prescription = await self.rx.prescription(prescription_id)
            now = prescription.status if prescription is not None else None
            why = EventCode.PRESCRIPTION_VOID
            if now == RxStatus.EXPIRED:
                why = EventCode.PRESCRIPTION_EXPIRED
            elif now == RxStatus.WITHDRAWN:
                why = EventCode.PRESCRIPTION_WITHDRAWN
            self._move(SYSTEM, order, OrderStatus.CANCELLED, reason, code=why)

    # --- payment ----------------------------------------------------------------------------
    async def pay_locally(self, actor: Actor, order_id: int) -> Order:
        """Demo payment: the local provider "calls back" exactly as a real gateway would."""
        order = await self._own(actor, order_id)
        if order.status != OrderStatus.AWAITING_PAYMENT:
            raise Conflict(f"the order is {order.status}", code="invalid_transition", state=order.status)
        body, signature = self.providers["local"].callback(order.id, order.amount_cents)
        return await self.payment_callback("local", body, signature)

    async def payment_callback(self, provider_name: str, body: bytes, signature: str) -> Order:
        """A provider's notice that an order was paid: signature, freshness, replay and amount
        are all checked before anything is written.

        A genuine, fresh notice for an order that can no longer be paid (cancelled because its
        prescription expired, or already paid by another transaction) means the gateway has
        taken the patient's money: the notice is stored (so it cannot be replayed), the order
        stays as it is, the amount is added to `refund_due_cents` with a `refund_due` event naming
        the transaction, and the audit trail records it. The caller answers 200 then: gateways
        retry a notice until it is acknowledged, and retrying cannot make the order payable.
        """
        provider = self.providers.get(provider_name)
        if provider is None:
            raise NotFound("unknown payment provider", code="unknown_provider")
        if not signature or not provider.verify(body, signature):
            raise Unauthenticated("the callback's signature is not valid", code="bad_signature")
        try:
            data = parse_callback(body)
            order_id, amount = int(data["order_id"]), int(data["amount_cents"])
            txn_id, nonce, stamp = str(data["txn_id"]), str(data["nonce"]), int(data["timestamp"])
        except (ValueError, KeyError, TypeError) as exc:
            raise BadRequest("the callback body is malformed", code="malformed_callback") from exc
        if abs(time.time() - stamp) > CALLBACK_MAX_AGE_SECONDS:
            raise Unprocessable("the callback is too old or from the future", code="stale_callback")
        if await self.repo.notice_seen(txn_id, nonce):
            raise Conflict("this payment notice was already used", code="replayed_callback")
        order = await self._locked_order(order_id)
        if order is None:
            raise _not_found()
        notice = PaymentNotice(
            provider=provider_name, txn_id=txn_id, nonce=nonce, order_id=order.id, amount_cents=amount
        )
        if order.status != OrderStatus.AWAITING_PAYMENT:
            self.repo.add(notice)
            self._refund_due(order, provider_name, txn_id, amount)
            await self.session.flush()
            return order
        if amount != order.amount_cents:
            raise Unprocessable(
                "the amount paid does not match the order",
                code="amount_mismatch",
                expected=order.amount_cents,
                paid=amount,
            )
        self.repo.add(notice)
        self._move(
            SYSTEM,
            order,
            OrderStatus.PAID,
            f"paid via {provider_name} ({txn_id})",
            code=EventCode.PAID,
            txn_id=txn_id,
        )
        order.payment_provider, order.payment_txn, order.paid_at = provider_name, txn_id, utcnow()
        await self._prescription_to(SYSTEM, order, RxStatus.PAID, "paid")
        await self.session.flush()
        return order

    def _refund_due(self, order: Order, provider_name: str, txn_id: str, amount: int) -> None:
        """Money arrived for an order that cannot take it: on the order, its timeline and the audit
        trail, for whoever pays refunds back (against `txn_id`)."""
        order.refund_due_cents += amount
        self._event(
            order,
            OrderStatus(order.status),
            None,
            f"payment via {provider_name} ({txn_id}) of {amount} cents arrived when the order was "
            f"{order.status}: refund due",
            code=EventCode.REFUND_DUE,
            txn_id=txn_id,
        )
        record(self.session, SYSTEM, "refund_due", "order", order.id, patient_id=order.patient_id)

    # --- dispensing and delivery --------------------------------------------------------------
    def _staff_pharmacy(self, actor: Actor) -> int:
        if actor.role not in (Role.PHARMACY_STAFF, Role.PHARMACIST) or actor.organisation_id is None:
            raise Forbidden("only pharmacy staff do this", code="not_pharmacy_staff")
        return actor.organisation_id

    async def _staff_order(self, actor: Actor, order_id: int) -> Order:
        pharmacy_id = self._staff_pharmacy(actor)
        order = await self._locked_order(order_id)
        if order is None or order.pharmacy_id != pharmacy_id:
            raise _not_found()
        return order

    async def dispense(
        self, actor: Actor, order_id: int, chosen: Sequence[LotChoice] = (), *, automatic_rest: bool = False
    ) -> Order:
        """Take the stock of every line, atomically: from the lots staff chose for it, or first
        expiring first (never an expired lot) when they chose none. Once some lots are chosen they
        must cover every line exactly, unless `automatic_rest` (the page's "automatic" choice)
        lets the lines without a choice go first expiring first. Any refusal takes nothing."""
        order = await self._staff_order(actor, order_id)
        self._move(actor, order, OrderStatus.DISPENSED, "dispensed", code=EventCode.DISPENSED)
        today = date.today()
        lines = await self.lines(order)
        plan = await self._chosen_lots(order, lines, chosen, today, every_line=not automatic_rest)
        for line in lines:
            picks = plan.get(line.position)
            if picks is None:
                await self._take_first_expiring(order, line, today)
                continue
            for lot_id, wanted in picks:
                # Raising rolls back every unit taken so far: nothing half-dispensed.
                taken = await self.repo.take(lot_id, wanted)
                if taken:
                    self.repo.add(DispensedLot(order_line_id=line.id, lot_id=lot_id, quantity=taken))
                if taken < wanted:
                    raise Conflict(
                        "the chosen lot does not hold enough units",
                        code="insufficient_stock",
                        position=line.position,
                        lot_id=lot_id,
                        missing=wanted - taken,
                    )
        order.dispensed_at = utcnow()
        await self._prescription_to(actor, order, RxStatus.DISPENSED, "dispense")
        await self.session.flush()
        return order

    async def _take_first_expiring(self, order: Order, line: OrderLine, today: date) -> None:
        wanted = line.quantity
        for lot in await self.repo.usable_lots(order.pharmacy_id, line.drug_id, today):
            taken = await self.repo.take(lot.id, wanted, seen=lot.quantity)
            if taken:
                self.repo.add(DispensedLot(order_line_id=line.id, lot_id=lot.id, quantity=taken))
                wanted -= taken
            if wanted == 0:
                return
        raise Conflict(
            "not enough unexpired stock to dispense this order",
            code="insufficient_stock",
            position=line.position,
            missing=wanted,
        )

    async def _chosen_lots(
        self,
        order: Order,
        lines: Sequence[OrderLine],
        chosen: Sequence[LotChoice],
        today: date,
        *,
        every_line: bool,
    ) -> dict[int, list[tuple[int, int]]]:
        """The chosen (lot, units) per line position, once they are known to cover their lines
        exactly and every lot is usable: this pharmacy's, the line's drug, not expired (stock is
        checked as it is taken)."""
        if not chosen:
            return {}
        by_position = {line.position: line for line in lines}
        plan: dict[int, dict[int, int]] = {}
        for choice in chosen:
            if choice.position not in by_position:
                raise Unprocessable(
                    "the order has no such line", code="no_such_line", position=choice.position
                )
            picks = plan.setdefault(choice.position, {})
            if choice.lot_id in picks:
                raise Unprocessable(
                    "a lot is chosen twice for one line",
                    code="duplicate_lot_choice",
                    position=choice.position,
                    lot_id=choice.lot_id,
                )
            picks[choice.lot_id] = choice.quantity
        for line in lines:
            if line.position in plan or every_line:
                total = sum(plan.get(line.position, {}).values())
                if total != line.quantity:
                    raise Unprocessable(
                        "the chosen lots must cover each line of the order exactly",
                        code="lots_do_not_cover_order",
                        position=line.position,
                        expected=line.quantity,
                        chosen=total,
                    )
        lots = await self.repo.lots([c.lot_id for c in chosen])
        for choice in chosen:
            lot = lots.get(choice.lot_id)
            reason = None
            if lot is None or lot.pharmacy_id != order.pharmacy_id:
                reason = "not_in_this_pharmacy"  # another pharmacy's lot looks like no lot at all
            elif lot.drug_id != by_position[choice.position].drug_id:
                reason = "wrong_drug"
            elif lot.expires_on <= today:
                reason = "expired"
            if reason is not None:
                raise Unprocessable(
                    "this lot cannot be used for this line",
                    code="lot_not_usable",
                    lot_id=choice.lot_id,
                    position=choice.position,
                    reason=reason,
                )
        return {position: list(picks.items()) for position, picks in plan.items()}

    async def usable_lots(self, actor: Actor, order_id: int) -> list[LineLots]:
        """Per line of an order, the lots it can be dispensed from, first expiring first (the
        staff of the order's pharmacy; everyone else gets the same 404 as for no order)."""
        order = await self.repo.order(order_id)
        staff = actor.role in (Role.PHARMACY_STAFF, Role.PHARMACIST)
        if order is None or not staff or actor.organisation_id != order.pharmacy_id:
            raise _not_found()
        today = date.today()
        found = [
            LineLots(
                position=line.position,
                drug_id=line.drug_id,
                quantity=line.quantity,
                lots=[
                    LotOnHand.model_validate(lot)
                    for lot in await self.repo.usable_lots(order.pharmacy_id, line.drug_id, today)
                ],
            )
            for line in await self.repo.lines(order.id)
        ]
        record(self.session, actor, "read_lots", "order", order.id, patient_id=order.patient_id)
        return found

    async def deliver(self, actor: Actor, order_id: int, data: DeliveryIn) -> Order:
        """packed → with courier → delivered (or failed → retried or returned)."""
        order = await self._staff_order(actor, order_id)
        self._move(actor, order, OrderStatus(data.status), data.text)
        if OrderStatus(data.status) is OrderStatus.DELIVERED:
            order.delivered_at = utcnow()
            await self._prescription_to(actor, order, RxStatus.DELIVERED, "deliver")
        await self.session.flush()
        return order

    async def receive_stock(self, actor: Actor, data: StockIn) -> StockLot:
        """A lot arrives at the pharmacy (its staff, or an admin naming the pharmacy)."""
        if actor.role is Role.ADMIN:
            if data.pharmacy_id is None:
                raise Unprocessable("name the pharmacy", code="pharmacy_required")
            pharmacy_id = data.pharmacy_id
        else:
            pharmacy_id = self._staff_pharmacy(actor)
        drugs = await self.rx.drugs_by_code([data.drug_code])
        if data.drug_code not in drugs:
            raise Unprocessable("unknown drug", code="unknown_drug", codes=[data.drug_code])
        if data.expires_on <= date.today():
            raise Unprocessable("this lot has already expired", code="lot_expired")
        lot = StockLot(
            pharmacy_id=pharmacy_id,
            drug_id=drugs[data.drug_code].id,
            lot_number=data.lot_number,
            expires_on=data.expires_on,
            quantity=data.quantity,
        )
        self.repo.add(lot)
        await self.session.flush()
        record(self.session, actor, "receive", "stock_lot", lot.id)
        return lot

    # --- reading ----------------------------------------------------------------------------
    async def _own(self, actor: Actor, order_id: int) -> Order:
        order = await self._locked_order(order_id)
        if order is None or not actor.is_patient or order.account_id != actor.account_id:
            raise _not_found()
        return order

    async def get(self, actor: Actor, order_id: int) -> Order:
        """The patient's own order, or one of the pharmacy's for its staff."""
        return self._readable(actor, await self.repo.order(order_id))

    def _readable(self, actor: Actor, order: Order | None) -> Order:
        mine = order is not None and actor.is_patient and order.account_id == actor.account_id
        staff = (
            order is not None
            and actor.role in (Role.PHARMACY_STAFF, Role.PHARMACIST)
            and actor.organisation_id == order.pharmacy_id
        )
        if order is None or not (mine or staff):
            raise _not_found()
        record(self.session, actor, "read", "order", order.id, patient_id=order.patient_id)
        return order

    async def of_prescription(self, actor: Actor, prescription_id: int) -> Order:
        """The order of a prescription (its patient account, or its pharmacy's staff)."""
        return self._readable(actor, await self.repo.order_of_prescription(prescription_id))

    async def work_list(self, actor: Actor) -> list[Order]:
        """The pharmacy's orders that need a hand: paid (to dispense), then on their way."""
        pharmacy_id = self._staff_pharmacy(actor)
        open_states = [
            OrderStatus.PAID,
            OrderStatus.DISPENSED,
            OrderStatus.PACKED,
            OrderStatus.WITH_COURIER,
            OrderStatus.FAILED,
        ]
        found = list(await self.repo.orders_of_pharmacy(pharmacy_id, [str(s) for s in open_states]))
        record(self.session, actor, "list", "order", None)
        return found

    async def mine(self, actor: Actor) -> list[Order]:
        if not actor.is_patient:
            raise Forbidden("only patient accounts have orders", code="not_a_patient_account")
        record(self.session, actor, "list", "order", None)
        return list(await self.repo.orders_of_account(actor.account_id))

    async def describe(self, order: Order) -> OrderRead:
        lines = await self.lines(order)
        used: dict[int, list[LotUse]] = {}
        dispensed = order.dispensed_at is not None  # before that, no lot was used
        for line_id, lot_number, expires_on, quantity in (
            await self.repo.lots_used([ln.id for ln in lines]) if dispensed else ()
        ):
            used.setdefault(line_id, []).append(
                LotUse(lot_number=lot_number, expires_on=expires_on, quantity=quantity)
            )
        return OrderRead.model_validate(
            {
                **{k: getattr(order, k) for k in OrderRead.model_fields if k not in ("lines", "events")},
                "lines": [
                    OrderLineRead.model_validate({**ln.__dict__, "lots": used.get(ln.id, [])}) for ln in lines
                ],
                "events": [OrderEventRead.model_validate(e) for e in await self.repo.events(order.id)],
            }
        )
