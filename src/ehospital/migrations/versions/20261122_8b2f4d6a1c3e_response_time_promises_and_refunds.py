"""response-time promises and refunds

Revision ID: 8b2f4d6a1c3e
Revises: 3c9e1a7b5d20
Create Date: 2026-11-22 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ehospital.kit.models

revision: str = "8b2f4d6a1c3e"
down_revision: str | None = "3c9e1a7b5d20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("centres") as batch:
        batch.add_column(
            sa.Column("first_response_minutes", sa.Integer(), server_default=sa.text("10"), nullable=False)
        )
        batch.add_column(
            sa.Column("close_within_hours", sa.Integer(), server_default=sa.text("24"), nullable=False)
        )
    with op.batch_alter_table("consultations") as batch:
        batch.add_column(
            sa.Column("first_response_due_at", ehospital.kit.models.UTCDateTime(), nullable=True)
        )
        batch.add_column(sa.Column("first_response_at", ehospital.kit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("late_at", ehospital.kit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("close_due_at", ehospital.kit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("overdue_at", ehospital.kit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("refund_cents", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("refunded_at", ehospital.kit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("refund_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consultations") as batch:
        for name in (
            "refund_reason",
            "refunded_at",
            "refund_cents",
            "overdue_at",
            "close_due_at",
            "late_at",
            "first_response_at",
            "first_response_due_at",
        ):
            batch.drop_column(name)
    with op.batch_alter_table("centres") as batch:
        batch.drop_column("close_within_hours")
        batch.drop_column("first_response_minutes")
