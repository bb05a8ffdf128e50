"""The ABIS's own reference database and its durable job queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from central_api.db import Base, BigId, utcnow


class AbisReference(Base):
    """One MOSIP reference (``reference_id``: MOSIP's bio ref id) and its templates, AES-GCM
    encrypted: face templates, finger templates with their index codes, and the iris records
    as they came (stored, not matched). Deleted references keep a tombstone (``deleted_at``)
    so that a delete retried after a crash knows it was its own."""

    __tablename__ = "abis_references"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reference_id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[int] = mapped_column(BigId)  # the insert that made it
    faces: Mapped[bytes | None] = mapped_column(LargeBinary)
    fingers: Mapped[bytes | None] = mapped_column(LargeBinary)
    irises: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    deleted_by: Mapped[int | None] = mapped_column(BigId, default=None)  # the delete job


class AbisJob(Base):
    """One MOSIP request, queued in arrival order (``id``). ``request``: the request's JSON
    (ids and URLs, never biometric data); ``response``: the answer once ``status`` is done;
    ``replied``: the answer was handed to the transport it came from (the broker's outbox)."""

    __tablename__ = "abis_jobs"
    __table_args__ = (Index("ix_abis_jobs_open", "status", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    operation: Mapped[str] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(64), default=None)
    request: Mapped[str] = mapped_column(Text)
    transport: Mapped[str] = mapped_column(String(8), default="http")  # http | stomp
    reply_form: Mapped[str] = mapped_column(String(8), default="text")  # text | bytes
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued|processing|done
    attempts: Mapped[int] = mapped_column(default=0)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    response: Mapped[str | None] = mapped_column(Text, default=None)
    replied: Mapped[bool] = mapped_column(default=False)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
