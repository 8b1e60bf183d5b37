"""pharmacy: stock lots, orders, payments, dispensing, delivery

Revision ID: 08f2ac73a00b
Revises: 02ce66e912e5
Create Date: 2026-11-22 08:51:38.450697
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ehospital.kit.models

revision: str = "08f2ac73a00b"
down_revision: str | None = "02ce66e912e5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stock_lots",
        sa.Column("pharmacy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lot_number", sa.String(length=40), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_stock_lots_quantity_not_negative")),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.id"], name=op.f("fk_stock_lots_drug_id_drugs")),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"], ["organisations.id"], name=op.f("fk_stock_lots_pharmacy_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_lots")),
        sa.UniqueConstraint(
            "pharmacy_id", "drug_id", "lot_number", name=op.f("uq_stock_lots_pharmacy_id_drug_id_lot_number")
        ),
    )
    with op.batch_alter_table("stock_lots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stock_lots_drug_id"), ["drug_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_stock_lots_pharmacy_id"), ["pharmacy_id"], unique=False)

    op.create_table(
        "orders",
        sa.Column("prescription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("pharmacy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("payment_provider", sa.String(length=32), nullable=True),
        sa.Column("payment_txn", sa.String(length=64), nullable=True),
        sa.Column("paid_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("dispensed_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_orders_account_id_accounts")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_orders_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"], ["organisations.id"], name=op.f("fk_orders_pharmacy_id_organisations")
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"], ["prescriptions.id"], name=op.f("fk_orders_prescription_id_prescriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("payment_txn", name=op.f("uq_orders_payment_txn")),
        sa.UniqueConstraint("prescription_id", name=op.f("uq_orders_prescription_id")),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_orders_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_orders_pharmacy_id"), ["pharmacy_id"], unique=False)

    op.create_table(
        "order_events",
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["accounts.id"], name=op.f("fk_order_events_actor_id_accounts")
        ),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_events_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_events")),
    )
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_events_order_id"), ["order_id"], unique=False)

    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price_cents", sa.Integer(), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.id"], name=op.f("fk_order_lines_drug_id_drugs")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_lines_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_lines")),
        sa.UniqueConstraint("order_id", "position", name=op.f("uq_order_lines_order_id_position")),
    )
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_lines_order_id"), ["order_id"], unique=False)

    op.create_table(
        "payment_notices",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("txn_id", sa.String(length=64), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_payment_notices_order_id_orders")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_notices")),
        sa.UniqueConstraint("nonce", name=op.f("uq_payment_notices_nonce")),
        sa.UniqueConstraint("txn_id", name=op.f("uq_payment_notices_txn_id")),
    )
    with op.batch_alter_table("payment_notices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_notices_order_id"), ["order_id"], unique=False)

    op.create_table(
        "dispensed_lots",
        sa.Column("order_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lot_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["lot_id"], ["stock_lots.id"], name=op.f("fk_dispensed_lots_lot_id_stock_lots")
        ),
        sa.ForeignKeyConstraint(
            ["order_line_id"], ["order_lines.id"], name=op.f("fk_dispensed_lots_order_line_id_order_lines")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispensed_lots")),
    )
    with op.batch_alter_table("dispensed_lots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dispensed_lots_lot_id"), ["lot_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_dispensed_lots_order_line_id"), ["order_line_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dispensed_lots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dispensed_lots_order_line_id"))
        batch_op.drop_index(batch_op.f("ix_dispensed_lots_lot_id"))

    op.drop_table("dispensed_lots")
    with op.batch_alter_table("payment_notices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_notices_order_id"))

    op.drop_table("payment_notices")
    with op.batch_alter_table("order_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_lines_order_id"))

    op.drop_table("order_lines")
    with op.batch_alter_table("order_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_events_order_id"))

    op.drop_table("order_events")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_orders_pharmacy_id"))
        batch_op.drop_index(batch_op.f("ix_orders_account_id"))

    op.drop_table("orders")
    with op.batch_alter_table("stock_lots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stock_lots_pharmacy_id"))
        batch_op.drop_index(batch_op.f("ix_stock_lots_drug_id"))

    op.drop_table("stock_lots")
