"""the social registry (RSU): households, members over time (one open membership per person),
declaration versions, partner records, eligibility decisions, appeals, re-score jobs

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rsu_households",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("reference", sa.String(15), nullable=False, unique=True),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
    )
    op.create_table(
        "rsu_members",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("household_id", _ID, sa.ForeignKey("rsu_households.id"), nullable=False),
        sa.Column(
            "person_id", _ID, sa.ForeignKey("persons.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("relation", sa.String(16), nullable=False),
        sa.Column("since", _AT, nullable=False),
        sa.Column("until", _AT, nullable=True),
        sa.Column("ended_by", sa.String(16), nullable=True),
    )
    op.create_index("ix_rsu_members_household_id", "rsu_members", ["household_id"])
    op.create_index(
        "ux_rsu_members_open_person",
        "rsu_members",
        ["person_id"],
        unique=True,
        sqlite_where=sa.text("until IS NULL"),
        postgresql_where=sa.text("until IS NULL"),
    )
    op.create_table(
        "rsu_declarations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("household_id", _ID, sa.ForeignKey("rsu_households.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column(
            "declarant_person_id",
            _ID,
            sa.ForeignKey("persons.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("declared_by", sa.String(64), nullable=False),
        sa.Column("declared_at", _AT, nullable=False),
        sa.UniqueConstraint("household_id", "version", name="uq_rsu_declaration"),
    )
    op.create_table(
        "rsu_partner_records",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("feed", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("key_kind", sa.String(12), nullable=False),
        sa.Column("key", sa.String(15), nullable=False),
        sa.Column("household_id", _ID, sa.ForeignKey("rsu_households.id"), nullable=True),
        sa.Column("amount", sa.LargeBinary(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("received_at", _AT, nullable=False),
        sa.UniqueConstraint("feed", "external_id", name="uq_rsu_partner_record"),
    )
    op.create_index("ix_rsu_partner_records_household_id", "rsu_partner_records", ["household_id"])
    op.create_table(
        "rsu_rescore_jobs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("model_source", sa.String(300), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("threshold_versions", sa.JSON(), nullable=False),
        sa.Column("thresholds_on", sa.Date(), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("processed", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("became_eligible", sa.Integer(), nullable=False),
        sa.Column("lost_eligibility", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
        sa.Column("finished_at", _AT, nullable=True),
    )
    op.create_table(
        "rsu_decisions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("household_id", _ID, sa.ForeignKey("rsu_households.id"), nullable=False),
        sa.Column("declaration_version", sa.Integer(), nullable=False),
        sa.Column("programme", sa.String(24), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("threshold_version", sa.String(64), nullable=False),
        sa.Column("decided_on", sa.Date(), nullable=False),
        sa.Column("score", sa.LargeBinary(), nullable=False),
        sa.Column("eligible", sa.Boolean(), nullable=False),
        sa.Column("changed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("job_id", _ID, sa.ForeignKey("rsu_rescore_jobs.id"), nullable=True),
        sa.Column("computed_at", _AT, nullable=False),
    )
    op.create_index(
        "ix_rsu_decisions_household_programme", "rsu_decisions", ["household_id", "programme"]
    )
    op.create_index("ix_rsu_decisions_job_id", "rsu_decisions", ["job_id"])
    op.create_table(
        "rsu_appeals",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("household_id", _ID, sa.ForeignKey("rsu_households.id"), nullable=False),
        sa.Column("decision_id", _ID, sa.ForeignKey("rsu_decisions.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_by", sa.String(64), nullable=False),
        sa.Column("submitted_at", _AT, nullable=False),
        sa.Column("answer_due", _AT, nullable=False),
        sa.Column("grounds", sa.LargeBinary(), nullable=True),
        sa.Column("answer", sa.LargeBinary(), nullable=True),
        sa.Column("reviewed_by", sa.String(64), nullable=True),
        sa.Column("answered_at", _AT, nullable=True),
    )
    op.create_index("ix_rsu_appeals_household_id", "rsu_appeals", ["household_id"])
    op.create_index("ix_rsu_appeals_state", "rsu_appeals", ["state"])


def downgrade() -> None:
    op.drop_index("ix_rsu_appeals_state", table_name="rsu_appeals")
    op.drop_index("ix_rsu_appeals_household_id", table_name="rsu_appeals")
    op.drop_table("rsu_appeals")
    op.drop_index("ix_rsu_decisions_job_id", table_name="rsu_decisions")
    op.drop_index("ix_rsu_decisions_household_programme", table_name="rsu_decisions")
    op.drop_table("rsu_decisions")
    op.drop_table("rsu_rescore_jobs")
    op.drop_index("ix_rsu_partner_records_household_id", table_name="rsu_partner_records")
    op.drop_table("rsu_partner_records")
    op.drop_table("rsu_declarations")
    op.drop_index("ux_rsu_members_open_person", table_name="rsu_members")
    op.drop_index("ix_rsu_members_household_id", table_name="rsu_members")
    op.drop_table("rsu_members")
    op.drop_table("rsu_households")
