"""The kiosk's durable outbox: packets wait here, encrypted, until the registry has them.

A packet is committed to SQLite (WAL, ``synchronous=FULL``) before the citizen is told it
was submitted. The :class:`SyncWorker` sends what is due, with exponential backoff and jitter
while the registry is unreachable; the packet's content is deleted only once the registry
has acknowledged it, and the decision (IDCS, duplicate, adjudication) is polled for and kept
for the receipt. The stored bytes are what is sent, every time, so a kiosk killed at any
moment and restarted resends the *same* packet: the registry stores it once (idempotent on
the packet id) and never issues a second IDCS.

What the registry says decides what happens: an answer not signed by the registry's key is no
acknowledgement (the packet stays queued); a refusal whose code is retryable (``clock_skew``,
``overloaded``, ...) keeps the packet due, with backoff (and the registry's Retry-After); a
permanent refusal marks it ``refused``, content kept, until a supervisor requeues it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import DateTime, Integer, LargeBinary, String, create_engine, event, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from central_api.enrolment.schemas import EnrolmentPacket, EnrolmentStatus, receipt_number
from kiosk.client import (
    AnswerNotAuthentic,
    CentralClient,
    PacketRefused,
    read_private,
    write_private,
)
from kiosk.exceptions import KioskError

log = logging.getLogger("kiosk.outbox")


class _Base(DeclarativeBase):
    pass


class LocalProblem(StrEnum):
    """Why a send failed when the registry gave no error code of its own (those are
    :class:`~central_api.enrolment.schemas.ErrorCode`): the first word of ``last_error``."""

    REGISTRY_UNREACHABLE = "registry_unreachable"
    ANSWER_NOT_AUTHENTIC = "answer_not_authentic"


class OutboxState(StrEnum):
    """Where a packet stands in the kiosk's outbox (stored as its value)."""

    QUEUED = "queued"  # not yet acknowledged by the registry; the outbox holds its content
    ACKED = "acked"  # the registry stored it (signed answer): content forgotten, decision awaited
    FINAL = "final"  # decided: issued, duplicate, adjudication or rejected
    REFUSED = "refused"  # refused for good (not retryable): content kept for an agent to requeue


class _Item(_Base):
    __tablename__ = "outbox"

    packet_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # the citizen's receipt number; the column keeps its first name, "tracking", so that an
    # existing outbox opens (its old "receipt_number" column, the registry's echo, is unused)
    receipt_number: Mapped[str] = mapped_column("tracking", String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    state: Mapped[OutboxState] = mapped_column(String(10), index=True)
    payload: Mapped[bytes | None] = mapped_column(LargeBinary)  # encrypted packet JSON
    digest: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str | None] = mapped_column(String(300))
    status: Mapped[str | None] = mapped_column(String(16))
    idcs: Mapped[str | None] = mapped_column(String(10))


class _Work(_Base):
    """Who did what at this kiosk (the agent console's counts): one row per enrolment (its
    agent on duty, or "-") and per override in it. Operator ids and actions only."""

    __tablename__ = "work"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    packet_id: Mapped[str] = mapped_column(String(36), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    operator_id: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(200))


@dataclass(frozen=True)
class Entry:
    """What the kiosk knows about one queued packet (nothing personal or biometric)."""

    packet_id: uuid.UUID
    receipt_number: str  # the number the citizen keeps (schemas.receipt_number)
    created_at: datetime
    state: OutboxState
    attempts: int
    last_error: str | None
    status: str | None  # the registry's EnrolmentState value
    idcs: str | None


def _entry(item: _Item) -> Entry:
    return Entry(
        uuid.UUID(item.packet_id),
        item.receipt_number,
        _aware(item.created_at),
        OutboxState(item.state),
        item.attempts,
        item.last_error,
        item.status,
        item.idcs,
    )


def _aware(d: datetime) -> datetime:
    return d if d.tzinfo else d.replace(tzinfo=UTC)


class OutboxError(KioskError):
    """The outbox cannot store or read a packet (disk, key)."""


class Outbox:
    """Packets waiting for the registry, in a SQLite file, encrypted with the kiosk's key."""

    def __init__(self, path: Path, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the outbox key must be 32 bytes")
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # owner-only (SQLite's -wal/-shm follow)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._aead = AESGCM(key)
        self.engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30}
        )

        @event.listens_for(self.engine, "connect")
        def _pragmas(conn, _):
            cur = conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # committed means on disk
            cur.close()

        _Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @staticmethod
    def load_key(path: Path) -> bytes:
        """The kiosk's outbox key from ``path``, created (mode 600) on first use; ConfigError
        if others may read it."""
        if not path.exists():
            write_private(path, os.urandom(32))
        key = read_private(path)
        if len(key) != 32:
            raise OutboxError(f"{path} does not hold a 32-byte key")
        return key

    def close(self) -> None:
        """Release the database."""
        self.engine.dispose()

    def _encrypt(self, packet_id: str, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, f"outbox:{packet_id}".encode())

    def _decrypt(self, packet_id: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:12], blob[12:], f"outbox:{packet_id}".encode())
        except InvalidTag as exc:
            raise OutboxError(f"packet {packet_id} cannot be decrypted (wrong key?)") from exc

    # ------------------------------------------------------------------------ writing
    def put(self, packet: EnrolmentPacket, agent: str | None = None) -> Entry:
        """Store a packet durably; returns its entry (with the receipt number). Putting the
        same packet again is a no-op; a different packet under the same id is refused."""
        data = packet.model_dump_json().encode()
        pid = str(packet.packet_id)
        digest = hashlib.sha256(data).hexdigest()
        now = datetime.now(UTC)
        with self._sessions() as s, s.begin():
            item = s.get(_Item, pid)
            if item is not None:
                if item.digest != digest:
                    raise OutboxError(f"packet {pid} is already queued with other content")
                return _entry(item)
            item = _Item(
                packet_id=pid,
                receipt_number=receipt_number(packet.packet_id),
                created_at=now,
                updated_at=now,
                state=OutboxState.QUEUED,
                payload=self._encrypt(pid, data),
                digest=digest,
                attempts=0,
                next_attempt_at=now,
            )
            s.add(item)
            s.add(_Work(packet_id=pid, at=now, operator_id=agent or "-", action="enrolment"))
            for o in packet.capture.overrides if packet.capture else []:
                s.add(_Work(packet_id=pid, at=now, operator_id=o.operator_id, action=o.action))
        return _entry(item)

    def _update(self, packet_id: str, fn: Callable[[_Item], None]) -> Entry | None:
        with self._sessions() as s, s.begin():
            item = s.get(_Item, packet_id)
            if item is None:
                return None
            fn(item)
            item.updated_at = datetime.now(UTC)
            return _entry(item)

    def acknowledged(self, packet_id: str, st: EnrolmentStatus, poll_after: float) -> Entry | None:
        """The registry has the packet: forget its content, keep its status; ask for the
        decision again after ``poll_after`` seconds while it is pending."""

        def apply(item: _Item) -> None:
            item.attempts = 0 if item.state == OutboxState.QUEUED else item.attempts + 1  # polls
            item.payload = None
            item.state = OutboxState.FINAL if st.final else OutboxState.ACKED
            item.status, item.idcs = st.status, st.idcs
            item.last_error = None
            item.next_attempt_at = datetime.now(UTC) + timedelta(seconds=poll_after)

        return self._update(packet_id, apply)

    def failed(self, packet_id: str, error: str, delay: float) -> Entry | None:
        """A send or status poll failed: try again after ``delay`` seconds."""

        def apply(item: _Item) -> None:
            item.attempts += 1
            item.last_error = error[:300]
            item.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)

        return self._update(packet_id, apply)

    def refused(self, packet_id: str, error: str) -> Entry | None:
        """The registry refused the packet for good: keep it for a supervisor, stop sending."""

        def apply(item: _Item) -> None:
            item.state, item.last_error = OutboxState.REFUSED, error[:300]

        return self._update(packet_id, apply)

    def requeue(
        self, packet_id: uuid.UUID | str | None = None, by: str = "-", reason: str | None = None
    ) -> list[Entry]:
        """Send refused packets again (one, or all with None): a supervisor's decision (``by``,
        with ``reason``, kept in the work log) once the cause is fixed (the kiosk's clock, its
        key, the registry's configuration)."""
        now = datetime.now(UTC)
        with self._sessions() as s, s.begin():
            q = select(_Item).where(_Item.state == OutboxState.REFUSED, _Item.payload.is_not(None))
            if packet_id is not None:
                q = q.where(_Item.packet_id == str(packet_id))
            items = list(s.scalars(q))
            for item in items:
                item.state, item.attempts, item.next_attempt_at = OutboxState.QUEUED, 0, now
                item.updated_at = now
                s.add(
                    _Work(
                        packet_id=item.packet_id,
                        at=now,
                        operator_id=by,
                        action="requeue",
                        reason=(reason or "")[:200] or None,
                    )
                )
            return [_entry(i) for i in items]

    def today(self, zone: tzinfo) -> dict[str, dict[str, int]]:
        """Today's work (in ``zone``) per operator: ``{operator: {action: count}}``, actions
        being ``enrolment``, the override actions (``finger_exception``, ...) and
        ``requeue``."""
        midnight = datetime.now(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        with self._sessions() as s:
            rows = s.execute(
                select(_Work.operator_id, _Work.action, func.count())
                .where(_Work.at >= midnight.astimezone(UTC))
                .group_by(_Work.operator_id, _Work.action)
            ).all()
        out: dict[str, dict[str, int]] = {}
        for who, action, n in rows:
            out.setdefault(who, {})[action] = int(n)
        return dict(sorted(out.items()))

    def listing(self, limit: int = 200) -> list[Entry]:
        """The newest entries (for the agent screen): nothing personal, no content."""
        with self._sessions() as s:
            rows = s.scalars(select(_Item).order_by(_Item.created_at.desc()).limit(limit))
            return [_entry(r) for r in rows]

    # ------------------------------------------------------------------------ reading
    def get(self, packet_id: uuid.UUID | str) -> Entry | None:
        """The entry of a packet, if it was ever queued here."""
        with self._sessions() as s:
            item = s.get(_Item, str(packet_id))
            return None if item is None else _entry(item)

    def by_receipt(self, receipt_number: str) -> list[Entry]:
        """The entries queued here under a receipt number (one, but for a rare collision)."""
        with self._sessions() as s:
            rows = s.scalars(
                select(_Item).where(_Item.receipt_number == receipt_number.strip().upper())
            )
            return [_entry(r) for r in rows]

    def due(
        self, limit: int, now: datetime | None = None
    ) -> list[tuple[str, OutboxState, int, bytes | None]]:
        """Up to ``limit`` (packet id, state, attempts, packet JSON or None) whose next attempt
        is due: queued ones to send, acknowledged ones to ask the decision of. Oldest first."""
        now = now or datetime.now(UTC)
        with self._sessions() as s:
            rows = s.scalars(
                select(_Item)
                .where(
                    _Item.state.in_((OutboxState.QUEUED, OutboxState.ACKED)),
                    _Item.next_attempt_at <= now,
                )
                .order_by(_Item.state.desc(), _Item.created_at)  # queued before acked
                .limit(limit)
            ).all()
            return [
                (
                    r.packet_id,
                    OutboxState(r.state),
                    r.attempts,
                    None if r.payload is None else self._decrypt(r.packet_id, r.payload),
                )
                for r in rows
            ]

    def counts(self) -> dict[OutboxState, int]:
        """How many entries are in each state."""
        with self._sessions() as s:
            rows = s.execute(select(_Item.state, func.count()).group_by(_Item.state)).all()
        return {OutboxState(state): int(n) for state, n in rows}

    def next_due(self) -> datetime | None:
        """When the next attempt is due, if anything is pending."""
        with self._sessions() as s:
            d = s.scalar(
                select(func.min(_Item.next_attempt_at)).where(
                    _Item.state.in_((OutboxState.QUEUED, OutboxState.ACKED))
                )
            )
            return None if d is None else _aware(d)


class SyncWorker:
    """Sends due packets and polls decisions, in the background, until :meth:`stop`."""

    def __init__(
        self,
        outbox: Outbox,
        client: CentralClient,
        threads: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 300.0,
        status_every: float = 2.0,
        on_update: Callable[[Entry], None] | None = None,
        refresh: Callable[[], object] | None = None,
        refresh_every: float = 300.0,
    ) -> None:
        self.outbox, self.client = outbox, client
        # something else to fetch from the registry now and then (the operator list), as
        # long as the registry can be reached; its failures are logged and tried again
        self.refresh, self.refresh_every = refresh, refresh_every
        self._refreshed = -1e9
        self.threads, self.backoff, self.max_backoff = threads, backoff, max_backoff
        self.status_every = status_every
        self.on_update = on_update
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.online: bool | None = None  # None until the first attempt
        self.last_contact: datetime | None = None  # the registry's last answer, any answer
        # seconds the kiosk clock is ahead of the registry's, when the registry last refused
        # a packet for it (clock_skew); None once a packet went through
        self.clock_skew: int | None = None

    def start(self) -> SyncWorker:
        """Run in a background thread."""
        self._thread = threading.Thread(target=self.run, name="outbox-sync", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current round."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """Look for due work now (e.g. right after a packet was queued)."""
        self._wake.set()

    def run(self) -> None:
        """The loop: one round, then sleep until something is due or :meth:`wake`."""
        with ThreadPoolExecutor(self.threads, thread_name_prefix="outbox") as pool:
            while not self._stop.is_set():
                try:
                    worked = self.round(pool)
                except Exception:  # the database or a bug: log it, never die silently
                    log.exception("outbox round failed")
                    worked = 0
                self._refresh()
                if worked:
                    continue
                nxt = self.outbox.next_due()
                wait = 5.0 if nxt is None else (nxt - datetime.now(UTC)).total_seconds()
                self._wake.wait(min(max(wait, 0.05), 5.0))
                self._wake.clear()

    def refresh_soon(self) -> None:
        """Fetch the refreshed data at the next round, not after ``refresh_every``."""
        self._refreshed = -1e9
        self._wake.set()

    def _refresh(self) -> None:
        if self.refresh is None or time.monotonic() - self._refreshed < self.refresh_every:
            return
        self._refreshed = time.monotonic()
        try:
            self.refresh()
        except Exception as exc:  # offline, refused or not authentic: the next round retries
            log.warning("refresh from the registry failed: %s", type(exc).__name__)

    def round(self, pool: ThreadPoolExecutor | None = None) -> int:
        """Handle what is due now; returns how many entries were handled."""
        due = self.outbox.due(self.threads * 8)
        if not due:
            return 0
        if pool is None:
            for item in due:
                self._one(*item)
        else:
            list(pool.map(lambda it: self._one(*it), due))
        return len(due)

    def _delay(self, attempts: int) -> float:
        return min(self.max_backoff, self.backoff * 2**attempts) * random.uniform(0.5, 1.0)

    def _one(self, packet_id: str, state: OutboxState, attempts: int, data: bytes | None) -> None:
        pid = uuid.UUID(packet_id)
        try:
            if state == OutboxState.QUEUED and data is not None:
                st = self.client.submit(data, wait=False)
            else:
                st = self.client.status(pid)
        except PacketRefused as exc:
            self.online, self.last_contact = True, datetime.now(UTC)
            why = f"{exc.code}: {exc.detail}"
            if exc.code == "clock_skew" and exc.server_time is not None:
                self.clock_skew = int(time.time()) - exc.server_time
            if exc.retryable:
                delay = max(self._delay(attempts), exc.retry_after or 0.0)
                entry = self.outbox.failed(packet_id, why, delay)
            elif state == OutboxState.QUEUED:
                entry = self.outbox.refused(packet_id, why)
            else:  # a status poll refused (the kiosk revoked?): ask again much later
                entry = self.outbox.failed(packet_id, why, self.max_backoff)
        except AnswerNotAuthentic as exc:
            # whoever answered is not the registry: forget nothing, try again later
            log.warning("outbox: answer for %s is not the registry's", packet_id)
            entry = self.outbox.failed(
                packet_id, f"{LocalProblem.ANSWER_NOT_AUTHENTIC}: {exc}", self._delay(attempts)
            )
        except (httpx.HTTPError, OSError) as exc:
            self.online = False
            entry = self.outbox.failed(
                packet_id,
                f"{LocalProblem.REGISTRY_UNREACHABLE}: {type(exc).__name__}",
                self._delay(attempts),
            )
        else:
            self.online, self.last_contact = True, datetime.now(UTC)
            if state == OutboxState.QUEUED:
                self.clock_skew = None
            polls = attempts if state == OutboxState.ACKED else 0
            entry = self.outbox.acknowledged(
                packet_id, st, min(self.max_backoff, self.status_every * 1.5**polls)
            )
        if entry is not None and self.on_update is not None:
            self.on_update(entry)
