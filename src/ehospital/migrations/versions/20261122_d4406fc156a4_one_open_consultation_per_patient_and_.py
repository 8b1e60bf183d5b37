"""one open consultation per patient and centre, one self per account

Revision ID: d4406fc156a4
Revises: 7025ed8b5135
Create Date: 2026-11-22 08:06:18.157520
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d4406fc156a4"
down_revision: str | None = "7025ed8b5135"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.create_index(
            "uq_consultations_open_patient_centre",
            ["patient_id", "centre_id"],
            unique=True,
            postgresql_where=sa.text("status IN ('requested', 'accepted', 'in_progress')"),
            sqlite_where=sa.text("status IN ('requested', 'accepted', 'in_progress')"),
        )

    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index(
            "uq_patients_self_per_account",
            ["account_id"],
            unique=True,
            postgresql_where=sa.text("relationship = 'self'"),
            sqlite_where=sa.text("relationship = 'self'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_patients_self_per_account",
            postgresql_where=sa.text("relationship = 'self'"),
            sqlite_where=sa.text("relationship = 'self'"),
        )

    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_consultations_open_patient_centre",
            postgresql_where=sa.text("status IN ('requested', 'accepted', 'in_progress')"),
            sqlite_where=sa.text("status IN ('requested', 'accepted', 'in_progress')"),
        )
