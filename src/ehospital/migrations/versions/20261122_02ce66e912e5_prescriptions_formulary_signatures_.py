"""prescriptions: formulary, signatures, review

Revision ID: 02ce66e912e5
Revises: d4406fc156a4
Create Date: 2026-11-22 08:46:53.560608
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ehospital.kit.models

revision: str = "02ce66e912e5"
down_revision: str | None = "d4406fc156a4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drugs",
        sa.Column("code", sa.String(length=80), nullable=False),
        sa.Column("generic_en", sa.String(length=120), nullable=False),
        sa.Column("generic_zh", sa.String(length=60), nullable=False),
        sa.Column("form", sa.String(length=24), nullable=False),
        sa.Column("strength", sa.String(length=16), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("atc", sa.String(length=7), nullable=False),
        sa.Column("rx_only", sa.Boolean(), nullable=False),
        sa.Column("control", sa.String(length=16), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=24), nullable=False),
        sa.Column("retired_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drugs")),
        sa.UniqueConstraint("code", name=op.f("uq_drugs_code")),
    )
    with op.batch_alter_table("drugs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drugs_atc"), ["atc"], unique=False)
        batch_op.create_index(batch_op.f("ix_drugs_generic_en"), ["generic_en"], unique=False)
        batch_op.create_index(batch_op.f("ix_drugs_generic_zh"), ["generic_zh"], unique=False)

    op.create_table(
        "doctor_keys",
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("doctor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["doctor_id"], ["doctors.id"], name=op.f("fk_doctor_keys_doctor_id_doctors")),
        sa.PrimaryKeyConstraint("fingerprint", name=op.f("pk_doctor_keys")),
    )
    with op.batch_alter_table("doctor_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_doctor_keys_doctor_id"), ["doctor_id"], unique=False)

    op.create_table(
        "prescriptions",
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("doctor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("lineage_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("diagnosis_code", sa.String(length=16), nullable=False),
        sa.Column("diagnosis_text", sa.Text(), nullable=False),
        sa.Column("chronic", sa.Boolean(), nullable=False),
        sa.Column("long_term", sa.Boolean(), nullable=False),
        sa.Column("extended_reason", sa.Text(), nullable=True),
        sa.Column("guardian_present", sa.Boolean(), nullable=False),
        sa.Column("validity_days", sa.Integer(), nullable=False),
        sa.Column("pharmacy_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("severity_rank", sa.Integer(), nullable=False),
        sa.Column("expires_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("signed_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("canonical", sa.Text(), nullable=True),
        sa.Column("signature", sa.LargeBinary(length=64), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_prescriptions_consultation_id_consultations"),
        ),
        sa.ForeignKeyConstraint(
            ["doctor_id"], ["doctors.id"], name=op.f("fk_prescriptions_doctor_id_doctors")
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_prescriptions_patient_id_patients")
        ),
        sa.ForeignKeyConstraint(
            ["pharmacy_id"], ["organisations.id"], name=op.f("fk_prescriptions_pharmacy_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescriptions")),
        sa.UniqueConstraint("lineage_id", "version", name=op.f("uq_prescriptions_lineage_id_version")),
    )
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prescriptions_consultation_id"), ["consultation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_prescriptions_doctor_id"), ["doctor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_prescriptions_lineage_id"), ["lineage_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_prescriptions_patient_id"), ["patient_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_prescriptions_pharmacy_id"), ["pharmacy_id"], unique=False)

    op.create_table(
        "prescription_events",
        sa.Column("prescription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["accounts.id"], name=op.f("fk_prescription_events_actor_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_prescription_events_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescription_events")),
    )
    with op.batch_alter_table("prescription_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prescription_events_prescription_id"), ["prescription_id"], unique=False
        )

    op.create_table(
        "prescription_findings",
        sa.Column("prescription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("message_zh", sa.Text(), nullable=False),
        sa.Column("evidence", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("created_at", ehospital.kit.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_prescription_findings_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescription_findings")),
    )
    with op.batch_alter_table("prescription_findings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prescription_findings_prescription_id"), ["prescription_id"], unique=False
        )

    op.create_table(
        "prescription_items",
        sa.Column("prescription_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("dose", sa.String(length=24), nullable=False),
        sa.Column("dose_unit", sa.String(length=16), nullable=False),
        sa.Column("route", sa.String(length=16), nullable=False),
        sa.Column("frequency", sa.String(length=8), nullable=False),
        sa.Column("days", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.id"], name=op.f("fk_prescription_items_drug_id_drugs")),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name=op.f("fk_prescription_items_prescription_id_prescriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prescription_items")),
        sa.UniqueConstraint(
            "prescription_id", "position", name=op.f("uq_prescription_items_prescription_id_position")
        ),
    )
    with op.batch_alter_table("prescription_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prescription_items_prescription_id"), ["prescription_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("prescription_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prescription_items_prescription_id"))

    op.drop_table("prescription_items")
    with op.batch_alter_table("prescription_findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prescription_findings_prescription_id"))

    op.drop_table("prescription_findings")
    with op.batch_alter_table("prescription_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prescription_events_prescription_id"))

    op.drop_table("prescription_events")
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prescriptions_pharmacy_id"))
        batch_op.drop_index(batch_op.f("ix_prescriptions_patient_id"))
        batch_op.drop_index(batch_op.f("ix_prescriptions_lineage_id"))
        batch_op.drop_index(batch_op.f("ix_prescriptions_doctor_id"))
        batch_op.drop_index(batch_op.f("ix_prescriptions_consultation_id"))

    op.drop_table("prescriptions")
    with op.batch_alter_table("doctor_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_doctor_keys_doctor_id"))

    op.drop_table("doctor_keys")
    with op.batch_alter_table("drugs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drugs_generic_zh"))
        batch_op.drop_index(batch_op.f("ix_drugs_generic_en"))
        batch_op.drop_index(batch_op.f("ix_drugs_atc"))

    op.drop_table("drugs")
