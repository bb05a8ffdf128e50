"""finger index codes kept beside the finger references

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 02:30:00

The finger gallery indexes each finger by a 256-bit code of its cylinder descriptor
(``biometrics.fingerprint.index_code``). Computing it builds the template's cylinders (about
5 ms a finger): for a million persons, 14 hours of CPU at every start-up. The code is now
stored (AES-GCM encrypted, as the template) when a reference is made; references made before
have none, and the gallery computes theirs when it loads them.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("finger_references", schema=None) as batch_op:
        batch_op.add_column(sa.Column("index_code", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("finger_references", schema=None) as batch_op:
        batch_op.drop_column("index_code")
