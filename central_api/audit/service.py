"""Writing, checkpointing and verifying the audit trail.

:func:`record` only queues a row on the session; the rows are chained and written when the
transaction commits (:func:`install` hooks the session factory), under a lock held for those
few inserts only: PostgreSQL's advisory lock ``RNPA``, SQLite's single writer. So the chain
order is the commit order, a rolled-back transaction leaves no row, and no transaction waits on
the chain while it does its own work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from central_api.audit.models import AuditCheckpoint, AuditEvent
from central_api.db import utcnow

GENESIS = "0" * 64
_LOCK_KEY = 0x524E5041  # "RNPA": serialises appends to the chain (PostgreSQL)
_PENDING = "audit_pending"


def chain_key(data_key: bytes) -> bytes:
    """The chain's MAC key, derived from the registry's data key."""
    return HKDF(hashes.SHA256(), 32, salt=None, info=b"RNP audit chain v1").derive(data_key)


def row_mac(
    key: bytes,
    prev: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    details: dict[str, Any],
) -> str:
    """HMAC-SHA256 of a row's content and the MAC of the row before it."""
    stamp = at.astimezone(UTC).isoformat(timespec="microseconds")
    body = json.dumps(
        [seq, stamp, actor, action, entity, entity_id, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hmac.new(key, f"{prev}\n{body}".encode(), hashlib.sha256).hexdigest()


def fingerprint(key: bytes, value: str) -> str:
    """A short keyed fingerprint of an identifier the audit must not hold in clear (an IDCS a
    kiosk asked about): the same value always gives the same fingerprint."""
    return hmac.new(key, b"ref|" + value.encode(), hashlib.sha256).hexdigest()[:20]


def record(
    session: Session, actor: str, action: str, entity: str, entity_id: object, **details: Any
) -> None:
    """Queue an audit row on the caller's transaction: it is chained and written when the
    transaction commits, and vanishes if it rolls back.

    ``details`` must hold identifiers and decisions only, never personal or biometric data.
    """
    row = (utcnow(), actor, action, entity, str(entity_id), details)
    session.info.setdefault(_PENDING, []).append(row)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def _head(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(AuditEvent.seq, AuditEvent.mac).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    if row is None:
        return 0, GENESIS
    return int(row.seq), row.mac or GENESIS  # a legacy head: the chain starts after it


def install(factory: sessionmaker[Session], key: bytes) -> sessionmaker[Session]:
    """Make ``factory``'s sessions write their queued audit rows, chained, at commit."""

    def write(session: Session) -> None:
        if session.in_nested_transaction() or not session.info.get(_PENDING):
            return  # a savepoint: the rows go with the outer commit
        pending = session.info.pop(_PENDING)
        _lock(session)
        seq, prev = _head(session)
        for at, actor, action, entity, entity_id, details in pending:
            seq += 1
            mac = row_mac(key, prev, seq, at, actor, action, entity, entity_id, details)
            session.add(
                AuditEvent(
                    seq=seq,
                    at=at,
                    actor=actor,
                    action=action,
                    entity=entity,
                    entity_id=entity_id,
                    details=details,
                    prev_mac=prev,
                    mac=mac,
                )
            )
            prev = mac
        session.flush()

    def forget(session: Session, *_: object) -> None:
        if not session.in_transaction():  # the whole transaction is gone, not a savepoint
            session.info.pop(_PENDING, None)

    event.listen(factory, "before_commit", write)
    event.listen(factory, "after_soft_rollback", forget)
    return factory


# ------------------------------------------------------------------------------ checkpoints
def checkpoint_message(seq: int, mac: str, at: datetime) -> bytes:
    """What a checkpoint's signature covers."""
    return f"RNP-AUDIT-CHECKPOINT-v1\n{seq}\n{mac}\n{at.astimezone(UTC).isoformat()}".encode()


def checkpoint(session: Session, sign: Callable[[bytes], bytes]) -> AuditCheckpoint | None:
    """Sign the chain's current head (nothing when no row came since the last checkpoint)."""
    _lock(session)
    seq, mac = _head(session)
    last = session.scalar(select(func.max(AuditCheckpoint.seq)))
    if seq == 0 or mac == GENESIS or (last is not None and last >= seq):
        return None
    at = utcnow()
    cp = AuditCheckpoint(
        seq=seq,
        mac=mac,
        at=at,
        signature=base64.b64encode(sign(checkpoint_message(seq, mac, at))).decode(),
    )
    session.add(cp)
    session.flush()
    return cp


# ------------------------------------------------------------------------------ verification
@dataclass(frozen=True)
class Finding:
    """One thing wrong with the trail: where and what."""

    seq: int
    kind: str  # row_altered, rows_missing, chain_broken, unchained_row, tail_missing,
    # checkpoint_mismatch, checkpoint_signature
    detail: str


@dataclass
class Verification:
    """The outcome of :func:`verify`."""

    rows: int = 0
    legacy_rows: int = 0  # written before the chain existed: kept, not tamper-evident
    checkpoints: int = 0
    last_seq: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found."""
        return not self.findings


def verify(session: Session, key: bytes, public_key: bytes | None = None) -> Verification:
    """Walk the whole chain: every row's MAC, the links between rows, the sequence without
    gaps, and every checkpoint (its signature when ``public_key`` is given, and that the chain
    still holds the MAC it signed)."""
    out = Verification()
    expected, prev, chained = 1, GENESIS, False
    macs_at: dict[int, str] = {}
    cps = list(session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.seq)))
    wanted = {c.seq for c in cps}
    rows = session.scalars(
        select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=2000)
    )
    for r in rows:
        out.rows += 1
        if r.seq != expected:
            if r.seq > expected:
                out.findings.append(
                    Finding(expected, "rows_missing", f"rows {expected}-{r.seq - 1} are gone")
                )
            else:
                out.findings.append(Finding(r.seq, "chain_broken", "sequence goes backwards"))
        expected = r.seq + 1
        if r.mac is None:
            if chained:
                out.findings.append(Finding(r.seq, "unchained_row", "a row without a MAC"))
            else:
                out.legacy_rows += 1
            continue
        chained = True
        if r.prev_mac != prev:
            out.findings.append(Finding(r.seq, "chain_broken", "does not follow the row before it"))
        fields = (r.seq, r.at, r.actor, r.action, r.entity, r.entity_id, r.details or {})
        if row_mac(key, r.prev_mac or GENESIS, *fields) != r.mac:
            out.findings.append(Finding(r.seq, "row_altered", "edited, or not written by us"))
        prev = r.mac
        if r.seq in wanted:
            macs_at[r.seq] = r.mac
    out.last_seq = expected - 1
    verifier = Ed25519PublicKey.from_public_bytes(public_key) if public_key else None
    for c in cps:
        out.checkpoints += 1
        if verifier is not None:
            try:
                verifier.verify(
                    base64.b64decode(c.signature), checkpoint_message(c.seq, c.mac, c.at)
                )
            except (InvalidSignature, ValueError):
                out.findings.append(
                    Finding(c.seq, "checkpoint_signature", "not signed by the registry key")
                )
        if c.seq > out.last_seq:
            out.findings.append(Finding(c.seq, "tail_missing", f"the chain ends at {out.last_seq}"))
        elif macs_at.get(c.seq) != c.mac:
            out.findings.append(
                Finding(c.seq, "checkpoint_mismatch", "the chain was rewritten since it was signed")
            )
    return out


def count_recent(session: Session, actor: str, action: str, since: datetime) -> int:
    """How many ``action`` rows ``actor`` caused since ``since`` (for rate limits)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.actor == actor, AuditEvent.action == action, AuditEvent.at >= since)
        )
        or 0
    )


def events_for(session: Session, entity: str, entity_id: object) -> list[AuditEvent]:
    """All audit rows of one entity, oldest first."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.entity == entity, AuditEvent.entity_id == str(entity_id))
        .order_by(AuditEvent.seq)
    )
    return list(session.scalars(stmt))
