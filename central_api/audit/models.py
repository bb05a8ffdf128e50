"""Audit trail: one row per state change, append-only and tamper-evident.

Holds identifiers only, never personal data. Each row carries ``seq`` (its place in the chain),
the MAC of the row before it and its own MAC (HMAC-SHA256 under a key derived from the data
key), so editing, deleting or inserting a row breaks the chain; database triggers refuse UPDATE
and DELETE; checkpoints signed with the registry's Ed25519 key pin the chain's head from time
to time, so even someone holding the data key cannot rewrite what a checkpoint covers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow


class AuditEvent(Base):
    """Who did what to which entity, and when."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # NULL only on rows written before the chain existed (migration 0003): reported as legacy
    prev_mac: Mapped[str | None] = mapped_column(String(64))
    mac: Mapped[str | None] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """The chain's head at some moment, signed with the registry's Ed25519 key."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    mac: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    signature: Mapped[str] = mapped_column(String(100))
