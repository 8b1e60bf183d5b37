"""order refunds due and timeline event codes

Revision ID: afac7db696c3
Revises: 08f2ac73a00b
Create Date: 2026-11-22 09:52:36.910326
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "afac7db696c3"
down_revision: str | None = "08f2ac73a00b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("txn_id", sa.String(length=64), nullable=True))

    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refund_due_cents", sa.Integer(), server_default="0", nullable=False))

    # Timeline notes the system wrote before they had codes (pages word coded notes themselves).
    for status, code in (("awaiting_payment", "approved"), ("paid", "paid"), ("dispensed", "dispensed")):
        op.execute(
            sa.text(
                "UPDATE order_events SET code = :code WHERE status = :status AND code IS NULL"
            ).bindparams(code=code, status=status)
        )
    op.execute(
        "UPDATE order_events SET code = 'prescription_expired'"
        " WHERE status = 'cancelled' AND text = 'prescription expired'"
    )
    op.execute(
        "UPDATE order_events SET txn_id = (SELECT payment_txn FROM orders WHERE orders.id = order_events.order_id)"
        " WHERE status = 'paid'"
    )


def downgrade() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("refund_due_cents")

    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_column("txn_id")
        batch_op.drop_column("code")
