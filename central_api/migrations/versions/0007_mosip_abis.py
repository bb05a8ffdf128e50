"""the MOSIP ABIS: its reference database and its durable job queue

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "abis_references",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("reference_id", sa.String(64), nullable=False, unique=True),
        sa.Column("job_id", _ID, nullable=False),
        sa.Column("faces", sa.LargeBinary(), nullable=True),
        sa.Column("fingers", sa.LargeBinary(), nullable=True),
        sa.Column("irises", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_by", _ID, nullable=True),
    )
    op.create_table(
        "abis_jobs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, unique=True),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("reference_id", sa.String(64), nullable=True),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False),
        sa.Column("reply_form", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("replied", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_abis_jobs_open", "abis_jobs", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_abis_jobs_open", table_name="abis_jobs")
    op.drop_table("abis_jobs")
    op.drop_table("abis_references")
