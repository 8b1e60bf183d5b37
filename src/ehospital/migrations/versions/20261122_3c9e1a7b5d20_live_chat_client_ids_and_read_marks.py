"""live chat: client ids of messages, read marks and video calls

Revision ID: 3c9e1a7b5d20
Revises: c50510450985
Create Date: 2026-11-22 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ehospital.kit.models

revision: str = "3c9e1a7b5d20"
down_revision: str | None = "c50510450985"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("client_id", sa.String(length=64), nullable=True))
    op.create_index(
        "uq_messages_client_id",
        "messages",
        ["consultation_id", "sender_id", "client_id"],
        unique=True,
        postgresql_where=sa.text("client_id IS NOT NULL"),
        sqlite_where=sa.text("client_id IS NOT NULL"),
    )
    op.create_table(
        "message_reads",
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("read_at", ehospital.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_message_reads_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_message_reads_consultation_id_consultations"),
        ),
        sa.PrimaryKeyConstraint("consultation_id", "account_id", name=op.f("pk_message_reads")),
    )
    op.create_table(
        "consultation_calls",
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("started_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connected_at", ehospital.kit.models.UTCDateTime(), nullable=True),
        sa.Column("ended_at", ehospital.kit.models.UTCDateTime(), nullable=True),
        sa.Column("ended_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("duration_seconds", sa.Integer(), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_calls_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["ended_by"], ["accounts.id"], name=op.f("fk_consultation_calls_ended_by_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["started_by"], ["accounts.id"], name=op.f("fk_consultation_calls_started_by_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_calls")),
    )
    op.create_index(
        op.f("ix_consultation_calls_consultation_id"), "consultation_calls", ["consultation_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_consultation_calls_consultation_id"), table_name="consultation_calls")
    op.drop_table("consultation_calls")
    op.drop_table("message_reads")
    op.drop_index("uq_messages_client_id", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("client_id")
