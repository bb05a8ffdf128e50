"""RSU notices (an eligibility changed without the citizen at a kiosk, an appeal answered),
delivered once; the language of a household's notices

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("rsu_households") as batch:
        batch.add_column(sa.Column("language", sa.String(3), nullable=False, server_default="fr"))
    op.create_table(
        "rsu_notices",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("household_id", _ID, sa.ForeignKey("rsu_households.id"), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("decision_id", _ID, sa.ForeignKey("rsu_decisions.id"), nullable=True),
        sa.Column("appeal_id", _ID, sa.ForeignKey("rsu_appeals.id"), nullable=True),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("delivered_at", _AT, nullable=True),
        sa.Column("channel", sa.String(16), nullable=True),
    )
    op.create_index("ix_rsu_notices_household_id", "rsu_notices", ["household_id"])
    op.create_index("ix_rsu_notices_delivered_at", "rsu_notices", ["delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_rsu_notices_delivered_at", table_name="rsu_notices")
    op.drop_index("ix_rsu_notices_household_id", table_name="rsu_notices")
    op.drop_table("rsu_notices")
    with op.batch_alter_table("rsu_households") as batch:
        batch.drop_column("language")
