"""audit: index only the rows not yet sealed

The sealer finds its work with `seq IS NULL ORDER BY id`. A full index on (seq, id) grew with
every row ever written and took a new entry each time a row was sealed; a partial index on id
of the unsealed rows stays as small as the sealer's backlog, and sealing a row removes it.

Revision ID: 5e7a9c1d3b42
Revises: 8b2f4d6a1c3e
Create Date: 2026-11-22 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5e7a9c1d3b42"
down_revision: str | None = "8b2f4d6a1c3e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    op.create_index(
        "ix_audit_events_unsealed",
        "audit_events",
        ["id"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_audit_events_unsealed", table_name="audit_events")
    op.create_index("ix_audit_events_unsealed", "audit_events", ["seq", "id"])
