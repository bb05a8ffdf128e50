"""receipt numbers: made from the packet id, shared with the kiosk, no longer unique

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 13:40:00

The receipt number becomes the one number the citizen keeps: the kiosk prints it before the
registry answers (``schemas.receipt_number``, 50 bits of a hash of the packet id), and the
registry stores the same. Over tens of millions of enrolments a few pairs share a number, so
the column loses its unique constraint for an index. Rows written before keep their random
numbers (those receipts were printed with both).
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE_UQ = "uq_enrolments_receipt_number"
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def _old_unique() -> str:
    # 0001 left the constraint unnamed: PostgreSQL named it itself, SQLite's is found through
    # a naming convention
    return (
        "enrolments_receipt_number_key"
        if op.get_bind().dialect.name == "postgresql"
        else _SQLITE_UQ
    )


def upgrade() -> None:
    name = _old_unique()
    with op.batch_alter_table("enrolments", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(name, type_="unique")
        batch_op.create_index(
            batch_op.f("ix_enrolments_receipt_number"), ["receipt_number"], unique=False
        )


def downgrade() -> None:
    name = _old_unique()
    with op.batch_alter_table("enrolments", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrolments_receipt_number"))
        batch_op.create_unique_constraint(name, ["receipt_number"])
