"""sealed packets: replay guard and capture metadata

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "packet_sends",
        sa.Column("send_id", sa.Uuid(), nullable=False),
        sa.Column("kiosk_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("send_id"),
    )
    with op.batch_alter_table("packet_sends", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_packet_sends_sent_at"), ["sent_at"], unique=False)
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capture", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_column("capture")
    with op.batch_alter_table("packet_sends", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_packet_sends_sent_at"))
    op.drop_table("packet_sends")
