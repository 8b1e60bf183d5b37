"""cds hooks cards and feedback

Revision ID: ed310450c22d
Revises: 5b1e0c7d9a21
Create Date: 2026-11-22 10:59:04.663852
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ehospital.kit.models

revision: str = "ed310450c22d"
down_revision: str | None = "5b1e0c7d9a21"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cds_cards",
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("service_id", sa.String(length=80), nullable=False),
        sa.Column("hook", sa.String(length=40), nullable=False),
        sa.Column("hook_instance", sa.String(length=80), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("client", sa.String(length=200), nullable=True),
        sa.Column("indicator", sa.String(length=16), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("summary", sa.String(length=140), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cds_cards_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("uuid", name=op.f("pk_cds_cards")),
    )
    with op.batch_alter_table("cds_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cds_cards_hook_instance"), ["hook_instance"], unique=False)

    op.create_table(
        "cds_feedback",
        sa.Column("card_uuid", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("client", sa.String(length=200), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("accepted_suggestions", sa.Text(), nullable=False),
        sa.Column("override_code", sa.String(length=64), nullable=True),
        sa.Column("override_display", sa.String(length=200), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_cds_feedback_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["card_uuid"], ["cds_cards.uuid"], name=op.f("fk_cds_feedback_card_uuid_cds_cards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cds_feedback")),
    )
    with op.batch_alter_table("cds_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_cds_feedback_card_uuid"), ["card_uuid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("cds_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_feedback_card_uuid"))

    op.drop_table("cds_feedback")
    with op.batch_alter_table("cds_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_cds_cards_hook_instance"))

    op.drop_table("cds_cards")
