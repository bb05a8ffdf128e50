"""fused dedup: finger references, algorithm versions, decision evidence

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 23:00:00

The dedup decides on fingers and face fused (``central_api.dedup.fusion``): a person's finger
templates become references of their own, each reference records the algorithm that made it
(references of another algorithm are never compared with the current one), and every decision
keeps its evidence (scores, thresholds, versions; no biometric data). Persons issued before
have face references only: until ``central-api backfill-fingers`` gives them their enrolment's
fingers they are matched on the face, which never makes a duplicate alone (adjudication).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "finger_references",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("enrolment_id", _ID, nullable=False),
        sa.Column("position", sa.SmallInteger(), nullable=False),
        sa.Column("template", sa.LargeBinary(), nullable=False),
        sa.Column("algorithm", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["enrolment_id"], ["enrolments.id"]),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("finger_references", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_finger_references_person_id"), ["person_id"], unique=False
        )
    with op.batch_alter_table("face_references", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "algorithm",
                sa.String(length=40),
                nullable=False,
                server_default="dlib-resnet-v1",
            )
        )
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("evidence", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_column("evidence")
    with op.batch_alter_table("face_references", schema=None) as batch_op:
        batch_op.drop_column("algorithm")
    with op.batch_alter_table("finger_references", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finger_references_person_id"))
    op.drop_table("finger_references")
