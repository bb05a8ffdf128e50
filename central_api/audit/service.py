"""Writing and reading the audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from central_api.audit.models import AuditEvent


def record(
    session: Session, actor: str, action: str, entity: str, entity_id: object, **details: Any
) -> None:
    """Add an audit row in the caller's transaction (so it commits or rolls back with it).

    ``details`` must hold identifiers and decisions only, never personal or biometric data.
    """
    session.add(
        AuditEvent(
            actor=actor, action=action, entity=entity, entity_id=str(entity_id), details=details
        )
    )


def events_for(session: Session, entity: str, entity_id: object) -> list[AuditEvent]:
    """All audit rows of one entity, oldest first."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == str(entity_id))
        .order_by(AuditEvent.id)
    )
    return list(session.scalars(stmt))
