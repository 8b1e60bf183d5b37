"""finding sources as text (the vetting engine cites full references)

Revision ID: 5b1e0c7d9a21
Revises: afac7db696c3
Create Date: 2026-11-22 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b1e0c7d9a21"
down_revision: str | None = "afac7db696c3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("prescription_findings", schema=None) as batch_op:
        batch_op.alter_column("source", existing_type=sa.String(length=64), type_=sa.Text())
        batch_op.alter_column("rule", existing_type=sa.String(length=64), type_=sa.String(length=80))


def downgrade() -> None:
    with op.batch_alter_table("prescription_findings", schema=None) as batch_op:
        batch_op.alter_column("rule", existing_type=sa.String(length=80), type_=sa.String(length=64))
        batch_op.alter_column("source", existing_type=sa.Text(), type_=sa.String(length=64))
