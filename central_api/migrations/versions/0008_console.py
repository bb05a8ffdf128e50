"""the operators' console: accounts and sessions, adjudication claims, decisions, fraud flags,
kiosk operators managed centrally

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "operators",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("role", sa.String(24), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=False),
        sa.Column("totp_last_step", sa.Integer(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", _AT, nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), nullable=False),
        sa.Column("oidc_subject", sa.String(200), nullable=True, unique=True),
        sa.Column("created_at", _AT, nullable=False),
    )
    op.create_table(
        "console_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("operator_id", sa.String(40), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("started_at", _AT, nullable=False),
        sa.Column("last_seen_at", _AT, nullable=False),
        sa.Column("ended_at", _AT, nullable=True),
    )
    op.create_index("ix_console_sessions_operator_id", "console_sessions", ["operator_id"])
    with op.batch_alter_table("adjudication_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(40), nullable=True))
        batch_op.add_column(sa.Column("claim_until", _AT, nullable=True))
        batch_op.add_column(sa.Column("probe", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("outcome", sa.String(24), nullable=True))
        batch_op.add_column(sa.Column("closed_at", _AT, nullable=True))
    op.create_table(
        "adjudication_decisions",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", _ID, sa.ForeignKey("adjudication_cases.id"), nullable=False),
        sa.Column("operator_id", sa.String(40), sa.ForeignKey("operators.id"), nullable=False),
        sa.Column("stage", sa.String(8), nullable=False),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("candidate_person_id", _ID, nullable=True),
        sa.Column("reason_code", sa.String(40), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=True),
        sa.Column("agrees", sa.Boolean(), nullable=True),
        sa.Column("against_machine", sa.Boolean(), nullable=False),
        sa.Column("at", _AT, nullable=False),
    )
    op.create_index("ix_adjudication_decisions_case_id", "adjudication_decisions", ["case_id"])
    op.create_index("ix_adjudication_decisions_at", "adjudication_decisions", ["at"])
    op.create_table(
        "fraud_flags",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("case_id", _ID, sa.ForeignKey("adjudication_cases.id"), nullable=False),
        sa.Column("enrolment_id", _ID, sa.ForeignKey("enrolments.id"), nullable=False),
        sa.Column(
            "person_id", _ID, sa.ForeignKey("persons.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("differences", sa.String(200), nullable=False),
        sa.Column("flagged_by", sa.String(40), nullable=False),
        sa.Column("flagged_at", _AT, nullable=False),
    )
    op.create_index("ix_fraud_flags_flagged_at", "fraud_flags", ["flagged_at"])
    op.create_table(
        "kiosk_operators",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("role", sa.String(12), nullable=False),
        sa.Column("salt", sa.String(32), nullable=False),
        sa.Column("pin_hash", sa.String(128), nullable=False),
        sa.Column("kiosks", sa.String(2000), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _AT, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("kiosk_operators")
    op.drop_index("ix_fraud_flags_flagged_at", table_name="fraud_flags")
    op.drop_table("fraud_flags")
    op.drop_index("ix_adjudication_decisions_at", table_name="adjudication_decisions")
    op.drop_index("ix_adjudication_decisions_case_id", table_name="adjudication_decisions")
    op.drop_table("adjudication_decisions")
    with op.batch_alter_table("adjudication_cases", schema=None) as batch_op:
        for column in ("closed_at", "outcome", "probe", "claim_until", "claimed_by"):
            batch_op.drop_column(column)
    op.drop_index("ix_console_sessions_operator_id", table_name="console_sessions")
    op.drop_table("console_sessions")
    op.drop_table("operators")
