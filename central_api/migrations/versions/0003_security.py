"""security: append-only chained audit, signed checkpoints, per-kiosk packet ids, policy hold

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 08:00:00

The audit trail becomes append-only and tamper-evident:

- ``audit_events`` rows get ``seq`` (their place in the chain), ``prev_mac`` and ``mac``
  (HMAC-SHA256 under a key derived from the data key; the application writes them). Rows written
  before this revision keep ``mac`` NULL: ``central-api audit verify`` reports them as legacy,
  not tamper-evident, and refuses an unchained row anywhere after the chain started.
- Triggers refuse UPDATE and DELETE on ``audit_events`` and ``audit_checkpoints`` (and TRUNCATE on
  PostgreSQL), whoever asks, the owner included.
- Roles (PostgreSQL, production): run this migration as an *owner* role that owns the tables,
  and let the application connect as a separate role. With ``CENTRAL_APP_DB_ROLE`` set when
  migrating, that role is granted SELECT and INSERT only on the audit tables, and SELECT,
  INSERT, UPDATE, DELETE on the others (plus the sequences): it can neither disable the
  triggers nor drop or alter a table. Without it, the tables belong to whoever migrates.

Packet ids become a per-kiosk namespace: unique on (kiosk_id, packet_id), so one kiosk cannot
learn whether another kiosk used a packet id.
"""

import os
import re

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_APPEND_ONLY = ("audit_events", "audit_checkpoints")
_SQLITE_UQ = "uq_enrolments_packet_id"


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("prev_mac", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=True))
    op.execute("UPDATE audit_events SET seq = id")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint("uq_audit_events_seq", ["seq"])

    op.create_table(
        "audit_checkpoints",
        sa.Column("id", _BIG, autoincrement=True, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("mac", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("seq"),
    )

    dialect = op.get_bind().dialect.name
    # 0001 left the packet_id unique constraint unnamed: PostgreSQL named it itself, SQLite's
    # is found through a naming convention
    old_unique = "enrolments_packet_id_key" if dialect == "postgresql" else _SQLITE_UQ
    with op.batch_alter_table(
        "enrolments", schema=None, naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
    ) as batch_op:
        batch_op.drop_constraint(old_unique, type_="unique")
        batch_op.create_index(batch_op.f("ix_enrolments_packet_id"), ["packet_id"], unique=False)
        batch_op.create_unique_constraint("uq_enrolments_kiosk_packet", ["kiosk_id", "packet_id"])
        batch_op.add_column(sa.Column("policy_hold", sa.String(length=200), nullable=True))
    with op.batch_alter_table("adjudication_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=200), nullable=True))

    if dialect == "postgresql":
        op.execute(
            """
            CREATE FUNCTION rnp_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION 'the audit trail is append-only (% on %)', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
            END $$
            """
        )
        for table in _APPEND_ONLY:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION rnp_append_only()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION rnp_append_only()"
            )
        _grant_application_role()
    else:
        for table in _APPEND_ONLY:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END"
                )


def _grant_application_role() -> None:
    role = os.environ.get("CENTRAL_APP_DB_ROLE", "").strip()
    if not role:
        return
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", role):
        raise ValueError("CENTRAL_APP_DB_ROLE must be a plain lower-case role name")
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    for table in _APPEND_ONLY:
        op.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM {role}")
    op.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in _APPEND_ONLY:
        if dialect == "postgresql":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS rnp_append_only()")
    with op.batch_alter_table("adjudication_cases", schema=None) as batch_op:
        batch_op.drop_column("reason")
    with op.batch_alter_table("enrolments", schema=None) as batch_op:
        batch_op.drop_column("policy_hold")
        batch_op.drop_constraint("uq_enrolments_kiosk_packet", type_="unique")
        batch_op.drop_index(batch_op.f("ix_enrolments_packet_id"))
        batch_op.create_unique_constraint(
            "enrolments_packet_id_key" if dialect == "postgresql" else _SQLITE_UQ, ["packet_id"]
        )
    op.drop_table("audit_checkpoints")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_events_seq", type_="unique")
        batch_op.drop_column("mac")
        batch_op.drop_column("prev_mac")
        batch_op.drop_column("seq")
